"""The panel without a browser: drive its own methods, assert on widget traits and figure
data. The sweeps run against the real embedded server."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.ui._series import Series, decimate
from analyzer_widgets.ui.charts import result_figures
from analyzer_widgets.ui.dashboard import STOPPING

PANEL = {"window_ms": 300, "baseline_s": 0.5, "max_trials": 6}


# -- pure helpers --------------------------------------------------------------------------
def test_decimate_keeps_peaks_and_bounds_points() -> None:
    t = np.arange(100_000, dtype=float)
    y = np.sin(t / 1000)
    y[54_321] = 10.0  # a one-sample peak
    dt, dy = decimate(t, y, 1000)
    assert len(dt) <= 1000
    assert dy.max() == 10.0
    assert np.all(np.diff(dt) > 0)


def test_series_memory_is_bounded_and_keeps_the_maximum() -> None:
    series = Series(capacity=2000)
    for start in range(0, 72_000, 500):  # an hour at 20 Hz
        t = list(range(start, start + 500))
        series.extend([float(v) for v in t], [1.0] * 500)
    series.extend([72_000.0], [99.0])
    assert len(series) <= 2000
    x, y = series.view(500)
    assert y.max() == 99.0 and len(x) <= 500


# -- validation ----------------------------------------------------------------------------
def test_bad_values_turn_the_field_red_name_it_and_disable_run() -> None:
    panel = aw.Dashboard(models=["mlp_numpy"])
    assert not panel.run_button.disabled
    for bad in ("0", "1,-2", "abc", "", "1,,2", "2.5"):
        panel.batch_field.value = bad
        assert panel.run_button.disabled, bad
        assert "batch_sizes" in panel.batch_error.value, bad
        assert panel.batch_field.layout.border and "solid" in panel.batch_field.layout.border
    panel.batch_field.value = "1, 8"
    assert not panel.run_button.disabled and panel.batch_error.value == ""
    panel.concurrency_field.value = "0"
    assert panel.run_button.disabled and "concurrency" in panel.concurrency_error.value
    panel.concurrency_field.value = "4"
    panel.model_picker.value = ()
    assert panel.run_button.disabled and "pick at least one model" in panel.input_error.value


def test_batch_sizes_above_a_models_max_batch_are_named_and_nothing_to_measure_disables_run() -> None:
    panel = aw.Dashboard(models=["mlp_numpy", "mixed_inputs"])  # max batch 64 and 32
    panel.batch_field.value = "1,64,128"
    assert not panel.run_button.disabled  # some points would be measured
    said = panel.batch_error.value
    assert "mlp_numpy would skip 128 (max batch 64)" in said and "mixed_inputs would skip 64, 128 (max batch 32)" in said
    panel.batch_field.value = "128"
    assert panel.run_button.disabled and "Nothing would be measured" in panel.batch_error.value
    panel.model_picker.value = ("mlp_numpy",)
    panel.batch_field.value = "64"
    assert not panel.run_button.disabled and panel.batch_error.value == ""


def test_the_results_table_reads_as_people_read() -> None:
    import pandas as pd

    from analyzer_widgets.schema import MODEL_COLUMNS, Row
    from analyzer_widgets.ui.dashboard import results_table_html

    rows = [Row(MODEL_COLUMNS, {"model": "m", "batch_size": 8, "concurrency": 2, "status": "unstable",
                                "throughput_infer_per_s": 1380.817578, "latency_p99_ms": 5.91234,
                                "server_cpu_util_max_pct": 150.4, "reason": "not stable within 10% after 6 windows"})]
    table = results_table_html(pd.DataFrame(rows), {"gpu": "NVML is not available"})
    assert "Throughput (infer/s)" in table and "throughput_infer_per_s" not in table
    assert ">1,381<" in table and ">5.91<" in table and "1380.8" not in table  # rounded; the CSV keeps every digit
    assert "color:#b26a00" in table  # unstable does not look like ok
    assert "not stable within 10%" in table and "white-space:normal" in table
    assert "Not shown, no values: GPU memory max (MB)" in table and "NVML is not available" in table


def test_settings_section_reaches_the_spec() -> None:
    panel = aw.Dashboard(models=["mlp_numpy"])
    fields = panel.settings_fields
    fields["grpc_port"].value = "18001"
    fields["window_ms"].value = "250"
    fields["protocol"].value = "http"
    spec = aw.make_spec(**panel.spec_settings())
    assert spec.server.grpc_port == 18001 and spec.server.http_port is None
    assert spec.measurement.window_ms == 250 and spec.measurement.protocol.value == "http"
    fields["launch_mode"].value = "remote"
    assert panel.run_button.disabled and "URL" in panel.settings_errors["url"].value
    fields["url"].value = "127.0.0.1:18001"
    assert not panel.run_button.disabled
    assert aw.make_spec(**panel.spec_settings()).server.url == "127.0.0.1:18001"
    fields["launch_mode"].value = "docker"
    assert panel.run_button.disabled and "docker launch mode needs" in panel.settings_errors["triton_image"].value
    fields["triton_version"].value = "24.08"
    assert not panel.run_button.disabled
    assert aw.make_spec(**panel.spec_settings()).server.triton_version == "24.08"
    fields["triton_image"].value = "local/triton:2.51"
    assert aw.make_spec(**panel.spec_settings()).server.triton_image == "local/triton:2.51"


def test_settings_fields_are_the_declared_ones_and_refuse_bad_values_by_field() -> None:
    from analyzer_widgets.config import SETTINGS_CLASSES, declared

    panel = aw.Dashboard(models=["mlp_numpy"], window_ms=300)
    labelled = [f.name for cls in SETTINGS_CLASSES for f, s in declared(cls) if s.panel]
    assert list(panel.settings_fields) == labelled
    assert panel.settings_fields["window_ms"].value == "300"  # a setting given to the panel shows in its field
    assert panel.settings_fields["stability_pct"].value == "" and panel.settings_fields["stability_pct"].placeholder == "10"
    panel.settings_fields["stability_pct"].value = "150"
    assert panel.run_button.disabled
    assert "percentage" in panel.settings_errors["stability_pct"].value
    panel.settings_fields["stability_pct"].value = "5"
    assert not panel.run_button.disabled and panel.settings_errors["stability_pct"].value == ""
    assert aw.make_spec(**panel.spec_settings()).measurement.stability_pct == 5


def test_model_picker_lists_the_repository_with_backend_and_max_batch() -> None:
    panel = aw.Dashboard()
    labels = dict((value, label) for label, value in panel.model_picker.options)
    assert set(labels) == {"mlp_numpy", "mixed_inputs", "sequence_mean", "torch_mlp"}
    assert "max batch 64" in labels["mlp_numpy"] and "python" in labels["mlp_numpy"]


def test_a_misspelt_setting_is_refused_when_the_panel_is_made() -> None:
    with pytest.raises(aw.ConfigError, match="window_mss"):
        aw.Dashboard(window_mss=500)


def test_a_missing_repository_is_said_in_the_panel(tmp_path: Path) -> None:
    panel = aw.Dashboard(tmp_path / "nowhere")
    assert "does not exist" in panel.repository_note.value
    assert panel.run_button.disabled


@pytest.mark.skipif(nvml_unavailable_reason() is None, reason="this machine has a GPU; the GPU charts are checked there")
def test_the_live_figure_is_one_figure_on_a_shared_time_axis_with_a_placeholder() -> None:
    panel = aw.Dashboard(models=["mlp_numpy"])
    live = panel.live_figure
    rows = len(panel._charts)
    assert rows == 3 and len({t.xaxis for t in live.data}) == rows
    # every chart's time axis follows the bottom one's (zoom one, zoom all)
    assert {live.layout[f"xaxis{i if i > 1 else ''}"].matches for i in range(1, rows)} == {f"x{rows}"}
    assert all(trace.showlegend is False for trace in live.data)  # one trace a chart: no legend
    assert any(a.name == "waiting" for a in live.layout.annotations)


def test_a_split_sweeps_units_and_its_ray_dashboard_show_under_the_status() -> None:
    panel = aw.Dashboard(models=["mlp_numpy"])
    panel._apply(events.RayJoined(2, "aw_slot=1", "http://127.0.0.1:8265"))
    panel._apply(events.UnitStarted(1, 2, ("mixed_inputs",), None, "", 42, "127.0.0.2 (ab12cd34)", 2))
    panel._apply(events.UnitStarted(0, 2, ("mlp_numpy",), None, "", 41, "127.0.0.1 (ff00ee11)"))
    panel._apply(events.UnitFinished(0, ("mlp_numpy",), None, 3, 1, "the server died (signal 9)\nits log", "x"))
    assert panel.units.value == (
        "<small>Ray cluster of 2 nodes, each unit asking for aw_slot=1: "
        "<a href='http://127.0.0.1:8265' target='_blank'>Ray dashboard</a><br>"
        "unit 1 mlp_numpy: done on node x, 3 points measured, 1 failed (the server died (signal 9))<br>"
        "unit 2/2 mixed_inputs: running (attempt 2) on node 127.0.0.2 (ab12cd34), worker pid 42</small>")
    # until a unit's samples come the live charts say where they will come from
    panel._draw_live()
    waiting = [a.text for a in panel.live_figure.layout.annotations if a.name == "waiting"]
    assert waiting == ["Each unit samples its own server: its lines appear as it hands its samples on"]
    panel._reset()  # the next run starts without them
    assert panel.units.value == ""


def test_each_units_samples_are_its_own_lines_on_the_live_charts() -> None:
    """A split sweep's units sample their own servers and hand the samples on: the panel
    draws each unit's as lines of its own colour, on every chart whose metric they have,
    placed on the panel's axis by when the first arrived."""
    panel = aw.Dashboard(models=["mlp_numpy"])
    started = time.monotonic()
    panel._t = lambda monotonic: monotonic - started  # type: ignore[method-assign]  # as a run's clock
    own = len(panel.live_figure.data)
    template = [c.traces[0] for c in panel._charts]
    for unit in (0, 1):
        panel._apply(events.UnitStarted(unit, 2, (f"m{unit}",), unit, "", 40 + unit))

    def samples(unit: int, times: list[float], value: float) -> events.SamplesTaken:
        frame = pd.DataFrame({"time_s": times, "source": [template[0].source] * len(times),
                              template[0].key: [value] * len(times)})
        return events.SamplesTaken(frame, unit)

    panel._apply(samples(0, [0.5, 1.0], 10.0))
    panel._apply(samples(1, [0.2], 20.0))
    panel._apply(samples(0, [1.5], 11.0))  # the same unit's next: the same line, the same offset
    panel._draw_live()
    lines = panel.live_figure.data[own:]
    # the first chart's metric only (the frames have no other): a line per unit, each named in the legend
    assert [(d.name, d.showlegend, d.yaxis) for d in lines] == [("unit 1 (slot 0)", True, "y"),
                                                               ("unit 2 (slot 1)", True, "y")]
    assert lines[0].line.color != lines[1].line.color
    assert list(lines[0].y) == [10.0, 10.0, 11.0] and list(lines[1].y) == [20.0]
    xs = list(lines[0].x)
    assert xs[1] - xs[0] == pytest.approx(0.5) and xs[2] - xs[1] == pytest.approx(0.5)
    assert not any(a.name == "waiting" for a in panel.live_figure.layout.annotations)
    # unit 1 started again (a pack's next step, a Ray task's next attempt): its clock restarts,
    # and its next samples are placed afresh, after the ones before, not on top of them
    panel._apply(events.UnitStarted(0, 1, ("GPU 0",), 0, "", 50))
    time.sleep(0.7)  # past the last sample placed (0.5 s after the first arrived)
    panel._apply(samples(0, [0.1], 12.0))
    panel._draw_live()
    assert list(panel.live_figure.data[own].y) == [10.0, 10.0, 11.0, 12.0]
    assert panel.live_figure.data[own].x[-1] > xs[-1]
    panel._reset()
    panel._draw_live()  # the next sweep's figure starts without the last one's unit lines
    assert len(panel.live_figure.data) == own


