"""The panel's Pack section: its fields and their checks (a bad target rate named with its
model and value), the settings it hands to aw.pack (the panel's sweep settings and its one
latency budget), what it says while a pack runs (from the engine's events), its answer's
parts from real plans of the packing logic; and a real pack through the panel on the
embedded server with two example models (marker ``server``)."""

from __future__ import annotations

import doctest
import time
from html import unescape

import pytest

import analyzer_widgets as aw
from analyzer_widgets import events as ev
from analyzer_widgets.planning.packing import Gpus, ModelNeed, PackResult, judge_gpu, pack
from analyzer_widgets.planning.planner import Constraints
from analyzer_widgets.ui import pack_section
from analyzer_widgets.ui.pack_section import (
    NO_BUDGET,
    NO_RATES,
    PackProgress,
    PhaseEnded,
    checks_html,
    plan_table_html,
    target_rates,
)

MODELS = ["mlp_numpy", "mixed_inputs"]


def test_the_doctests_hold() -> None:
    assert doctest.testmod(pack_section).failed == 0


@pytest.mark.parametrize(("text", "field", "value", "why"), [
    ("mlp_numpy=fast, mixed_inputs=200", "target_rates['mlp_numpy']", "fast", "must be a number above 0"),
    ("mlp_numpy=500, mixed_inputs=-3", "target_rates['mixed_inputs']", "-3", "must be a number above 0"),
    ("mlp_numpy=500, mixed_inputs=nan", "target_rates['mixed_inputs']", "nan", "above 0"),
    ("mlp_numpy=500, mixed_inputs=", "target_rates['mixed_inputs']", "mixed_inputs=", "has no rate after '='"),
    ("mlp_numpy=500", "target_rates['mixed_inputs']", None, "has no target rate"),
    ("mlp_numpy=500, torch_mlp=9, mixed_inputs=1", "target_rates['torch_mlp']", 9.0,
     "'torch_mlp' is not among the models packed (mlp_numpy, mixed_inputs)"),
    ("mlp_numpy=500, mlp_numpy=600", "target_rates['mlp_numpy']", "600", "is given twice"),
    ("mlp_numpy 500", "target_rates", "mlp_numpy 500", "is not model=rate"),
])
def test_a_bad_target_rate_names_its_model_and_value(text: str, field: str, value: str, why: str) -> None:
    with pytest.raises(aw.ConfigError) as e:
        target_rates(text, MODELS)
    assert (e.value.field, e.value.value) == (field, value) and why in e.value.reason


def test_target_rates_are_one_per_model_selected() -> None:
    assert target_rates(" mixed_inputs = 200 ,mlp_numpy=1e3,", MODELS) == {"mixed_inputs": 200.0, "mlp_numpy": 1000.0}


def test_the_fields_are_checked_as_typed_and_pack_waits_for_good_ones() -> None:
    panel = aw.Dashboard(models=MODELS)
    section = panel.pack_section
    assert section.target_field.placeholder == "mlp_numpy=500, mixed_inputs=200"
    assert "Packs <b>mlp_numpy, mixed_inputs</b>" in section.about.value
    # nothing typed yet: hints, not errors
    assert section.pack_button.disabled and section.status.value == NO_RATES
    section.target_field.value = "mlp_numpy=fast, mixed_inputs=200"
    said = unescape(section.errors["target_rates"].value)
    assert "target_rates['mlp_numpy']='fast': must be a number above 0" in said
    assert section.pack_button.disabled and "target_rates['mlp_numpy']='fast'" in unescape(section.status.value)
    section.target_field.value = "mlp_numpy=500, mixed_inputs=200"
    assert not section.errors["target_rates"].value
    assert section.pack_button.disabled and section.status.value == NO_BUDGET
    panel.budget_fields["latency_budget_ms"].value = "20"
    assert not section.pack_button.disabled and section.status.value == ""
    # the section's budget is the decision view's (and the Plan section's): one value, both ways
    assert section.budget_fields["latency_budget_ms"].value == "20"
    section.budget_fields["latency_statistic"].value = "p95"
    assert panel.budget_fields["latency_statistic"].value == "p95"
    assert panel.plan_section.budget_fields["latency_statistic"].value == "p95"
    section.fields["headroom_pct"].value = "100"
    assert "headroom_pct='100'" in unescape(section.errors["headroom_pct"].value) and section.pack_button.disabled
    section.fields["headroom_pct"].value = "10"
    section.fields["gpu_memory_mb"].value = "lots"
    assert "gpu_memory_mb='lots'" in unescape(section.errors["gpu_memory_mb"].value) and section.pack_button.disabled
    section.fields["gpu_memory_mb"].value = ""
    assert section.own_settings() == {"headroom_pct": 10.0, "validate": True, "interval_low": True,
                                      "target_rates": {"mlp_numpy": 500.0, "mixed_inputs": 200.0}}
    assert not section.pack_button.disabled
    # a model unselected: its rate is now one too many, said with the model's name
    panel.model_picker.value = ("mlp_numpy",)
    assert "'mixed_inputs' is not among the models packed" in unescape(section.errors["target_rates"].value)
    assert section.pack_button.disabled
    panel.batch_field.value = "0"  # the panel's own field: the panel says it, Pack waits
    section.target_field.value = "mlp_numpy=500"
    assert section.pack_button.disabled and "Fix the panel's fields" in section.status.value
    section.run()
    assert not panel.running


