"""The panel's Plan section without a server: its Pareto chart (ui/plan_chart.py), the list
of variants built from the engine's events, the space typed as text, the config written,
its fields and their checks, and a whole plan driven through the panel with plan() stood
in for by one that emits a real plan's events (the real thing: tests/test_browser_plan.py)."""

from __future__ import annotations

import doctest
import math
import threading
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import analyzer_widgets as aw
from analyzer_widgets import events as ev
from analyzer_widgets.config import declared as aw_declared
from analyzer_widgets.config import make_settings
from analyzer_widgets.planning.planner import (
    Constraints,
    Objective,
    PlanResult,
    PlanSettings,
    answer,
    own_config,
)
from analyzer_widgets.planning.space import read_space, variants
from analyzer_widgets.results import SweepResult
from analyzer_widgets.runner import SweepRunner
from analyzer_widgets.schema import MODEL_COLUMNS, Row
from analyzer_widgets.ui import plan_chart, plan_section
from analyzer_widgets.ui.plan_chart import FAILS_COLOUR, marker_sizes, pareto_figure, pareto_front
from analyzer_widgets.ui.plan_section import (
    PlanProgress,
    VariantState,
    config_path,
    count_text,
    space_from_text,
    variant_of,
    write_config,
)

NAN = math.nan
MODEL = "mlp_numpy"
SPACE = {"instances": [1, 2], "max_batch_size": [16, 64]}
BUDGET = Constraints(10.0, max_memory_mb=80.0)


def row(variant: str, search: str = "answer", status: str = "ok", concurrency: int = 4, throughput: float = 1000.0,
        p99: float = 5.0, rss: float = 550.0, **values: Any) -> dict[str, Any]:
    """A row with every result column (Row refuses a misspelt one)."""
    return dict(Row(MODEL_COLUMNS, {
        "model": MODEL, "variant": variant, "batch_size": 1, "concurrency": concurrency, "status": status,
        "search": search, "throughput_infer_per_s": throughput, "latency_p99_ms": p99, "latency_avg_ms": p99 / 2,
        "server_rss_max_mb": rss, **values}))


def measured() -> list[dict[str, Any]]:
    """A CPU machine's plan of four variants: i1_b16 best, i1_b64 (the model's own) meets, i2_b16
    is over the memory cap, i2_b64 finds no load within the budget."""
    return [
        row("i1_b64", search="probe", concurrency=1, throughput=1500.0, p99=2.0),
        row("i1_b64", concurrency=4, throughput=2300.0, p99=6.0, rss=545.0, throughput_ci_low_infer_per_s=2000.0,
            throughput_ci_high_infer_per_s=2600.0, latency_p99_ci_low_ms=5.0, latency_p99_ci_high_ms=7.0),
        row("i1_b16", concurrency=6, throughput=4400.0, p99=3.0, rss=550.0),
        row("i2_b16", concurrency=8, throughput=5000.0, p99=8.0, rss=600.0),
        row("i2_b64", search="none_within", concurrency=1, p99=30.0),
    ]


def result(rows: list[dict[str, Any]] | None = None, constraints: Constraints = BUDGET, *,
           cancelled: bool = False) -> PlanResult:
    spec, _ = make_settings(models=[MODEL], model_repository=aw.EXAMPLE_REPOSITORY)
    own = own_config(spec, MODEL)
    found = variants(read_space(SPACE), own, gpu_count=0)
    sweep = SweepResult(spec, rows=measured() if rows is None else rows, baseline_row={"server_rss_max_mb": 500.0},
                        cancelled=cancelled)
    return answer(MODEL, PlanSettings(strategy="brute"), constraints, found, own, sweep)


# -- the Pareto chart ------------------------------------------------------------------------
def test_the_doctests_hold() -> None:
    assert doctest.testmod(plan_chart).failed == 0
    assert doctest.testmod(plan_section).failed == 0


def test_the_pareto_front_keeps_what_no_other_point_beats_on_both() -> None:
    points = [("a", 1.0, 100.0), ("b", 2.0, 300.0), ("c", 3.0, 200.0), ("d", 2.0, 300.0), ("e", 0.5, 50.0)]
    assert pareto_front(points) == ["e", "a", "b", "d"]  # equal points dominate neither
    assert pareto_front([]) == []


