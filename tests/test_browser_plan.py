"""What a person sees of the panel's Plan section, in a real JupyterLab in headless Chromium,
on the real embedded Triton server: open the section, type the budget and a space of two
variants, press Plan and Stop, press Plan again and let it run, see each variant listed,
the Pareto chart drawn (its image for a reader without a kernel, the figure once the pointer
is on it), the sentence, and Write config.pbtxt write a config that parses. A screenshot of
the section is saved as a test artifact (test-artifacts/).
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

#: short windows and two variants: the plan's path through the page, not its figures, is under test
CELLS = [
    "import analyzer_widgets as aw\n"
    "panel = aw.Dashboard(models=['mlp_numpy'], batch_sizes='1', concurrency='1,2', window_ms=200, "
    "stable_windows=2, max_trials=4, baseline_s=0.3, export_path='exported')\n"
    "panel",
]
#: a budget every variant meets on a busy 2-core machine, so that one is recommended
BUDGET_MS = "1000"


def test_the_plan_section_plans_draws_the_pareto_chart_and_writes_the_config(jupyter_lab, chromium_page,
                                                                              screenshot) -> None:
    from google.protobuf import text_format
    from playwright.sync_api import expect
    from tritonclient.grpc import model_config_pb2

    page = chromium_page
    notebook = open_in_lab(page, jupyter_lab, "plan.ipynb", CELLS)
    run_all_cells(page, notebook)

    notebook.get_by_text("Plan a configuration").click()
    section = notebook.locator(".aw-plan")
    expect(section).to_be_visible(timeout=UI_TIMEOUT_MS)
    plan = button(section, "Plan")
    expect(plan).to_be_disabled()
    expect(section.get_by_text("Type a latency budget to plan.")).to_be_visible()
    budget = section.locator(".widget-text").filter(has_text="Budget (ms)").locator("input")
    budget.fill(BUDGET_MS)
    budget.press("Enter")
    button(section, "brute").click()
    section.locator("textarea").fill("instances = [1, 2]")
    expect(section.get_by_text(re.compile(r"The space holds 2 variants: brute measures every one"))).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(plan).to_be_enabled()

    # Stop stops a plan as it stops a sweep (the section's Stop plan is the panel's Stop)
    plan.click()
    expect(section.get_by_text("variant 1 of 2")).to_be_visible(timeout=120_000)
    stop = button(section, "Stop plan")
    expect(stop).to_be_enabled()
    stop.click()
    expect(section.get_by_text(re.compile(r"^Plan stopped: \d variants? of mlp_numpy"))).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    expect(plan).to_be_enabled()

    plan.click()
    expect(section.get_by_text(re.compile(r"^Plan done: 2 variants of mlp_numpy measured"))).to_be_visible(
        timeout=180_000)
    expect(section.get_by_text(re.compile(r"^serve mlp_numpy with \d instances?"))).to_be_visible()
    # both listed, the best starred (on a busy 2-core host a variant of two instances may fail:
    # it is listed with why, and the chart leaves it out)
    variants = section.locator("table.aw-plan-variants tbody tr")
    expect(variants).to_have_count(2)
    expect(variants.first).to_contain_text("★")
    drawn = section.locator("table.aw-plan-variants td").filter(has_text=re.compile(r"^meets$")).count()

    # the Pareto chart: its image (what a saved notebook shows), then the figure under the pointer
    chart = section.locator(".jp-RenderedPlotly")
    expect(chart).to_have_count(1, timeout=UI_TIMEOUT_MS)
    page.mouse.move(0, 0)  # off the chart: under the pointer the renderer draws the figure instead
    chart.scroll_into_view_if_needed()
    image = chart.locator("img.plot-img[src^='data:image/png']")
    expect(image).to_be_attached(timeout=UI_TIMEOUT_MS)
    assert image.evaluate("img => img.naturalWidth") > 0
    chart.hover()
    expect(chart.locator(".main-svg").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    words = " ".join(chart.locator("text").all_text_contents())
    assert "Plan for mlp_numpy: throughput vs p99 latency per variant" in words, words
    assert "budget p99 ≤ 1,000 ms" in words and "recommended:" in words, words
    assert chart.locator(".scatterlayer .trace .points path").count() == drawn + 1  # the variants and the star

    button(section, "Write config.pbtxt").click()
    written = jupyter_lab.root_dir / "exported" / "config.pbtxt"
    expect(section.get_by_text(re.compile(r"^Wrote .*exported/config\.pbtxt"))).to_be_visible(timeout=UI_TIMEOUT_MS)
    config = text_format.Parse(written.read_text(), model_config_pb2.ModelConfig())
    assert config.name == "mlp_numpy" and config.instance_group[0].count in (1, 2)
    expect(section.get_by_text(re.compile(r"instance_group\[0\]\.count: 1 -> 2|no field changes"))).to_be_visible()

    page.mouse.move(0, 0)  # the chart back to its image, as a reader without a kernel sees it
    # the whole section in one picture: a page tall enough to hold the panel
    page.set_viewport_size({"width": 1400, "height": 3600})
    page.wait_for_timeout(1000)
    section.scroll_into_view_if_needed()
    shot = ARTIFACTS_DIR / "test_browser_plan-plan-section.png"
    section.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    screenshot(page, "plan-after-write", full_page=False)