def test_the_pack_gets_the_panels_settings_and_budget() -> None:
    panel = aw.Dashboard(models=MODELS, batch_sizes="1", concurrency="1,8", window_ms=200, export_path="out")
    section = panel.pack_section
    panel.settings_fields["latency_budget_ms"].value = "99"  # the sweep's Budget search: Run's, not Pack's
    panel.budget_fields["latency_budget_ms"].value = "20"
    section.target_field.value = "mixed_inputs=200, mlp_numpy=500"
    section.fields["gpu_memory_mb"].value = "4000"
    section.fields["validate"].value = False
    models, settings = section.settings()
    assert models == MODELS
    assert settings["target_rates"] == {"mixed_inputs": 200.0, "mlp_numpy": 500.0}
    assert settings["latency_budget_ms"] == 20.0 and settings["latency_statistic"].value == "p99"
    assert settings["gpu_memory_mb"] == 4000.0 and settings["validate"] is False
    assert "headroom_pct" not in settings  # empty: pack's own default
    assert settings["batch_sizes"] == "1" and settings["concurrency"] == "1,8" and settings["window_ms"] == "200"
    assert "export_path" not in settings
    panel.save_mode.value = "save"
    _, settings = section.settings()
    assert settings["export_path"] == "out" and settings["resume"] is False
    panel.save_mode.value = "resume"
    _, settings = section.settings()
    assert settings["resume"] is True


def test_progress_says_the_step_of_the_pack_and_what_it_measures() -> None:
    progress = PackProgress()
    assert progress.apply(ev.Notice("pack: measuring mlp_numpy, mixed_inputs alone: each one's highest load",
                                    ev.Level.INFO))
    assert progress.text == "Measuring mlp_numpy, mixed_inputs alone: each one's highest load"
    progress.apply(ev.SweepStarted(None, 4))  # type: ignore[arg-type]
    assert progress.apply(ev.PointStarted("mlp_numpy", 1, 2, 1, 4))
    assert progress.text.endswith("\nmlp_numpy: point 2 of 4")
    assert not progress.apply(ev.Notice("a warning"))  # the panel's, not a step
    assert progress.apply(PhaseEnded(ev.SweepFinished(cancelled=False, error=None, elapsed_s=1.0)))
    progress.apply(ev.Notice("pack: measuring together at their planned rates: GPU 0 (mlp_numpy, mixed_inputs)",
                             ev.Level.INFO))
    progress.apply(ev.SweepStarted(None, 1))  # type: ignore[arg-type]
    loads = ("mlp_numpy: batch 1, rate 40/s", "mixed_inputs: batch 1, rate 20/s")
    assert progress.apply(ev.ColocatedPointStarted("GPU 0", loads, True, "", 0, 1))
    progress.apply(ev.PointStarted("mlp_numpy", 1, 0, 0, 2, 40.0))  # each model's: the group's line stays
    assert progress.text == ("Measuring together at their planned rates: GPU 0 (mlp_numpy, mixed_inputs)\n"
                             "together on GPU 0 (point 1 of about 1): mlp_numpy: batch 1, rate 40/s; mixed_inputs: "
                             "batch 1, rate 20/s")
    assert progress.runs == 2
    assert not progress.apply(ev.WindowMeasured("mlp_numpy", 1, 1, 1, 1.0, 1.0, 0))


