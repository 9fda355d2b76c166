"""What a person sees: the panel in a real JupyterLab, in headless Chromium.

Open a notebook, run it, press the panel's Run, see a live chart's trace grow and the
results table fill, press Export and find the files. A screenshot is saved as a test
artifact (test-artifacts/).
"""

# The fixtures imported from browser are named again as test arguments:
# ruff: noqa: F811
from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import (  # noqa: F401
    ARTIFACTS_DIR,
    UI_TIMEOUT_MS,
    chromium_page,
    jupyter_lab,
    open_in_lab,
    run_all_cells,
    screenshot,
    voila_app,
    write_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CELLS = [
    ("markdown", "# analyzer-widgets panel"),
    "import analyzer_widgets as aw\n"
    "panel = aw.Dashboard(models=['mlp_numpy'], batch_sizes='1,8', concurrency='1', "
    "window_ms=300, baseline_s=1, max_trials=6, export_path='exported')\n"
    "panel",
]


def _trace_points(page) -> int:
    """Points in the first live chart's first trace, as drawn (its SVG path's commands)."""
    return page.evaluate(
        """() => {
            const path = document.querySelector('.js-plotly-plot .scatterlayer .trace path.js-line');
            if (!path) return 0;
            return (path.getAttribute('d') || '').split(/[ML]/).length - 1;
        }"""
    )


def _plot_area_fill(page) -> str:
    """The first chart's plot-area fill as drawn: "transparent" (plotly draws a transparent
    fill with fill-opacity 0) or its colour."""
    return page.evaluate(
        """() => {
            const style = getComputedStyle(document.querySelector('.js-plotly-plot rect.bg'));
            return Number(style.fillOpacity) === 0 ? 'transparent' : style.fill;
        }"""
    )


def test_panel_runs_a_sweep_in_jupyterlab(jupyter_lab, chromium_page, screenshot) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    notebook = open_in_lab(page, jupyter_lab, "panel.ipynb", CELLS)
    run_all_cells(page, notebook)

    run = notebook.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
    expect(run).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(run).to_be_enabled()
    expect(notebook.locator(".js-plotly-plot")).to_have_count(1, timeout=UI_TIMEOUT_MS)  # the live figure
    expect(notebook.get_by_text("Live GPU and server samples appear here")).to_be_visible(timeout=UI_TIMEOUT_MS)

    run.click()
    # the pointer out of the notebook (onto the top bar, which does not scroll): where Run left
    # it, the charts scrolled into view below pass under it, and plotly's extension then swaps
    # a chart's image for its figure before the test looks at the image (seen in CI)
    page.mouse.move(0, 0)
    # the live chart's trace grows while the sweep runs
    page.wait_for_function(
        "() => { const p = document.querySelector('.js-plotly-plot .scatterlayer .trace path.js-line');"
        " return p && (p.getAttribute('d') || '').split(/[ML]/).length > 5; }",
        timeout=UI_TIMEOUT_MS,
    )
    early = _trace_points(page)
    notebook.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    screenshot(page, "panel-live-chart", full_page=False)
    # the table fills row by row, then the status says it is done
    table = notebook.locator("table.aw-results")
    expect(table.locator("tbody tr")).to_have_count(2, timeout=180_000)
    expect(notebook.get_by_text(re.compile(r"Done: 2 points"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert _trace_points(page) > early, "the live chart did not grow during the sweep"
    expect(table).to_contain_text("mlp_numpy")
    # the charts left under the panel: the recorded samples and the three result charts.
    # plotly's JupyterLab extension shows each output's PNG until the pointer enters it,
    # then draws the figure, interactive, in its place
    charts = notebook.locator(".jp-RenderedPlotly")
    expect(charts).to_have_count(4, timeout=UI_TIMEOUT_MS)
    for i, title in enumerate(("Recorded during the sweep", "Throughput vs p99 latency", "memory vs p99 latency",
                               "Where the time goes")):
        chart = charts.nth(i)
        page.mouse.move(0, 0)  # off the last chart hovered, which the scroll would bring under the next
        chart.scroll_into_view_if_needed()
        expect(chart.locator("img.plot-img")).to_be_visible()
        assert chart.locator("img.plot-img").evaluate("img => img.naturalWidth") > 0
        chart.hover()
        expect(chart.locator(".main-svg").first).to_be_visible()
        assert title in " ".join(chart.locator("text").all_text_contents()), title
    screenshot(page, "panel-charts-under-it", full_page=False)

    notebook.locator("button.widget-button").filter(has_text="Export CSV").click()
    expect(notebook.get_by_text(re.compile(r"Wrote .*metrics-model\.csv"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    exported = jupyter_lab.root_dir / "exported"
    assert (exported / "metrics-model.csv").is_file()
    assert "mlp_numpy" in (exported / "metrics-model.csv").read_text()

    shot = screenshot(page, "panel-after-run")
    assert shot.stat().st_size > 10_000


def test_voila_shows_the_result_charts_and_the_decision_inside_the_panel(voila_app, chromium_page, screenshot,
                                                                         tmp_path) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    cells = [CELLS[1]]  # the panel alone, as an app
    server = voila_app(write_notebook(tmp_path / "app" / "panel.ipynb", cells))
    page.goto(server.url())
    expect(page.get_by_text("analyzer-widgets: Triton model sweep")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    run = page.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
    expect(run).to_be_enabled(timeout=UI_TIMEOUT_MS)
    # the live figure opens in the panel's theme, not plotly's default (a blue-grey plot
    # area): Voila draws the page after the notebook ran, from the widget's saved state
    expect(page.locator(".js-plotly-plot rect.bg").first).to_be_attached(timeout=UI_TIMEOUT_MS)
    assert _plot_area_fill(page) == "transparent"
    run.click()
    expect(page.get_by_text(re.compile(r"Done: 2 points"))).to_be_visible(timeout=180_000)
    assert _plot_area_fill(page) == "transparent"
    # the result charts, inside the panel (Voila shows no output displayed after its run),
    # each its image until the pointer enters it, then the figure
    charts = page.locator(".jp-RenderedPlotly")
    expect(charts).to_have_count(3, timeout=UI_TIMEOUT_MS)
    for i in range(3):
        charts.nth(i).scroll_into_view_if_needed()
        charts.nth(i).hover()
    expect(page.locator(".js-plotly-plot")).to_have_count(4, timeout=UI_TIMEOUT_MS)  # live + 3 results
    expect(page.get_by_text("Throughput vs p99 latency")).to_be_visible(timeout=UI_TIMEOUT_MS)
    budget = page.locator(".widget-text").filter(has_text="Latency budget (ms)").locator("input")
    budget.fill("10000")
    budget.press("Enter")
    expect(page.get_by_text(re.compile(r"mlp_numpy: batch \d+, concurrency 1: "))).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    # the result charts take the panel's width
    widths = page.locator(".js-plotly-plot").evaluate_all(
        "plots => plots.map(p => p.querySelector('.main-svg').getBoundingClientRect().width)")
    assert min(widths) > 0.9 * max(widths), widths
    # the whole panel in one picture (docs/panel-after-sweep.png is this one): a page tall
    # enough to hold it, the charts redrawn at its size
    page.set_viewport_size({"width": 1400, "height": 3000})
    page.wait_for_timeout(1000)
    shot = ARTIFACTS_DIR / f"{Path(__file__).stem}-voila-panel-after-sweep.png"
    page.locator(".jp-OutputArea-output").first.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_at_900_px_the_buttons_keep_their_labels(voila_app, chromium_page, screenshot, tmp_path) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    # a 900 px JupyterLab leaves the notebook's output about 600 px, once the side bar and
    # the prompts have theirs: the panel alone in a page that wide
    page.set_viewport_size({"width": 600, "height": 900})
    server = voila_app(write_notebook(tmp_path / "narrow" / "panel.ipynb", [CELLS[1]]))
    page.goto(server.url())
    for label in ("Run", "Stop", "Export CSV"):
        button = page.locator("button.widget-button").filter(has_text=re.compile(rf"^\s*{label}\s*$"))
        expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
        box = button.bounding_box()
        assert box is not None and box["width"] >= 90, (label, box)
        inner = button.evaluate("b => b.scrollWidth <= b.clientWidth + 1")  # the label is not cut off
        assert inner, f"{label}: its label does not fit"
    screenshot(page, "panel-900px", full_page=False)


def test_a_batch_size_above_every_models_max_is_stopped_in_the_form(voila_app, chromium_page, screenshot,
                                                                    tmp_path) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    server = voila_app(write_notebook(tmp_path / "form" / "panel.ipynb", [CELLS[1]]))
    page.goto(server.url())
    run = page.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
    expect(run).to_be_enabled(timeout=UI_TIMEOUT_MS)
    batches = page.locator(".widget-text").filter(has_text="Batch sizes").locator("input")

    batches.fill("128")
    batches.press("Enter")
    expect(page.get_by_text(re.compile(r"Nothing would be measured: mlp_numpy would skip 128 \(max batch \d+\)"))
           ).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(run).to_be_disabled()
    screenshot(page, "batch-above-max", full_page=False)

    batches.fill("1,128")  # one size fits: Run again, the other said as a warning
    batches.press("Enter")
    expect(page.get_by_text(re.compile(r"^mlp_numpy would skip 128 \(max batch \d+\)$"))).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(run).to_be_enabled()


def test_a_sweep_split_over_two_slots_draws_each_units_lines(voila_app, chromium_page, screenshot, tmp_path) -> None:
    """--parallel gpus in the panel (two slots standing in for two GPUs): a line per unit
    under the status, and on the live charts each unit's own samples, named in the legend."""
    from playwright.sync_api import expect

    page = chromium_page
    page.set_viewport_size({"width": 1400, "height": 2000})
    cell = ("import analyzer_widgets as aw\n"
            "panel = aw.Dashboard(models=['mlp_numpy', 'mixed_inputs'], batch_sizes='1', concurrency='1,2', "
            "window_ms=300, baseline_s=1, max_trials=6, parallel='gpus', parallel_slots=2)\n"
            "panel")
    server = voila_app(write_notebook(tmp_path / "split" / "panel.ipynb", [cell]))
    page.goto(server.url())
    run = page.locator("button.widget-button").filter(has_text=re.compile(r"^\s*Run\s*$"))
    expect(run).to_be_enabled(timeout=UI_TIMEOUT_MS)
    run.click()
    expect(page.get_by_text(re.compile(r"Done: 4 points"))).to_be_visible(timeout=240_000)
    for unit in ("unit 1 mlp_numpy: done on slot 0, 2 points measured",
                 "unit 2 mixed_inputs: done on slot 1, 2 points measured"):
        expect(page.get_by_text(unit)).to_be_visible(timeout=UI_TIMEOUT_MS)
    # the live figure's legend names both units, and each drew a line on every chart (3 here)
    legend = page.locator(".js-plotly-plot").first.locator(".legend .legendtext")
    expect(legend).to_have_text(["unit 1 (slot 0)", "unit 2 (slot 1)"], timeout=UI_TIMEOUT_MS)
    drawn = page.locator(".js-plotly-plot").first.evaluate(
        "plot => plot.data.filter(t => (t.legendgroup || '').startsWith('unit ') && t.x && t.x.length > 2).length")
    assert drawn == 6, drawn
    # the points' labels above the charts, as the browser drew them: the two units start
    # points close together, and no two labels may overlap (dashboard.point_marks)
    boxes = page.locator(".js-plotly-plot").first.evaluate(
        "plot => [...plot.querySelectorAll('g.annotation')].map(a => [a.textContent, a.getBoundingClientRect()])"
        ".filter(([t]) => /b=\\d|baseline end/.test(t)).map(([t, r]) => [t, r.left, r.right, r.top, r.bottom])")
    assert len(boxes) >= 3, boxes
    for i, (text, left, right, top, bottom) in enumerate(boxes):
        for other, left2, right2, top2, bottom2 in boxes[i + 1:]:
            apart = right <= left2 or right2 <= left or bottom <= top2 or bottom2 <= top
            assert apart, f"the labels {text!r} and {other!r} overlap on the live chart"
    screenshot(page, "panel-split-sweep-units", full_page=False)