def test_the_live_figure_follows_the_pages_theme() -> None:
    import plotly.io as pio

    panel = aw.Dashboard(models=["mlp_numpy"])
    assert panel.live_figure.layout.template == pio.templates["plotly_white"]
    panel.theme.light = False  # as the probe reports a dark JupyterLab
    assert panel.live_figure.layout.template == pio.templates["plotly_dark"]
    panel.theme.light = True
    assert panel.live_figure.layout.template == pio.templates["plotly_white"]


def test_point_labels_sit_above_the_plots_and_thin_out_when_there_are_many() -> None:
    from analyzer_widgets.ui.dashboard import MAX_MARK_LABELS, point_marks

    shapes, labels = point_marks([(float(i), f"mlp_numpy b=1 c={i}") for i in range(100)])
    assert len(shapes) == 100 and len(labels) <= MAX_MARK_LABELS
    assert all(label["y"] > 1 and label["yanchor"] == "bottom" and "textangle" not in label for label in labels)
    assert len({label["y"] for label in labels}) == 2  # neighbours at two heights


def test_point_labels_that_would_overlap_take_the_other_height_or_none() -> None:
    """A split sweep's units start points close together: labels at one height never
    overlap (by the width estimated from the axis's span), and a third that clears neither
    height is left out, its line kept."""
    from analyzer_widgets.ui.dashboard import LIVE_PLOT_WIDTH_PX, MARK_LABEL_CHAR_PX, point_marks

    marks = [(10.0, "mlp_numpy b=1 c=1"), (10.2, "mixed_inputs b=1 c=1"), (10.4, "c=2"), (60.0, "c=4")]
    shapes, labels = point_marks(marks, x_span=100.0)
    assert len(shapes) == 4
    assert [label["text"] for label in labels] == ["mlp_numpy b=1 c=1", "mixed_inputs b=1 c=1", "c=4"]
    assert labels[0]["y"] != labels[1]["y"] and labels[2]["y"] == labels[0]["y"]
    per_char = 100.0 * MARK_LABEL_CHAR_PX / LIVE_PLOT_WIDTH_PX
    for height in {label["y"] for label in labels}:
        row = [label for label in labels if label["y"] == height]
        for left, right in itertools.pairwise(row):
            assert right["x"] >= left["x"] + len(left["text"]) * per_char, (left, right)
    # zoomed out (an hour on the axis), the point 50 s later falls under the first two labels
    assert [label["text"] for label in point_marks(marks, x_span=3600.0)[1]] == [text for _, text in marks[:2]]