def row(throughput: float, p99: float, status: str = "ok") -> dict[str, object]:
    return {"status": status, "error_count": 0, "throughput_infer_per_s": throughput, "latency_p99_ms": p99}


def test_the_answers_parts_from_a_real_plan_and_its_checks() -> None:
    plan = pack([ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200), ModelNeed("c", 2000, 1000, 1000)],
                Gpus(memory_mb=16000))
    budget = Constraints(20.0)
    # GPU 0 (a, c) measured together: a over the budget, c within it
    check = judge_gpu(plan.gpus[0], {"a": 1, "c": 1}, {"a": row(500.0, 31.0), "c": row(200.0, 5.0)}, budget)
    result = PackResult(plan, plan, budget, {"a": 1, "b": 1, "c": 4}, checks=[check], first_checks=[check])
    table = plan_table_html(result)
    assert table.count("<tr>") == 1 + len(plan.to_frame())  # the header and a row per replica
    assert ">Together p99 (ms)</th>" in table and ">31</td>" in table and ">failed</td>" in table
    assert ">assumed</td>" in table and ">1,000</td>" in table and ">20%</td>" in table and ">alone</td>" in table
    said = checks_html(result.checks, "Measured together")
    assert said.startswith("<b>Measured together</b>")
    assert "<b>GPU 0</b> (a, c): <span style='color:#b00;font-weight:600'>failed</span>: a: p99 31 ms" in said
    passed = judge_gpu(plan.gpus[0], {"a": 1, "c": 1}, {"a": row(500.0, 3.0), "c": row(200.0, 5.0)}, budget)
    assert "<span style='color:#2e7d32;font-weight:600'>validated</span>: measured together" in checks_html(
        [passed], "x")
    assert checks_html([], "x") == ""


# -- a real pack through the panel, on the embedded server --------------------------------------------
#: short windows, one batch size, two loads: seconds per model; rates far below what either serves here.
#: Three windows, not two: a capacity is its throughput interval's low end, and over two windows
#: (t = 12.7) a busy machine's scatter puts that at 0, which pack() rightly refuses
FAST = {"batch_sizes": "1", "concurrency": "1,4", "window_ms": 250, "stable_windows": 3, "max_trials": 5,
        "baseline_s": 0.3}


@pytest.fixture
def no_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's image needs a Chromium: here the section shows the figure without it."""
    monkeypatch.setattr("analyzer_widgets.ui.static.render_pngs", lambda specs: ({}, "no images in this test"))


def packing_panel() -> aw.Dashboard:
    panel = aw.Dashboard(models=MODELS, **FAST)
    panel.budget_fields["latency_budget_ms"].value = "1000"
    panel.pack_section.target_field.value = "mlp_numpy=40, mixed_inputs=20"
    # each capacity at its figure: on a loaded 2-core machine a few short windows can scatter
    # to an interval whose low end is 0, which pack() refuses (seen with three windows)
    panel.pack_section.fields["interval_low"].value = False
    return panel