def test_marker_area_follows_memory_and_an_unknown_memory_is_a_small_marker() -> None:
    small, large, unknown, zero = marker_sizes([10.0, 160.0, NAN, 0.0])
    assert large == plan_chart.SIZE_RANGE[1] and small == plan_chart.SIZE_RANGE[0]  # sqrt(1/16) x 44 is below 12
    assert unknown == zero == plan_chart.UNKNOWN_SIZE
    a, b = marker_sizes([40.0, 160.0])
    assert b / a == pytest.approx(2.0)  # 4x the memory, 2x the diameter: 4x the area


def test_the_pareto_chart_draws_each_answer_greys_what_fails_stars_the_recommendation() -> None:
    plan = result()
    assert plan.best is not None and plan.best.variant == "i1_b16"
    fig = pareto_figure(MODEL, plan.ranked, plan.constraints, recommended=plan.best.variant)
    traces = {t.name: t for t in fig.data}
    meets, fails = traces["meets the constraints"], traces["fails a constraint"]
    assert list(meets.text) == ["i1_b16", "i1_b64"] and list(meets.x) == [3.0, 6.0] and list(meets.y) == [4400, 2300]
    assert list(fails.text) == ["i2_b16"] and fails.marker.color == FAILS_COLOUR
    assert "100 MB of memory, above the cap of 80 MB" in fails.hovertext[0]
    star = traces["recommended: i1_b16"]
    assert star.marker.symbol == "star" and list(star.x) == [3.0] and list(star.y) == [4400]
    # i1_b16 has more throughput for less latency than i1_b64: the front is one point, no line
    assert not any("Pareto" in (t.name or "") for t in fig.data)
    # the intervals as error bars where the answer has them (i1_b64's), none elsewhere
    assert list(meets.error_y.array) == [None, 300.0] and list(meets.error_x.arrayminus) == [None, 1.0]
    # memory above the baseline: 50, 45 MB; the larger the larger
    assert meets.marker.size[0] > meets.marker.size[1]
    title = fig.layout.title.text
    assert "throughput vs p99 latency" in title and "server resident memory above the baseline, 45 to 100 MB" in title
    assert "not drawn, without an answer (see why in the list): i2_b64" in title
    # the budget, near the points: a line at 10 ms, labelled
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == 10.0
    assert any("budget p99 ≤ 10 ms" in (a.text or "") for a in fig.layout.annotations)
    assert fig.layout.xaxis.range[1] >= 10.0
    assert fig.layout.yaxis.range[1] == pytest.approx(1.2 * 5000)  # the figures set it, not the intervals' ends


def test_a_front_of_several_variants_is_a_line_and_a_budget_far_off_is_an_arrow() -> None:
    rows = [row("i1_b16", concurrency=2, throughput=1000.0, p99=1.0), row("i2_b16", concurrency=8, throughput=3000.0,
                                                                           p99=4.0)]
    plan = result(rows, Constraints(1000.0))
    fig = pareto_figure(MODEL, plan.ranked, plan.constraints, recommended="i2_b16", light=False)
    front = next(t for t in fig.data if "Pareto front" in t.name)
    assert list(front.x) == [1.0, 4.0] and list(front.y) == [1000.0, 3000.0]
    assert not [s for s in fig.layout.shapes if s.type == "line"]  # 1,000 ms would squeeze the points to the axis
    assert any("off the chart" in (a.text or "") for a in fig.layout.annotations)
    assert fig.layout.xaxis.range[1] < 10
    assert fig.layout.template.layout.paper_bgcolor is not None  # dark, and opaque: it travels


def test_a_plan_with_no_answer_says_so_instead_of_empty_axes() -> None:
    plan = result([row("i1_b16", search="probe", status="failed", throughput=0.0, p99=NAN, reason="refused: no")])
    fig = pareto_figure(MODEL, plan.ranked, plan.constraints, recommended=None)
    assert not fig.data
    assert "no variant has a load within p99 ≤ 10 ms (could not be measured: refused: no)" in fig.layout.annotations[0].text


# -- the variants as they are measured ----------------------------------------------------------
def test_the_variant_a_loading_event_names() -> None:
    assert variant_of("mlp_numpy (variant i2_b16)") == "i2_b16"
    assert variant_of("mlp_numpy") == "mlp_numpy"


