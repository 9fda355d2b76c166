"""What a person sees of the panel's Pack section, in a real JupyterLab in headless Chromium,
on the real embedded Triton server: open the section, type the budget and two models' target
rates (a bad one first: it is named beside the field), press Pack and let it run, see which run
is measuring, then the GPU-by-GPU chart (its image for a reader without a kernel, the figure
once the pointer is on it), the sentence, each GPU's validation and the plan's table. A
screenshot of the section is saved as a test artifact (test-artifacts/).
"""

# The fixtures imported from browser are named again as test arguments:
# ruff: noqa: F811
from __future__ import annotations

import re

import pytest
from browser import (  # noqa: F401
    ARTIFACTS_DIR,
    UI_TIMEOUT_MS,
    button,
    chromium_page,
    jupyter_lab,
    open_in_lab,
    run_all_cells,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.timeout(600)]

#: short windows, one batch size, two loads: the pack's path through the page, not its figures, is under test
CELLS = [
    "import analyzer_widgets as aw\n"
    "panel = aw.Dashboard(models=['mlp_numpy', 'mixed_inputs'], batch_sizes='1', concurrency='1,4', window_ms=250, "
    "stable_windows=3, max_trials=5, baseline_s=0.3)\n"
    "panel",
]
#: a budget both models meet on a busy 2-core machine, and rates well below what they serve there
BUDGET_MS = "1000"
RATES = "mlp_numpy=40, mixed_inputs=20"


def test_the_pack_section_packs_validates_and_draws_the_gpus(jupyter_lab, chromium_page, screenshot) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    notebook = open_in_lab(page, jupyter_lab, "pack.ipynb", CELLS)
    run_all_cells(page, notebook)

    notebook.get_by_text("Pack models onto GPUs").click()
    section = notebook.locator(".aw-pack")
    expect(section).to_be_visible(timeout=UI_TIMEOUT_MS)
    pack = button(section, "Pack")
    expect(pack).to_be_disabled()
    expect(section.get_by_text("Type each model's target rate to pack.")).to_be_visible()
    rates = section.locator(".widget-text").filter(has_text="Target rates (infer/s)").locator("input")
    rates.fill("mlp_numpy=40, mixed_inputs=soon")
    rates.press("Enter")
    expect(section.get_by_text("target_rates['mixed_inputs']='soon': must be a number above 0").first
           ).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(pack).to_be_disabled()
    rates.fill(RATES)
    rates.press("Enter")
    expect(section.get_by_text("Type a latency budget to pack.")).to_be_visible(timeout=UI_TIMEOUT_MS)
    # each capacity at its figure: with the browser and JupyterLab on the same 2 cores, a few
    # short windows can scatter to an interval whose low end is 0, which pack() refuses
    section.get_by_role("checkbox", name=re.compile("low end of its throughput")).uncheck()
    budget = section.locator(".widget-text").filter(has_text="Budget (ms)").locator("input")
    budget.fill(BUDGET_MS)
    budget.press("Enter")
    expect(pack).to_be_enabled(timeout=UI_TIMEOUT_MS)

    pack.click()
    expect(section.get_by_text(re.compile(r"^Measuring mlp_numpy, mixed_inputs alone"))).to_be_visible(timeout=120_000)
    expect(button(section, "Stop pack")).to_be_enabled()
    expect(section.get_by_text(re.compile(r"^Pack done: 1 GPU for 2 models in \d+ s; validated\."))).to_be_visible(
        timeout=240_000)
    expect(section.get_by_text(re.compile(r"^1 GPU \(the fewest\): GPU 0 holds mlp_numpy \(40 infer/s\) and "
                                          r"mixed_inputs \(20 infer/s\)"))).to_be_visible()
    expect(section.locator("li").filter(has_text=re.compile(r"^GPU 0 \(mlp_numpy, mixed_inputs\): validated"))
           ).to_be_visible()
    expect(section.locator("table.aw-pack-table tbody tr")).to_have_count(2)

    # the chart: its image (what a saved notebook shows), then the figure under the pointer
    chart = section.locator(".jp-RenderedPlotly")
    expect(chart).to_have_count(1, timeout=UI_TIMEOUT_MS)
    page.mouse.move(0, 0)
    chart.scroll_into_view_if_needed()
    image = chart.locator("img.plot-img[src^='data:image/png']")
    expect(image).to_be_attached(timeout=UI_TIMEOUT_MS)
    assert image.evaluate("img => img.naturalWidth") > 0
    chart.hover()
    expect(chart.locator(".main-svg").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    words = " ".join(chart.locator("text").all_text_contents())
    assert "Packing plan: 1 GPU (the fewest) for 2 models" in words, words
    assert "mlp_numpy: 40 infer/s" in words and "mixed_inputs: 20 infer/s" in words, words
    assert "validated ✓" in words, words
    # one segment per model on the one GPU, each labelled (the legend's entries are points without a label)
    assert chart.locator(".barlayer .trace .point").filter(has_text="infer/s").count() == 2

    page.mouse.move(0, 0)  # the chart back to its image, as a reader without a kernel sees it
    page.set_viewport_size({"width": 1400, "height": 3600})
    page.wait_for_timeout(1000)
    section.scroll_into_view_if_needed()
    shot = ARTIFACTS_DIR / "test_browser_pack-pack-section.png"
    section.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    screenshot(page, "pack-done", full_page=False)