@pytest.mark.server
def test_a_real_pack_through_the_panel_validates_and_draws_the_gpu(no_images: None) -> None:
    panel = packing_panel()
    section = panel.pack_section
    section.run()
    assert panel.running and section.pack_button.disabled and not section.stop_button.disabled
    steps = set()
    while panel.running:
        panel.poll()
        steps.add(section.phase.value.split("<br>")[0])
        time.sleep(0.1)
    assert panel.wait(120)
    # pack()'s steps, as they came
    assert any(s.startswith("Measuring mlp_numpy, mixed_inputs alone") for s in steps), steps
    assert any(s.startswith("Measuring together at their planned rates: GPU 0 (mlp_numpy, mixed_inputs)")
               for s in steps), steps
    result = section.result
    assert result is not None and result.plan.gpu_count == 1
    assert result.validated, [c.reason for c in result.first_checks + result.checks] + list(result.notes)
    assert all(n.capacity > 0 for n in result.plan.needs)
    assert section.status.value.startswith("Pack done: 1 GPU for 2 models in ") and "validated." in section.status.value
    assert panel.status.value == section.status.value and section.phase.value == ""
    assert section.answer.value.startswith("<b>1 GPU (the fewest): GPU 0 holds mlp_numpy (40 infer/s) and "
                                           "mixed_inputs (20 infer/s)")
    assert "<b>GPU 0</b> (mlp_numpy, mixed_inputs): <span style='color:#2e7d32;font-weight:600'>validated" in (
        section.checks.value)
    assert section.table.value.count("<tr>") == 3 and ">passed</td>" in section.table.value
    # the panel's table: the models measured alone
    assert set(panel.results["model"]) == set(MODELS)
    (chart,) = section.chart_box.outputs
    figure = chart["data"]["application/vnd.plotly.v1+json"]
    assert figure["layout"]["title"]["text"].startswith("Packing plan: 1 GPU (the fewest) for 2 models")
    segments = {t["name"]: t for t in figure["data"] if t.get("showlegend") is False}
    assert segments["mlp_numpy"]["text"] == ["mlp_numpy: 40 infer/s"] and segments["mlp_numpy"]["x"] == ["GPU 0"]
    assert "validated ✓" in figure["layout"]["xaxis"]["ticktext"][0]
    assert not panel.results_box.outputs  # the sweep's result charts are not drawn for a pack
    assert not section.pack_button.disabled and not panel.run_button.disabled and panel.stop_button.disabled


@pytest.mark.server
def test_stop_ends_a_real_pack_while_the_models_are_measured_alone(no_images: None) -> None:
    panel = packing_panel()
    section = panel.pack_section
    section.run()
    deadline = time.monotonic() + 120
    while "point" not in section.phase.value and time.monotonic() < deadline:
        panel.poll()
        time.sleep(0.1)
    assert "point" in section.phase.value, section.phase.value
    section.stop_button.click()  # the panel's Stop
    stopped = time.monotonic()
    assert panel.wait(60)
    assert time.monotonic() - stopped < 30
    assert section.result is None
    assert section.status.value.startswith("Pack stopped: the pack was stopped while measuring the models alone")
    assert not section.pack_button.disabled and not panel.run_button.disabled


@pytest.mark.server
def test_a_pack_split_over_two_slots_shows_its_units_and_keeps_the_tables_apart(no_images: None) -> None:
    """--parallel gpus in the panel's settings: the pack's steps run as units (the models
    alone, a unit each; the GPU measured together, a unit), the panel shows a line per unit
    and each unit's samples on the live charts, its table takes the rows alone only (the
    co-located rows are the section's), and the answer is validated as on one server."""
    panel = aw.Dashboard(models=MODELS, parallel="gpus", parallel_slots=2, **FAST)
    panel.budget_fields["latency_budget_ms"].value = "1000"
    panel.pack_section.target_field.value = "mlp_numpy=40, mixed_inputs=20"
    panel.pack_section.fields["interval_low"].value = False
    section = panel.pack_section
    section.run()
    unit_lines: set[str] = set()
    while panel.running:
        panel.poll()
        unit_lines.update(panel.units.value.removeprefix("<small>").removesuffix("</small>").split("<br>"))
        time.sleep(0.1)
    assert panel.wait(120)
    result = section.result
    assert result is not None and result.plan.gpu_count == 1
    assert result.validated, [c.reason for c in result.first_checks + result.checks] + list(result.notes)
    # the models alone, a unit each on its slot, then the plan's GPU as one unit (its models in the plan's order)
    done = sorted(line.split(": done on ")[0] for line in unit_lines if ": done on slot" in line)
    assert done in (["unit 1 GPU 0 (mixed_inputs, mlp_numpy)", "unit 1 mlp_numpy", "unit 2 mixed_inputs"],
                    ["unit 1 GPU 0 (mlp_numpy, mixed_inputs)", "unit 1 mlp_numpy", "unit 2 mixed_inputs"]), unit_lines
    # the panel's table: the models' rows alone (at concurrencies), not the co-located ones (at their rates)
    assert set(panel.results["model"]) == set(MODELS) and panel.results["request_rate_per_s"].isna().all()
    assert len(result.colocated) == 2 and {r["group"] for r in result.colocated} == {"GPU 0"}
    drawn = [d for d in panel.live_figure.data if (d.legendgroup or "").startswith("unit ")]
    assert drawn and all(len(d.x) > 0 for d in drawn)
