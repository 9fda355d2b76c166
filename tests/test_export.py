"""The export folder (analyzer_widgets.export): its path checked before anything starts, a
lock for the run, a stale lock taken over, each run's server log kept. Real files, real
processes holding the lock; no server is started."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.config import ExportSettings, SweepSpec
from analyzer_widgets.export import LOCK, MANIFEST, MODEL_CSV, SAMPLES_CSV, ExportFolder, Manifest
from analyzer_widgets.monitor.session import SAMPLE_TAGS
from analyzer_widgets.results import SweepResult, csv_text, samples_csv_text, write_atomic
from analyzer_widgets.schema import MODEL_COLUMNS

REPO = aw.EXAMPLE_REPOSITORY
SPEC = SweepSpec(models=("mlp_numpy",), model_repository=Path("/nonexistent/models"))

#: a second process that takes an export folder for a run and holds it until killed
HOLDER = """
import sys, time
from pathlib import Path
from analyzer_widgets.config import ExportSettings, SweepSpec
from analyzer_widgets.export import ExportFolder
spec = SweepSpec(models=("mlp_numpy",), model_repository=Path("/nonexistent/models"))
folder = ExportFolder(ExportSettings(export_path=sys.argv[1]), spec).open()
print("holding", flush=True)
time.sleep(120)
"""


def cli_watching_children(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str], float]:
    """Run the CLI and note the name of every process it starts while it runs (this machine
    may run other tests' servers, so a count of tritonserver processes would not do)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "analyzer_widgets", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    cli = psutil.Process(proc.pid)
    children: set[str] = set()
    while proc.poll() is None and time.monotonic() - started < 60:
        try:
            for child in cli.children(recursive=True):
                children.add(" ".join(child.cmdline()) or child.name())
        except psutil.Error:
            pass
        time.sleep(0.005)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), children, time.monotonic() - started


def folder(path: Path | str, spec: SweepSpec = SPEC, **settings: object) -> ExportFolder:
    return ExportFolder(ExportSettings(export_path=path, **settings), spec)


def refused(path: Path | str, spec: SweepSpec = SPEC) -> str:
    with pytest.raises(aw.ConfigError) as raised:
        folder(path, spec).open()
    assert raised.value.field == "export_path"
    message = str(raised.value)
    assert str(path) in message, message
    return message


# -- the path, before anything starts ------------------------------------------------------------
def test_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    assert "is a file" in refused(target)
    assert target.read_text() == "root:x:0:0\n"


def test_a_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert "is a file" in refused(tmp_path / "file" / "results")


