"""The panel's Pack section: its fields and their checks (a bad target rate named with its
model and value), the settings it hands to aw.pack (the panel's sweep settings and its one
latency budget), what it says while a pack runs (from the engine's events), its answer's
parts from real plans of the packing logic; and a real pack through the panel on the
embedded server with two example models (marker ``server``)."""

from __future__ import annotations

import doctest
from html import unescape

import pytest

import analyzer_widgets as aw
from analyzer_widgets import events as ev
from analyzer_widgets.planning.packing import Gpus, ModelNeed, pack
from analyzer_widgets.ui import pack_section
from analyzer_widgets.ui.pack_section import (
    NO_BUDGET,
    NO_RATES,
    PackProgress,
    PhaseEnded,
    checks_html,
    optional_number,
    plan_table_html,
    target_rates,
)

MODELS = ["mlp_numpy", "mixed_inputs"]


def test_the_doctests_hold() -> None:
    assert doctest.testmod(pack_section).failed == 0


@pytest.mark.parametrize(("text", "field", "value", "why"), [
    ("mlp_numpy=fast, mixed_inputs=200", "target_rates['mlp_numpy']", "fast", "must be a number of infer/s above 0"),
    ("mlp_numpy=500, mixed_inputs=-3", "target_rates['mixed_inputs']", "-3", "must be a number of infer/s above 0"),
    ("mlp_numpy=500, mixed_inputs=nan", "target_rates['mixed_inputs']", "nan", "above 0"),
    ("mlp_numpy=500", "target_rates['mixed_inputs']", "", "the model is selected but has no target rate"),
    ("mlp_numpy=500, torch_mlp=9, mixed_inputs=1", "target_rates['torch_mlp']", "9",
     "'torch_mlp' is not among the models selected (mlp_numpy, mixed_inputs)"),
    ("mlp_numpy=500, mlp_numpy=600", "target_rates['mlp_numpy']", "600", "is given twice"),
    ("mlp_numpy 500", "target_rates", "mlp_numpy 500", "is not model=rate"),
])
def test_a_bad_target_rate_names_its_model_and_value(text: str, field: str, value: str, why: str) -> None:
    with pytest.raises(aw.ConfigError) as e:
        target_rates(text, MODELS)
    assert (e.value.field, e.value.value) == (field, value) and why in e.value.reason


def test_target_rates_are_one_per_model_selected() -> None:
    assert target_rates(" mixed_inputs = 200 ,mlp_numpy=1e3,", MODELS) == {"mixed_inputs": 200.0, "mlp_numpy": 1000.0}


def test_the_optional_numbers() -> None:
    assert optional_number("gpu_memory_mb", " ", low=0) is None
    assert optional_number("gpu_memory_mb", "4000", low=0) == 4000.0
    assert optional_number("headroom_pct", "0", low=0, below=100, zero=True) == 0.0
    with pytest.raises(aw.ConfigError, match=r"^gpu_memory_mb='0': must be a number above 0$"):
        optional_number("gpu_memory_mb", "0", low=0)
    with pytest.raises(aw.ConfigError, match=r"^headroom_pct='100': must be a number from 0 to below 100$"):
        optional_number("headroom_pct", "100", low=0, below=100, zero=True)