def test_without_a_gpu_the_panel_says_so_and_charts_cpu_and_memory() -> None:
    panel = aw.Dashboard()
    assert "No GPU here" in panel.notice.value
    titles = [a.text for a in panel._chart_titles]
    assert any("CPU" in t for t in titles) and any("memory" in t for t in titles)
    assert not any(t.startswith("GPU") for t in titles)


def test_result_charts() -> None:
    rows = []
    for b in (1, 8):
        for c in (1, 2):
            rows.append({"model": "m", "batch_size": b, "concurrency": c, "status": "ok",
                         "throughput_infer_per_s": 100.0 * b * c, "latency_p99_ms": 1.0 + c,
                         "gpu_memory_max_mb": math.nan, "server_rss_max_mb": 80.0})
    import pandas as pd

    figures = result_figures(pd.DataFrame(rows), pd.DataFrame([{"gpu_memory_max_mb": math.nan, "server_rss_max_mb": 30.0}]))
    assert len(figures["throughput_vs_latency"].data) == 2  # one line per batch size
    assert list(figures["throughput_vs_latency"].data[1].y) == [800.0, 1600.0]
    assert "no GPU figures" in figures["memory_vs_latency"].layout.title.text
    assert "Throughput vs p99 latency" in figures["throughput_vs_latency"].layout.title.text
    assert "Where the time goes" in figures["latency_breakdown"].layout.title.text