def test_progress_lists_each_variant_measuring_then_judged() -> None:
    progress = PlanProgress(BUDGET, Objective.THROUGHPUT)
    progress.apply(ev.BaselineFinished({"server_rss_max_mb": 500.0}))
    assert progress.apply(ev.ModelLoading("mlp_numpy (variant i1_b64)"))
    assert progress.lines["i1_b64"].state is VariantState.MEASURING
    progress.apply(ev.PointFinished(row("i1_b64", search="probe", concurrency=2, p99=2.5), 0, 9))
    assert progress.lines["i1_b64"].text == "1 probe so far; the last at batch 1, concurrency 2: p99 2.5 ms"
    progress.apply(ev.PointFinished(row("i1_b64", concurrency=2, p99=2.5, throughput=2000.0), 1, 9))
    progress.apply(ev.ModelLoading("mlp_numpy (variant i2_b16)"))
    done = progress.lines["i1_b64"]
    assert done.state is VariantState.MEETS and done.text == "2,000 infer/s at batch 1, concurrency 2: p99 2.5 ms, 50 MB"
    progress.apply(ev.PointFinished(row("i2_b16", search="probe", status="failed", p99=NAN,
                                        reason="failed to load: too many\nstubs"), 2, 9))
    progress.apply(ev.ModelLoading("mlp_numpy (variant i2_b64)"))
    assert progress.lines["i2_b16"].state is VariantState.FAILED
    assert progress.lines["i2_b16"].text == "could not be measured: failed to load: too many"
    progress.apply(ev.PointFinished(row("i2_b64", search="probe", concurrency=1, p99=3.0, rss=700.0), 3, 9))
    assert not progress.apply(ev.WindowMeasured(MODEL, 1, 1, 1, 1.0, 1.0, 0))
    progress.apply(ev.SweepFinished(cancelled=True, error=None, elapsed_s=9.0))
    assert progress.lines["i2_b64"].state is VariantState.STOPPED
    html = plan_section.progress_html(list(progress.lines.values()), "Variants")
    assert html.count("<tr") == 4 and "class='aw-plan-variants'" in html


def test_a_variant_over_a_constraint_is_listed_with_its_answer_and_what_it_fails() -> None:
    progress = PlanProgress(BUDGET, Objective.THROUGHPUT)
    progress.apply(ev.BaselineFinished({"server_rss_max_mb": 500.0}))
    progress.apply(ev.ModelLoading("mlp_numpy (variant i2_b16)"))
    progress.apply(ev.PointFinished(row("i2_b16", rss=600.0), 0, 3))
    progress.apply(ev.SweepFinished(cancelled=False, error=None, elapsed_s=3.0))
    line = progress.lines["i2_b16"]
    assert line.state is VariantState.FAILS
    assert line.text.endswith("; fails: 100 MB of memory, above the cap of 80 MB")


def test_the_ranked_list_marks_the_recommendation() -> None:
    plan = result()
    lines = plan_section.ranked_lines(plan.ranked, "i1_b16", plan.constraints)
    assert [(ln.rank, ln.name, ln.recommended) for ln in lines] == [
        (1, "i1_b16", True), (2, "i1_b64", False), (None, "i2_b16", False), (None, "i2_b64", False)]
    assert "i1_b16 ★" in plan_section.progress_html(lines, "best first")


def test_how_far_a_plan_is() -> None:
    assert count_text(2, 4, exact=True) == "variant 2 of 4"
    assert count_text(2, 9, exact=False) == "variant 2 of about 9"
    assert count_text(11, 9, exact=False) == "variant 11 of about 11"
    assert count_text(1, None, exact=False) == "variant 1"


# -- the space typed, the config written -------------------------------------------------------------
def test_a_space_is_typed_as_toml_or_json_or_named_as_a_file() -> None:
    assert space_from_text("") is None
    assert space_from_text("instances = [1, 2]\nmax_batch_size = [16]") == {"instances": [1, 2], "max_batch_size": [16]}
    assert space_from_text('{"instances": [1, 2]}') == {"instances": [1, 2]}
    assert space_from_text("~/spaces/small.toml") == str(Path("~/spaces/small.toml").expanduser())
    with pytest.raises(aw.ConfigError, match=r"^space='instances = \[1, 2': is neither a space file") as e:
        space_from_text("instances = [1, 2")
    assert e.value.field == "space"
    with pytest.raises(aw.ConfigError, match="is neither a space file"):
        space_from_text("[1, 2]")  # TOML reads a table's header there


