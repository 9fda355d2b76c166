"""The capacity planner end to end on the real embedded server (issue 18): variants loaded
through the config override, each searched for the load within the budget, judged and
ranked; the answer as a sentence, a config.pbtxt and files; the repository never written;
bad input refused before anything starts. (The arithmetic: tests/test_planner.py; the
space: tests/test_space.py.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import server_processes

import analyzer_widgets as aw
from analyzer_widgets import cli
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.server.local import LocalServer

pytestmark = pytest.mark.server

MODEL = "mlp_numpy"
#: short measurements: a plan's logic, not its figures, is under test here
FAST: dict[str, object] = dict(window_ms=200, stable_windows=2, max_trials=4, baseline_s=0.3)
SPACE = {"instances": [1, 2], "max_batch_size": [16]}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_a_brute_plan_measures_every_variant_and_writes_the_answer(tmp_path: Path) -> None:
    before = _digest(aw.EXAMPLE_REPOSITORY / MODEL)
    out = tmp_path / "plan"
    # a budget every variant meets, loads 1 to 2: each search is two probes and an answer
    result = aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000, concurrency=[1, 2],
                     space=SPACE, strategy="brute", target_rate=100_000, export_path=out, **FAST)
    table = result.to_frame()
    assert set(table["variant"]) == {"original", "i1_b16", "i2_b16"}
    assert table["meets"].all() and list(table["rank"]) == [1, 2, 3]
    assert list(table["throughput_infer_per_s"]) == sorted(table["throughput_infer_per_s"], reverse=True)
    best = result.best
    assert best is not None and best.variant == table.iloc[0]["variant"]
    assert result.sentence.startswith(f"serve {MODEL} with ") and "infer/s" in result.sentence
    # every probe and answer is a row of the sweep, named by its variant
    rows = result.sweep.to_frame()
    assert set(rows["variant"]) == {"original", "i1_b16", "i2_b16"}
    assert (rows[rows["search"] != "probe"]["search"] == "answer_lower_bound").all()
    # the files: the ranked table, the summary, the config to serve with
    assert (out / "plan.csv").read_text().splitlines()[0].startswith("rank,variant,original,")
    summary = json.loads((out / "plan.json").read_text())
    assert summary["recommended"] == best.variant and summary["sentence"] == result.sentence
    assert summary["space"] == SPACE and summary["strategy"] == "brute"
    config = (out / "config.pbtxt").read_text()
    assert config.startswith(f"# analyzer-widgets plan: {best.variant}") and 'name: "mlp_numpy"' in config
    if best.variant != "original":
        assert "max_batch_size: 16" in config and "max_batch_size: 64 -> 16" in result.diff
    sizing = result.sizing
    assert sizing is not None
    # sized from the low end of the throughput's interval; a point whose windows scattered
    # down to 0 cannot be sized, and says so
    assert sizing.servers >= 1 or "cannot be sized" in sizing.text()
    assert _digest(aw.EXAMPLE_REPOSITORY / MODEL) == before


def test_a_quick_plan_starts_from_the_models_own_config() -> None:
    order: list[str] = []

    def note(event: object) -> None:
        if isinstance(event, aw.events.ModelLoading):
            order.append(event.model)

    result = aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000, concurrency=[1, 2],
                     space={"instances": [1, 2], "max_batch_size": [16, 64]}, strategy="quick", on_event=note,
                     **FAST)
    # the model's own config first: in this space it is the variant i1_b64
    assert order[0] == f"{MODEL} (variant i1_b64)"
    measured = list(result.to_frame()["variant"])
    assert "i1_b64" in measured and len(measured) <= 4
    assert result.best is not None


def test_the_command_line_plans_and_prints_the_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.toml"
    space.write_text('instances = [1]\nmax_batch_size = [16]\n')
    code = cli.main(["plan", "-m", MODEL, "--model-folder", str(aw.EXAMPLE_REPOSITORY), "--latency-budget-ms",
                     "10000", "--space", str(space), "--search", "brute", "-c", "1,2", "--window-ms", "200",
                     "--stable-windows", "2", "--max-trials", "4", "--baseline-seconds", "0.3",
                     "-e", str(tmp_path / "out"), "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"serve {MODEL} with " in text and "results written to" in text
    assert (tmp_path / "out" / "config.pbtxt").is_file()


def test_bad_input_is_refused_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    servers = server_processes()
    with pytest.raises(aw.ConfigError, match="latency_budget_ms"):
        aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY)
    with pytest.raises(aw.ConfigError, match="instances"):
        aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5, space={"instances": [0]})
    with pytest.raises(aw.ConfigError, match="KIND_GPU"):
        aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5,
                space={"instances": [1], "kind": "KIND_GPU"})
    if nvml_unavailable_reason():  # a machine without a GPU gives no power to divide by
        with pytest.raises(aw.ConfigError, match="objective.*board power"):
            aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5,
                    objective="throughput_per_watt")
    with pytest.raises(aw.ConfigError, match="space"):
        aw.plan(MODEL, model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=5, space=str(tmp_path / "none.toml"))
    assert cli.main(["plan", "-m", "mlp_numpy,sequence_mean", "--model-folder", str(aw.EXAMPLE_REPOSITORY),
                     "--latency-budget-ms", "5"]) == 2
    assert "give one -m MODEL" in capsys.readouterr().err
    assert server_processes() == servers


def test_a_plan_on_a_remote_server_reads_the_config_from_it() -> None:
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings())
    server.start()
    try:
        result = aw.plan(MODEL, launch_mode="remote", url=server.endpoints.grpc, latency_budget_ms=10_000,
                         concurrency=[1, 2], space={"instances": [1, 2]}, strategy="brute", **FAST)
        table = result.to_frame()
        assert set(table["variant"]) == {"i1", "i2"} and table["meets"].all()
        assert table["original"].tolist().count(True) == 1  # one instance, as the repository has it
        assert result.best is not None and "instance" in result.sentence
    finally:
        server.stop()


def test_a_polling_server_is_refused_before_anything_is_measured(tmp_path: Path) -> None:
    server = LocalServer(aw.EXAMPLE_REPOSITORY, aw.ServerSettings(
        extra_args=("--model-control-mode=poll", "--repository-poll-secs=3600", "--exit-on-error=false",
                    "--strict-readiness=false")))  # it loads every example at start: one failing must not stop it
    server.start()
    try:
        seen: list[object] = []
        with pytest.raises(aw.ModelLoadError, match="polling mode"):
            aw.plan(MODEL, launch_mode="remote", url=server.endpoints.grpc, latency_budget_ms=5,
                    space={"instances": [1, 2]}, on_event=seen.append, **FAST)
        assert seen == []  # no sweep started
    finally:
        server.stop()


def test_a_grid_plan_judges_each_variants_points_and_a_resume_measures_only_what_it_lacks(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    measured: list[str] = []

    def note(event: object) -> None:
        if isinstance(event, aw.events.ModelLoading):
            measured.append(event.model)

    settings: dict[str, object] = dict(model_repository=aw.EXAMPLE_REPOSITORY, latency_budget_ms=10_000,
                                       concurrency=[1, 2], per_variant="grid", strategy="brute", export_path=out,
                                       on_event=note, **FAST)
    first = aw.plan(MODEL, space={"instances": [1, 2]}, **settings)
    rows = first.sweep.to_frame()
    # the grid, not the budget search: every concurrency given, per variant, and no search roles
    assert sorted(rows["concurrency"].tolist()) == [1, 1, 2, 2] and (rows["search"] == "").all()
    best = first.best
    assert best is not None and best.answer is not None
    mine = rows[rows["variant"] == best.variant]
    assert best.answer["throughput_infer_per_s"] == mine["throughput_infer_per_s"].max()
    assert json.loads((out / "plan.json").read_text())["per_variant"] == "grid"
    # a wider space, resumed: the variants measured before are kept, only the new one is measured
    measured.clear()
    second = aw.plan(MODEL, space={"instances": [1, 2, 3]}, resume=True, **settings)
    assert measured == [f"{MODEL} (variant i3)"]
    assert set(second.to_frame()["variant"]) == {"i1", "i2", "i3"}
    assert json.loads((out / "plan.json").read_text())["variants_measured"] == list(second.to_frame()["variant"])
    # a sweep's rows and a plan's do not mix: a sweep resumed in the plan's folder is refused, naming why
    with pytest.raises(aw.ResumeError, match="run: 'plan' then, None now"):
        aw.profile(models=[MODEL], model_repository=aw.EXAMPLE_REPOSITORY, concurrency=[1], export_path=out,
                   resume=True, **FAST)
