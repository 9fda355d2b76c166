"""Resume (issue 7, RELIABILITY rows 10-12): a sweep started again on the same export
directory keeps what was measured and measures the rest; a changed spec, model, server
or GPU set is refused with what changed, or kept apart when asked; a damaged checkpoint
is a clear error and nothing is reused. Real embedded server, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import FAST

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.config import ExportSettings
from analyzer_widgets.export import MANIFEST, ExportFolder, Manifest

pytestmark = [pytest.mark.faults]

GRID = {"batch_sizes": [1, 2], "concurrency": [1, 2]}


def _sweep(repo: Path, out: Path, seen: list | None = None, **kw):
    settings = {**GRID, **FAST, **kw}
    handler = seen.append if seen is not None else None
    return aw.profile(models=["mlp_numpy"], model_repository=repo, export_path=out, on_event=handler, **settings)


def _interrupted_sweep(repo: Path, out: Path, after: int) -> None:
    """A sweep stopped (as the panel's Stop does) once ``after`` points have finished."""
    holder: dict[str, aw.SweepRunner] = {}

    def stop_after(event: object) -> None:
        if isinstance(event, events.PointFinished) and event.index + 1 == after:
            holder["runner"].stop()

    result = aw.profile(models=["mlp_numpy"], model_repository=repo, export_path=out, on_event=stop_after,
                        runner_hook=lambda r: holder.__setitem__("runner", r), **GRID, **FAST)
    assert result.cancelled and len(result.rows) == after


#: the sweep of _sweep, in a process of its own for a test to kill
#: windows long enough that a point outlasts the samples' way to the file (handed on at most
#: every 2 s, 1 s after they were taken): the kill, once a point's samples are in the file,
#: lands before the points after the next have ended (with 300 ms windows a busy CI machine
#: saw the whole grid done before the kill, and the resume had nothing left to measure)
KILL_WINDOW_MS = 800
KILLABLE_SWEEP = f"""
import sys
import analyzer_widgets as aw
aw.profile(models=["mlp_numpy"], model_repository=sys.argv[1], export_path=sys.argv[2],
           **{ {**GRID, **FAST, "window_ms": KILL_WINDOW_MS}!r})
"""


def _started(seen: list) -> list[tuple[int, int]]:
    return [(e.batch_size, e.concurrency) for e in seen if isinstance(e, events.PointStarted)]


@pytest.mark.server
def test_resume_measures_only_the_points_not_measured_yet(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupted_sweep(repo, out, after=2)
    first, _ = aw.load_results(out)
    assert len(first) == 2

    seen: list = []
    result = _sweep(repo, out, seen, resume=True)
    assert _started(seen) == [(2, 1), (2, 2)]  # the two of batch 1 were kept
    rows, baselines = aw.load_results(out)
    assert list(zip(rows["batch_size"], rows["concurrency"], strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert set(rows["status"]) <= {"ok", "unstable"}, rows[["status", "reason"]]
    # the kept rows are the earlier run's, unchanged
    assert list(rows["started_at"][:2]) == list(first["started_at"])
    assert list(rows["throughput_infer_per_s"][:2]) == list(first["throughput_infer_per_s"])
    assert len(baselines) == 2  # each run's baseline, both kept
    assert len(result.to_frame()) == 4 and result.ok
    assert any("resuming: 2 of 4 points" in e.message for e in seen if isinstance(e, events.Notice))

    # resuming a finished sweep measures nothing and loads no model
    seen = []
    _sweep(repo, out, seen, resume=True)
    assert _started(seen) == [] and not any(isinstance(e, events.ModelLoading) for e in seen)
    assert len(aw.load_results(out)[0]) == 4


@pytest.mark.server
def test_a_row_cut_off_by_a_crash_is_measured_again(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupted_sweep(repo, out, after=2)
    model_csv = out / "metrics-model.csv"
    data = model_csv.read_bytes()
    model_csv.write_bytes(data[: len(data) - 40])  # the last row, half written
    seen: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _sweep(repo, out, seen, resume=True)
    assert _started(seen) == [(1, 2), (2, 1), (2, 2)]
    assert any("incomplete" in w for w in result.warnings), result.warnings
    rows, _ = aw.load_results(out)
    assert list(zip(rows["batch_size"], rows["concurrency"], strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_a_changed_grid_is_refused_naming_the_change_and_nothing_is_touched(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec = aw.make_spec(models=["mlp_numpy"], model_repository=repo, **GRID, **FAST)
    Manifest.for_spec(spec).save(out)  # as a first run leaves it before its first point
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(aw.ResumeError) as raised:
        _sweep(repo, out, resume=True, batch_sizes=[1, 4])
    message = str(raised.value)
    assert "batch_sizes: [1, 2] then, [1, 4] now" in message and "keep-apart" in message, message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_changed_model_files_are_refused(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = aw.make_spec(models=["mlp_numpy"], model_repository=repo, **GRID, **FAST)
    Manifest.for_spec(spec).save(out)
    with open(repo / "mlp_numpy" / "1" / "model.py", "a") as f:
        f.write("\n# edited\n")
    with pytest.raises(aw.ResumeError, match="the files of model 'mlp_numpy' changed"):
        _sweep(repo, out, resume=True)


@pytest.mark.server
def test_another_server_version_is_refused_after_start_and_kept_apart_when_asked(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupted_sweep(repo, out, after=1)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["server_version"]  # recorded by the first run
    manifest["server_version"] = "1.0.0"
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(aw.ResumeError, match=r"server version: '1.0.0' then, '2\.\d+\.\d+' now"):
        _sweep(repo, out, resume=True)
    assert len(aw.load_results(out)[0]) == 1  # the earlier row is still there, alone

    seen: list = []
    result = _sweep(repo, out, seen, resume=True, keep_apart=True)
    assert len(_started(seen)) == 4  # started over
    apart = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(apart) == 1
    old_rows, _ = aw.load_results(apart[0])
    assert len(old_rows) == 1
    assert json.loads((apart[0] / MANIFEST).read_text())["server_version"] == "1.0.0"
    new_rows, _ = aw.load_results(out)
    assert len(new_rows) == 4 and len(result.to_frame()) == 4
    assert json.loads((out / MANIFEST).read_text())["server_version"] != "1.0.0"


def test_a_changed_spec_is_kept_apart_when_asked(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = aw.make_spec(models=["mlp_numpy"], model_repository=repo, **GRID, **FAST)
    Manifest.for_spec(spec).save(out)
    (out / "metrics-model.csv").write_text("x")
    changed = aw.make_spec(models=["mlp_numpy"], model_repository=repo, batch_sizes=[4], concurrency=[1], **FAST)
    with ExportFolder(ExportSettings(export_path=out, resume=True, keep_apart=True), changed) as folder:
        assert folder.kept_rows == [] and not folder.done and "batch_sizes" in folder.notes[0]
        apart = [p for p in out.iterdir() if p.name.startswith("previous-")]
        assert len(apart) == 1 and sorted(p.name for p in apart[0].iterdir()) == sorted([MANIFEST, "metrics-model.csv"])
        assert not (out / MANIFEST).exists()


@pytest.mark.parametrize("content", ["", "{\"spec\": {\"models\": [\"mlp", "[]", "{\"format\": 1}"],
                         ids=["empty", "truncated", "not-an-object", "fields-missing"])
def test_a_damaged_checkpoint_is_a_clear_error_and_nothing_is_reused(repo: Path, tmp_path: Path, content: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(content)
    (out / "metrics-model.csv").write_text("model\r\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(aw.ResumeError) as raised:
        _sweep(repo, out, resume=True)
    message = str(raised.value)
    assert str(out / MANIFEST) in message and "nothing was reused" in message, message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_results_without_a_checkpoint_are_not_resumed(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics-model.csv").write_text("model\r\n")
    with pytest.raises(aw.ResumeError, match="no sweep.json"):
        _sweep(repo, out, resume=True)


def test_resume_and_overwrite_exclude_each_other(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(aw.ConfigError, match="resume"):
        _sweep(repo, tmp_path / "out", resume=True, overwrite=True)


def test_keep_apart_without_resume_is_refused(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(aw.ConfigError, match="keep_apart"):
        _sweep(repo, tmp_path / "out", keep_apart=True)
    assert not (tmp_path / "out").exists()


def test_the_checkpoint_is_replaced_whole(tmp_path: Path, repo: Path) -> None:
    """Written by temp file and os.replace: a new inode each time, no temp file left."""
    spec = aw.make_spec(models=["mlp_numpy"], model_repository=repo, **GRID, **FAST)
    manifest = Manifest.for_spec(spec)
    manifest.save(tmp_path)
    first = (tmp_path / MANIFEST).stat().st_ino
    manifest.server_version = "2.51.0"
    manifest.save(tmp_path)
    assert (tmp_path / MANIFEST).stat().st_ino != first
    assert [p.name for p in tmp_path.iterdir() if p.name != "model_repository"] == [MANIFEST]
    assert Manifest.load(tmp_path).server_version == "2.51.0"


@pytest.mark.server
def test_a_sweep_killed_mid_way_leaves_a_readable_samples_file_and_its_resume_adds_to_it(repo: Path,
                                                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    samples_csv = out / "metrics-samples.csv"
    sweep = subprocess.Popen([sys.executable, "-c", KILLABLE_SWEEP, str(repo), str(out)])
    try:
        deadline = time.monotonic() + 120
        # SIGKILLed once the samples of its second point (batch 1, concurrency 2) reach the file
        while sweep.poll() is None and time.monotonic() < deadline:
            if samples_csv.is_file() and b",point,mlp_numpy,1,2," in samples_csv.read_bytes():
                break
            time.sleep(0.05)
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        tree = psutil.Process(sweep.pid).children(recursive=True)
    finally:
        sweep.kill()
        sweep.wait(10)
    # its server and clients follow it (and are reaped here, should they be ours to reap now)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, alive
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line the kill cut off is left out (tests/test_export.py)
        before = aw.load_samples(out)
    assert {(1, 1), (1, 2)} <= set(zip(before["batch_size"], before["concurrency"], strict=True))

    seen: list = []
    _sweep(repo, out, seen, resume=True, window_ms=KILL_WINDOW_MS)
    assert samples_csv.read_text().count("time_s,") == 1
    after = aw.load_samples(out)
    # the killed run's samples as they were, then this run's, of each point it measured
    pd.testing.assert_frame_equal(after[list(before.columns)].iloc[: len(before)], before)
    later = after.iloc[len(before):]
    measured = set(zip(later[later["phase"] == "point"]["batch_size"], later[later["phase"] == "point"]["concurrency"],
                       strict=True))
    assert measured == set(_started(seen)) and (2, 2) in measured