def test_the_config_goes_to_the_path_given_or_the_export_folder() -> None:
    assert config_path("", "results") == Path("results/config.pbtxt")
    assert config_path("  ", "") == Path("config.pbtxt")
    assert config_path("deploy/mlp.pbtxt", "results") == Path("deploy/mlp.pbtxt")
    assert config_path("deploy", "results") == Path("deploy/config.pbtxt")


def test_the_config_written_parses_and_is_replaced_only_when_asked(tmp_path: Path) -> None:
    plan = result()
    path = tmp_path / "new" / "config.pbtxt"
    assert write_config(plan, path, replace=False)
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert config.name == MODEL and config.max_batch_size == 16
    assert not write_config(plan, path, replace=False)  # the same text already there
    path.write_text("# mine\n")
    with pytest.raises(aw.ConfigError, match="already exists: tick Replace"):
        write_config(plan, path, replace=False)
    assert path.read_text() == "# mine\n"
    assert write_config(plan, path, replace=True) and path.read_text() == plan.config_text
    with pytest.raises(aw.ConfigError, match="is a folder"):
        write_config(plan, tmp_path, replace=True)
    none = result([row("i1_b16", search="none_within", p99=30.0)])
    with pytest.raises(aw.AnalyzerError, match="no variant is recommended"):
        write_config(none, tmp_path / "x.pbtxt", replace=False)


# -- the section in the panel --------------------------------------------------------------------
def test_the_plan_fields_are_the_declared_ones_filled_from_the_panels_keywords() -> None:
    panel = aw.Dashboard(models=[MODEL], space=SPACE, strategy="brute", target_rate=5000)
    section = panel.plan_section
    declared = {f.name for f, s in aw_declared(PlanSettings) if s.panel}
    assert set(section.fields) == declared
    assert section.fields["strategy"].value == "brute" and section.fields["target_rate"].value == "5000"
    assert space_from_text(section.space_field.value) == SPACE
    assert "space" not in panel.settings and "strategy" not in panel.settings  # not sweep settings
    assert "The space holds 4 variants: brute measures every one" in section.about.value
    # no budget yet: Plan waits for one, and says so without calling it an error
    assert section.plan_button.disabled and section.status.value == plan_section.NO_BUDGET
    panel.budget_fields["latency_budget_ms"].value = "10"
    assert not section.plan_button.disabled and section.status.value == ""
    # the section's budget is the decision view's, under another label: one value, both ways
    assert section.budget_fields["latency_budget_ms"].value == "10"
    section.budget_fields["latency_statistic"].value = "p95"
    assert panel.budget_fields["latency_statistic"].value == "p95"
    assert section.budget_fields["latency_budget_ms"].description == "Budget (ms)"
    with pytest.raises(aw.ConfigError, match="strategy"):
        aw.Dashboard(strategy="fast")


def test_bad_plan_input_is_said_beside_its_field_and_stops_plan() -> None:
    panel = aw.Dashboard(models=[MODEL], latency_budget_ms=None)
    section = panel.plan_section
    panel.budget_fields["latency_budget_ms"].value = "10"
    section.fields["min_throughput"].value = "-5"
    assert "must be a number above 0" in section.errors["min_throughput"].value
    assert section.plan_button.disabled and "min_throughput='-5'" in unescape(section.status.value)
    section.fields["min_throughput"].value = ""
    section.space_field.value = "instance = [1]"
    assert "instance=[1]: is not a key of the space" in section.errors["space"].value
    assert section.plan_button.disabled
    section.space_field.value = "instances = [0]"
    assert "instances" in section.errors["space"].value
    section.space_field.value = "instances = [1]"
    assert not section.plan_button.disabled and "holds 1 variant" in section.about.value
    panel.budget_fields["latency_budget_ms"].value = "soon"
    assert section.plan_button.disabled and "latency_budget_ms='soon'" in unescape(section.status.value)
    panel.budget_fields["latency_budget_ms"].value = "10"
    panel.batch_field.value = "0"  # the panel's own field: the panel says it, Plan waits
    assert section.plan_button.disabled and panel.run_button.disabled
    panel.batch_field.value = "1"
    panel.model_picker.value = ()
    assert section.plan_button.disabled and "pick the model to plan" in section.status.value
    section.run()
    assert not panel.running