@pytest.mark.parametrize("path", ["/proc/self", "/proc/self/results"], ids=["existing", "to-make"])
def test_a_folder_this_process_may_not_write_is_refused(path: str) -> None:
    """/proc/self answers 'not writable' to root too, so this needs no unprivileged user."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this machine")
    assert "not writable" in refused(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a folder whatever its mode bits say; "
                                               "test_a_folder_this_process_may_not_write_is_refused covers it")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "not writable" in refused(locked)
        assert "not writable" in refused(locked / "results")
    finally:
        locked.chmod(0o755)


def test_a_folder_inside_the_model_repository_is_refused_before_anything_starts(repo: Path) -> None:
    for target in (repo / "results", repo, repo / "mlp_numpy" / "out"):
        with pytest.raises(aw.ConfigError, match="inside the model repository") as raised:
            aw.profile(models=["mlp_numpy"], model_repository=repo, export_path=target)
        assert str(target) in str(raised.value)
    assert not (repo / "results").exists() and not (repo / "mlp_numpy" / "out").exists()
    folder(repo.parent / "results", aw.make_spec(models=["mlp_numpy"], model_repository=repo))  # beside it: fine


def test_the_cli_refuses_a_file_as_export_path_with_exit_2_before_launching_anything(tmp_path: Path) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    done, children, took = cli_watching_children("profile", "-m", "mlp_numpy", "--model-folder", str(REPO),
                                                 "-e", str(target))
    print(f"refused in {took:.2f} s (the interpreter and pandas starting included)")
    assert done.returncode == 2, done.stderr
    assert "--export-path" in done.stderr and str(target) in done.stderr and "is a file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert children == set()  # no server, not even the models' numpy check: the path came first
    assert target.read_text() == "root:x:0:0\n"
    assert took < 15  # a server start and its failure take longer; a hang far longer


# -- the lock --------------------------------------------------------------------------------------
@contextlib.contextmanager
def holding(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the folder's lock, as a second run would, for the block."""
    holder = hold(path)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def hold(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "holding", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_a_second_run_on_the_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with holding(out) as holder:
        message = refused(out)
        assert f"process {holder.pid}" in message and "in use by another run" in message, message
        assert "analyzer_widgets.export" in message  # the holder's command line
        assert "started 20" in message  # and when it started
        # the panel's Export CSV takes the same lock
        with pytest.raises(aw.ConfigError, match=f"process {holder.pid}"):
            ExportFolder.save(SweepResult(SPEC), out)
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written beside the holder's lock


def test_the_cli_refuses_a_folder_in_use_with_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with holding(out) as holder:
        done, children, _ = cli_watching_children("profile", "-m", "mlp_numpy", "--model-folder", str(REPO),
                                                  "-e", str(out))
        assert done.returncode == 2, done.stderr
        assert f"process {holder.pid}" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not [c for c in children if "triton" in c], children  # the models' numpy check at most


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_notice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = hold(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((out / LOCK).read_text())["pid"] == holder.pid  # left behind, as after a crash
    taken = folder(out).open()
    try:
        assert len(taken.notes) == 1, taken.notes
        assert "took over" in taken.notes[0] and f"process {holder.pid}" in taken.notes[0], taken.notes
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    finally:
        taken.close()
    assert not (out / LOCK).exists()


def test_the_lock_is_released_on_close_and_on_a_refusal(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with folder(out) as first:
        assert (out / LOCK).is_file()
        with pytest.raises(aw.ConfigError, match=f"this process {os.getpid()}"):
            folder(out).open()
        first.server_known("2.51.0", [])
    assert not (out / LOCK).exists()
    # a resume refused for a changed spec releases the lock too, and leaves the folder as it was
    changed = SweepSpec(models=("mlp_numpy",), model_repository=Path("/nonexistent/models"), batch_sizes=(2,))
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(aw.ResumeError, match="batch_sizes"):
        folder(out, changed, resume=True).open()
    assert sorted(p.name for p in out.iterdir()) == before
    folder(out, overwrite=True).open().close()  # free again


def test_a_folder_made_for_a_refused_run_is_not_left_behind(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with folder(out):
        assert out.is_dir()
    assert not out.exists()  # made for this run, nothing written: removed with the lock


def test_profile_releases_the_lock_when_the_sweep_is_interrupted(tmp_path: Path) -> None:
    """Ctrl-C before the server starts (as early as can be): the lock goes with the sweep."""
    out = tmp_path / "out"

    def interrupt(event: object) -> None:
        if isinstance(event, events.SweepStarted):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aw.profile(models=["mlp_numpy"], model_repository=REPO, export_path=out, on_event=interrupt)
    assert not (out / LOCK).exists()
    folder(out).open().close()


# -- what the folder keeps -------------------------------------------------------------------------
def test_a_resumed_run_keeps_the_earlier_server_log_and_a_move_apart_leaves_this_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = Manifest.for_spec(SPEC)
    manifest.server_version = "1.0.0"
    manifest.save(out)
    write_atomic(out / MODEL_CSV, csv_text([], MODEL_COLUMNS))
    (out / "tritonserver.log").write_text("the earlier run's log\n")
    resumed = folder(out, resume=True, keep_apart=True)
    assert resumed.server_log != out / "tritonserver.log"  # the server must not write over it
    with resumed:
        resumed.server_log.write_text("this run's log\n")  # as the server does once started
        notes = resumed.server_known("2.51.0", [])
        assert "server version" in notes[0] and "moved to" in notes[0], notes
    (apart,) = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert (apart / "tritonserver.log").read_text() == "the earlier run's log\n"
    assert json.loads((apart / MANIFEST).read_text())["server_version"] == "1.0.0"
    assert resumed.server_log.read_text() == "this run's log\n"
    assert json.loads((out / MANIFEST).read_text())["server_version"] == "2.51.0"


# -- the samples file, appended as the sweep goes (RELIABILITY row 23) ------------------------------
def samples_chunk(first: int, rows: int, columns: list[str], model: str = "m") -> pd.DataFrame:
    """Rows as MonitorSession.take_samples hands them on: the tags, then float values."""
    table = pd.DataFrame({"time_s": [0.05 * n for n in range(first, first + rows)], "source": "host",
                          "phase": "point", "model": model, "batch_size": 1, "concurrency": 2})
    for i, column in enumerate(columns):
        table[column] = [n / 3 + i if n % 4 else math.nan for n in range(first, first + rows)]
    return table


def test_samples_appended_chunk_by_chunk_make_the_file_one_whole_write_makes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # a key that comes later goes where a table of every row has it: between earlier keys
    chunks = [samples_chunk(0, 5, ["a", "b"], model="=cmd"), samples_chunk(5, 7, ["a", "b"]),
              samples_chunk(12, 3, ["a", "late", "b"]), samples_chunk(15, 4, ["a", "late", "b"])]
    with folder(out) as run:
        run.server_known("2.51.0", [])
        assert (out / SAMPLES_CSV).read_text() == ",".join(SAMPLE_TAGS) + "\n"  # started with the run
        for chunk in chunks:
            run.add_samples(chunk)
    whole = pd.concat(chunks, ignore_index=True)[list(chunks[-1].columns)]
    assert (out / SAMPLES_CSV).read_bytes() == samples_csv_text(whole).encode()
    back = aw.load_samples(out)
    assert list(back.columns) == list(whole.columns) and back["model"].iloc[0] == "=cmd"
    pd.testing.assert_frame_equal(back, whole)


def test_a_samples_file_cut_mid_line_reads_back_whole_and_a_resume_appends_after_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = [samples_chunk(0, 6, ["a"]), samples_chunk(6, 6, ["a"])]
    with folder(out) as run:
        run.server_known("2.51.0", [])
        for chunk in first:
            run.add_samples(chunk)
    with open(out / SAMPLES_CSV, "a", newline="") as f:  # a write the kill cut off
        line = samples_csv_text(samples_chunk(12, 1, ["a"]), header=False)
        f.write(line[: len(line) // 2])
    with pytest.warns(UserWarning, match="incomplete"):
        assert len(aw.load_samples(out)) == 12

    resumed = folder(out, resume=True)
    with resumed:
        notes = resumed.server_known("2.51.0", [])
        assert any("cut off" in note for note in notes), notes
        resumed.add_samples(samples_chunk(0, 4, ["a", "b"]))  # this run's, with a key the earlier lacked
    text = (out / SAMPLES_CSV).read_text()
    assert text.count("time_s,") == 1 and text.endswith("\n")
    back = aw.load_samples(out)
    assert list(back.columns) == [*SAMPLE_TAGS, "a", "b"]
    assert len(back) == 16 and back["b"][:12].isna().all() and back["b"][12:].notna().any()
    assert list(back["time_s"][:12]) == list(pd.concat(first)["time_s"])  # the earlier run's, kept


def test_a_result_reads_its_samples_from_the_folder_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with folder(out) as run:
        run.server_known("2.51.0", [])
        run.add_samples(samples_chunk(0, 5, ["a"]))
    result = SweepResult(SPEC)
    result.samples_from(out / SAMPLES_CSV)
    (out / SAMPLES_CSV).rename(out / "elsewhere.csv")  # not read yet: nothing is held
    with pytest.raises(FileNotFoundError):
        result.samples  # noqa: B018 - the read is the point
    (out / "elsewhere.csv").rename(out / SAMPLES_CSV)
    assert len(result.samples) == 5 and result.samples is result.samples  # read once