# -- a sweep from the panel ----------------------------------------------------------------
@pytest.mark.server
def test_run_fills_rows_charts_and_result_charts_then_exports(tmp_path: Path) -> None:
    panel = aw.Dashboard(models=["mlp_numpy"], batch_sizes="1,8", concurrency="2", **PANEL)
    panel.run()
    assert panel.run_button.disabled and not panel.stop_button.disabled
    assert panel.wait(180)
    df = panel.results
    assert list(zip(df["batch_size"], df["concurrency"], strict=True)) == [(1, 2), (8, 2)]
    assert (df["throughput_infer_per_s"] > 0).all()
    assert "Done: 2 points" in panel.status.value
    assert panel.progress.value == panel.progress.max == 2
    assert "mlp_numpy" in panel.table.value and "Throughput (infer/s)" in panel.table.value
    # the live figure got the samplers' data, with the points marked
    live = panel.live_figure
    assert len(live.data[0].x) > 5 and len(live.data[0].x) == len(live.data[0].y)
    # vertical marks: the end of the baseline and the start of each point, labelled above the plots
    assert sum(1 for s in live.layout.shapes if s.yref == "paper") == 3
    labels = [a.text for a in live.layout.annotations if a.yref == "paper" and a.xref == "x"]
    assert labels == ["baseline end", "mlp_numpy b=1 c=2", "b=8 c=2"]
    memory_axis = "y" if panel.has_gpu else "y2"
    assert any(s.yref == memory_axis and s.line.dash == "dash" for s in live.layout.shapes), "no baseline line"
    assert any(a.text.startswith("baseline (no models)") for a in live.layout.annotations), "baseline unlabelled"
    assert not any(a.name == "waiting" for a in live.layout.annotations)
    figures = panel.result_figures()
    assert len(figures["throughput_vs_latency"].data) == 2  # batch 1 and batch 8
    assert not panel.run_button.disabled and panel.stop_button.disabled
    # the decision view: a budget gives the best point in one sentence, starred on the chart
    best = df.loc[df["throughput_infer_per_s"].idxmax()]
    panel.budget_fields["latency_budget_ms"].value = "10000"
    assert f"mlp_numpy: batch {best['batch_size']}, concurrency 2:" in panel.decision_view.value
    assert "p99 ≤ 10,000 ms" in panel.decision_view.value or "p99 ≤ 10000 ms" in panel.decision_view.value
    starred = [t for t in panel.result_figures()["throughput_vs_latency"].data if t.marker.symbol == "star"]
    assert len(starred) == 1 and list(starred[0].x) == [best["latency_p99_ms"]]
    panel.budget_fields["latency_statistic"].value = "avg"
    assert "mean" in panel.decision_view.value
    panel.budget_fields["latency_budget_ms"].value = "0.001"
    assert "no point within" in panel.decision_view.value
    panel.budget_fields["latency_budget_ms"].value = "soon"
    assert "positive number of milliseconds" in panel.decision_view.value
    panel.theme.light = False  # a dark page: the result charts follow
    assert all(fig.layout.template.layout.paper_bgcolor == pio.templates["plotly_dark"].layout.paper_bgcolor
               for fig in panel.result_figures().values())

    paths = panel.export(tmp_path / "out")
    assert {p.name for p in paths} == {"metrics-model.csv", "metrics-server-only.csv", "metrics-samples.csv"}
    model, _ = aw.load_results(tmp_path / "out")
    assert list(model["throughput_infer_per_s"]) == list(df["throughput_infer_per_s"])
    panel.export_field.value = str(tmp_path / "out")
    panel._export_clicked()  # the button: refuses to replace without being asked, in the panel's words
    assert "tick Overwrite" in panel.export_status.value and "--overwrite" not in panel.export_status.value
    panel.overwrite_box.value = True
    panel._export_clicked()
    assert panel.export_status.value.startswith("Wrote ")