def test_the_plan_gets_the_panels_settings_and_budget_and_its_results_go_where_run_sends_them() -> None:
    panel = aw.Dashboard(models=[MODEL, "mixed_inputs"], batch_sizes="1,8", concurrency="1,16", window_ms=200,
                         export_path="out", space=SPACE)
    section = panel.plan_section
    panel.settings_fields["latency_budget_ms"].value = "99"  # the sweep's Budget search: Run's, not Plan's
    panel.budget_fields["latency_budget_ms"].value = "10"
    panel.budget_fields["latency_statistic"].value = "p95"
    section.fields["objective"].value = "latency"
    model, settings = section.settings()
    assert model == MODEL  # the first selected
    assert settings["latency_budget_ms"] == 10.0 and settings["latency_statistic"].value == "p95"
    assert settings["batch_sizes"] == "1,8" and settings["concurrency"] == "1,16" and settings["window_ms"] == "200"
    assert settings["space"] == SPACE and settings["objective"] == "latency" and "export_path" not in settings
    panel.save_mode.value = "resume"
    _, settings = section.settings()
    assert settings["export_path"] == "out" and settings["resume"] is True


class FakePlan:
    """plan() as the Plan section calls it, without a server: a real runner (never run) for
    the hook, the events a brute plan of two variants emits, and the answer from their rows."""

    def __init__(self) -> None:
        self.go = threading.Event()  # the test lets the plan go on once it looked at the first variant
        self.settings: dict[str, Any] = {}

    def __call__(self, model: str, *, on_event: Any, runner_hook: Any, **settings: Any) -> PlanResult:
        self.settings = settings
        own = {k: v for k, v in settings.items() if k not in plan_section.PLAN_SETTINGS}
        spec, _ = make_settings(models=[model], **own)
        runner = SweepRunner(spec, targets=[], expected_targets=2)
        runner_hook(runner)
        runner.subscribe(on_event)
        rows = measured()[1:3]
        runner.emit(ev.SweepStarted(spec, 6))
        runner.emit(ev.BaselineFinished({"server_rss_max_mb": 500.0}))
        for i, r in enumerate(rows):
            runner.emit(ev.ModelLoading(f"{model} (variant {r['variant']})"))
            runner.emit(ev.PointFinished(r, i, 2))
            if i == 0:
                assert self.go.wait(30)
        runner.emit(ev.SweepFinished(cancelled=runner.stopping, error=None, elapsed_s=1.0, rows=tuple(rows)))
        return result(rows if not runner.stopping else rows[:1], Constraints(settings["latency_budget_ms"]),
                      cancelled=runner.stopping)


@pytest.fixture
def no_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The charts' images need a Chromium: here the panel saves them without (it says so)."""
    monkeypatch.setattr("analyzer_widgets.ui.static.render_pngs", lambda specs: ({}, "no images in this test"))