def test_the_fields_are_checked_as_typed_and_pack_waits_for_good_ones() -> None:
    panel = aw.Dashboard(models=MODELS)
    section = panel.pack_section
    assert section.target_field.placeholder == "mlp_numpy=500, mixed_inputs=200"
    assert "Packs <b>mlp_numpy, mixed_inputs</b>" in section.about.value
    # nothing typed yet: hints, not errors
    assert section.pack_button.disabled and section.status.value == NO_RATES
    section.target_field.value = "mlp_numpy=fast, mixed_inputs=200"
    said = unescape(section.errors["target_rates"].value)
    assert "target_rates['mlp_numpy']='fast': must be a number of infer/s above 0" in said
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
    section.headroom_field.value = "100"
    assert "headroom_pct='100'" in unescape(section.errors["headroom_pct"].value) and section.pack_button.disabled
    section.headroom_field.value = "10"
    section.memory_field.value = "lots"
    assert "gpu_memory_mb='lots'" in unescape(section.errors["gpu_memory_mb"].value) and section.pack_button.disabled
    section.memory_field.value = ""
    assert not section.pack_button.disabled
    # a model unselected: its rate is now one too many, said with the model's name
    panel.model_picker.value = ("mlp_numpy",)
    assert "'mixed_inputs' is not among the models selected" in unescape(section.errors["target_rates"].value)
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
    section.memory_field.value = "4000"
    section.validate_box.value = False
    models, settings = section.settings()
    assert models == MODELS
    assert settings["target_rates"] == {"mixed_inputs": 200.0, "mlp_numpy": 500.0}
    assert settings["latency_budget_ms"] == 20.0 and settings["latency_statistic"].value == "p99"
    assert settings["gpu_memory_mb"] == 4000.0 and settings["headroom_pct"] == 20.0 and settings["validate"] is False
    assert settings["batch_sizes"] == "1" and settings["concurrency"] == "1,8" and settings["window_ms"] == "200"
    assert "export_path" not in settings
    panel.save_mode.value = "save"
    _, settings = section.settings()
    assert settings["export_path"] == "out"


def test_progress_says_which_run_of_the_pack_is_measuring() -> None:
    progress = PackProgress()
    assert progress.apply(ev.SweepStarted(None, 4))  # type: ignore[arg-type]
    assert progress.text == "Run 1: measuring each model alone within the budget"
    assert progress.apply(PhaseEnded(ev.SweepFinished(cancelled=False, error=None, elapsed_s=1.0)))
    assert progress.text == "Run 1 done"
    progress.apply(ev.SweepStarted(None, 3))  # type: ignore[arg-type]
    loads = ("mlp_numpy: batch 1, rate 500/s", "mixed_inputs: batch 1, rate 200/s")
    assert progress.apply(ev.ColocatedPointStarted("GPU 0", loads, True, "", 2, 3))
    assert progress.text == ("Run 2, validating GPU 0: mlp_numpy: batch 1, rate 500/s; mixed_inputs: batch 1, "
                             "rate 200/s together (point 3 of 3)")
    assert not progress.apply(ev.WindowMeasured("mlp_numpy", 1, 1, 1, 1.0, 1.0, 0))


class Check:
    """A validated GPU as the pack's checks give it (gpu, models, passed, reason)."""

    def __init__(self, gpu: int, models: tuple[str, ...], passed: bool, reason: str) -> None:
        self.gpu, self.models, self.passed, self.reason = gpu, models, passed, reason


def test_the_answers_parts_from_a_real_plan() -> None:
    plan = pack([ModelNeed("a", 3000, 1000, 500), ModelNeed("b", 3000, 1000, 200), ModelNeed("c", 2000, 1000, 1000)],
                Gpus(memory_mb=16000))
    table = plan_table_html(plan)
    assert table.count("<tr>") == 1 + len(plan.to_frame())  # the header and a row per replica
    assert "<td style='padding:1px 8px;font-size:12px;text-align:right;white-space:nowrap'>assumed</td>" in table
    assert ">200</td>" in table and ">1,000</td>" in table and ">20%</td>" in table
    said = checks_html([Check(0, ("a", "c"), False, "a: p99 31 ms, above the budget of 20 ms"),
                        Check(1, ("b",), True, "p99 within 20 ms")])
    assert "<b>GPU 0</b> (a, c): <span style='color:#b00;font-weight:600'>failed</span>: a: p99 31 ms" in said
    assert "<b>GPU 1</b> (b): <span style='color:#2e7d32;font-weight:600'>validated</span>" in said
    assert checks_html([]) == ""