@pytest.mark.server
def test_stop_ends_the_sweep_within_seconds_and_keeps_finished_rows() -> None:
    panel = aw.Dashboard(models=["mlp_numpy", "mixed_inputs"], batch_sizes="1,2,4,8", concurrency="1,2", **PANEL)
    panel.run()
    deadline = time.monotonic() + 120
    while panel.results.empty and time.monotonic() < deadline:
        panel.poll()
        time.sleep(0.1)
    assert not panel.results.empty, "no point finished"
    stopped_at = time.monotonic()
    panel.stop()
    panel._current = "mlp_numpy batch=4 concurrency=1"  # as the next point's start would set it
    panel._update_status()  # a tick while the point in flight ends: the line still says it is stopping
    assert panel.status.value == STOPPING
    assert panel.wait(30)
    took = time.monotonic() - stopped_at
    assert took < 8, f"stop took {took:.1f} s"  # a point's window, the unload, the server's exit
    df = panel.results
    assert 1 <= len(df) < 16
    assert "Stopped after" in panel.status.value
    assert not panel.run_button.disabled


def test_headers_field_is_checked_and_reaches_the_spec() -> None:
    panel = aw.Dashboard(models=["mlp_numpy"])
    panel.settings_fields["headers"].value = "admin-key"
    assert panel.run_button.disabled
    assert "admin-key" in panel.input_error.value and "NAME:VALUE" in panel.input_error.value
    panel.settings_fields["headers"].value = "admin-key: s3cret, x-team:ml"
    assert not panel.run_button.disabled
    assert aw.make_spec(**panel.spec_settings()).server.headers == {"admin-key": "s3cret", "x-team": "ml"}