def test_a_plan_through_the_panel_lists_the_variants_then_answers_and_writes_the_config(
        monkeypatch: pytest.MonkeyPatch, no_images: None, tmp_path: Path) -> None:
    fake = FakePlan()
    monkeypatch.setattr(plan_section, "plan", fake)
    panel = aw.Dashboard(models=[MODEL], export_path=str(tmp_path / "out"), space=SPACE, strategy="brute")
    section = panel.plan_section
    panel.budget_fields["latency_budget_ms"].value = "10"
    section.run()
    assert panel.running and section.plan_button.disabled and panel.run_button.disabled
    assert not panel.stop_button.disabled and not section.stop_button.disabled
    assert section.widget.selected_index == 0  # opened
    for _ in range(100):
        panel.poll()
        if "i1_b64" in section.progress.value:
            break
        threading.Event().wait(0.05)
    assert section.count.value == "variant 1 of 2" and "measuring" in section.progress.value
    fake.go.set()
    assert panel.wait(30)
    assert fake.settings["latency_budget_ms"] == 10.0 and fake.settings["strategy"] == "brute"
    assert "2 variants measured, best first" in section.progress.value and "i1_b16 ★" in section.progress.value
    assert section.answer.value.startswith("<b>serve mlp_numpy with 1 instance, max batch 16")
    assert "Plan done: 2 variants of mlp_numpy measured" in panel.status.value
    assert "recommended: i1_b16" in section.status.value
    # the panel's table has the plan's rows; the decision view one choice per variant
    assert len(panel.results) == 2 and "mlp_numpy (i1_b16)" in panel.decision_view.value
    assert ">Variant</th>" in panel.table.value and ">i1_b16</td>" in panel.table.value
    # the chart, as a figure that travels (without an image here, said once)
    (chart,) = section.chart_box.outputs
    assert "Plan for mlp_numpy" in chart["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]
    assert not panel.results_box.outputs  # the sweep's result charts are not drawn for a plan
    assert not section.plan_button.disabled and not panel.run_button.disabled and panel.stop_button.disabled
    assert section.stop_button.disabled
    assert not section.write_button.disabled
    section._write_clicked()
    written = tmp_path / "out" / "config.pbtxt"
    assert f"Wrote <code>{written}</code> (variant i1_b16)" in section.write_status.value
    assert "<code>max_batch_size: 64 -&gt; 16</code>" in section.write_status.value
    text_format.Parse(written.read_text(), model_config_pb2.ModelConfig())
    section._write_clicked()
    assert "Already there, the same" in section.write_status.value


def test_stop_reaches_a_plan_whose_runner_is_not_made_yet(monkeypatch: pytest.MonkeyPatch, no_images: None) -> None:
    fake = FakePlan()
    monkeypatch.setattr(plan_section, "plan", fake)
    panel = aw.Dashboard(models=[MODEL], space=SPACE)
    panel.budget_fields["latency_budget_ms"].value = "10"
    made = threading.Event()
    monkeypatch.setattr(plan_section.PlanSection, "_hook", _slow_hook(plan_section.PlanSection._hook, made))
    panel.plan_section.run()
    panel.plan_section.stop_button.click()  # the panel's Stop, before the hook ran: no runner yet
    made.set()
    fake.go.set()
    assert panel.wait(30)
    assert "Plan stopped: 1 variant of mlp_numpy measured" in panel.status.value
    assert "Stopped: the answer is among the variants measured" in panel.plan_section.answer.value


def _slow_hook(hook: Any, made: threading.Event) -> Any:
    def slow(self: Any, runner: SweepRunner) -> None:
        assert made.wait(30)
        hook(self, runner)
    return slow


def test_a_plan_that_fails_before_it_starts_says_plan_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: str, **_: Any) -> PlanResult:
        raise aw.ConfigError("space", "x", "refused for the test")

    monkeypatch.setattr(plan_section, "plan", refuse)
    panel = aw.Dashboard(models=[MODEL], space=SPACE)
    panel.budget_fields["latency_budget_ms"].value = "10"
    panel.plan_section.run()
    assert panel.wait(30)
    assert "Plan failed: space='x': refused for the test" in unescape(panel.status.value)
    assert panel.plan_section.status.value == panel.status.value
    assert not panel.plan_section.plan_button.disabled and not panel.run_button.disabled



def test_a_wild_latency_interval_does_not_stretch_the_axis() -> None:
    # on a busy host a p99 interval can reach a hundred times its figure: the figures set the axis
    rows = [row("i1_b16", p99=3.0, latency_p99_ci_low_ms=1.0, latency_p99_ci_high_ms=500.0)]
    plan = result(rows, Constraints(5.0))
    fig = pareto_figure(MODEL, plan.ranked, plan.constraints, recommended="i1_b16")
    assert fig.layout.xaxis.range[1] == pytest.approx(1.08 * 5.0)  # the budget's line, 5 ms, is within 2x of 3 ms
    assert "server resident memory above the baseline, 50 MB;" not in fig.layout.title.text
    assert fig.layout.title.text.endswith("server resident memory above the baseline, 50 MB</sup>")