def test_an_unknown_save_mode_is_refused_when_the_panel_is_made() -> None:
    with pytest.raises(aw.ConfigError, match="save"):
        aw.Dashboard(save="disk")


@pytest.mark.server
@pytest.mark.faults
def test_save_then_stop_then_resume_in_the_export_folder(tmp_path: Path) -> None:
    """Save writes each row as it is measured; after a Stop, Resume keeps those rows and
    measures the rest; a Resume with another grid is refused in the status line before
    anything is launched, and the folder is left as it was."""
    out = tmp_path / "sweep"
    panel = aw.Dashboard(models=["mlp_numpy"], batch_sizes="1,2,4", concurrency="1,2", export_path=str(out),
                         save="save", **PANEL)
    panel.run()
    deadline = time.monotonic() + 120
    while len(panel.results) < 2 and time.monotonic() < deadline:
        panel.poll()
        time.sleep(0.1)
    panel.stop()
    assert panel.wait(60)
    saved, _ = aw.load_results(out)
    first = list(zip(saved["batch_size"], saved["concurrency"], strict=True))
    assert 2 <= len(first) < 6 and list(panel.results["throughput_infer_per_s"]) == list(saved["throughput_infer_per_s"])

    # Save again on the same folder: refused, not overwritten
    panel.run()
    assert not panel.running and "already" in panel.status.value
    panel.save_mode.value = "resume"
    panel.batch_field.value = "1,2,8"
    panel.run()
    assert not panel.running
    assert "batch_sizes" in panel.status.value and "[1, 2, 4] then" in panel.status.value, panel.status.value
    assert aw.load_results(out)[0].equals(saved)

    panel.batch_field.value = "1,2,4"
    panel.run()
    assert panel.wait(180)
    assert "Done: 6 points" in panel.status.value, panel.status.value
    df, _ = aw.load_results(out)
    assert len(df) == 6 and set(df["status"]) <= {"ok", "unstable"}
    kept = df.set_index(["batch_size", "concurrency"]).loc[first]
    # the rows measured before the stop are the very same rows, not measured again
    assert list(kept["started_at"]) == list(saved["started_at"])
    assert len(panel.results) == 6


def test_panel_module_is_the_only_one_importing_widgets() -> None:
    import subprocess
    import sys

    code = ("import sys, analyzer_widgets, analyzer_widgets.cli, analyzer_widgets.runner; "
            "print(any(m.startswith(('ipywidgets', 'plotly')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
