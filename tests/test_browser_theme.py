"""The theme probe in a real JupyterLab, in headless Chromium: switching JupyterLab to its
dark theme reaches the kernel (the probe's ``light`` turns False there) and a plotly
FigureWidget themed from it is drawn dark; switching back draws it light again. The probe
itself takes no space. A screenshot of the dark page is saved (test-artifacts/).
"""

# The fixtures imported from browser are named again as test arguments:
# ruff: noqa: F811
from __future__ import annotations

import json
import re

import pytest
from browser import UI_TIMEOUT_MS, chromium_page, jupyter_lab, open_in_lab, run_all_cells, screenshot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CELLS = [
    "import ipywidgets as w\n"
    "import plotly.graph_objects as go\n"
    "from analyzer_widgets.ui._theme import ThemeProbe, themed\n"
    "probe = ThemeProbe()\n"
    "fig = themed(go.FigureWidget(go.Scatter(x=[1, 2, 3], y=[2, 1, 3]), layout={'title': 'themed', 'height': 300}),\n"
    "             probe.light)\n"
    "seen = w.HTML(f'kernel: light={probe.light}')\n"
    "def follow(change):\n"
    "    themed(fig, change['new'])\n"
    "    seen.value = f\"kernel: light={change['new']}\"\n"
    "probe.observe(follow, names='light')\n"
    "display(probe, seen, fig)",
]

#: What the chart looks like as drawn: the colour one sees behind the plot area (its own
#: fill, or where that is transparent the first opaque background behind the chart) and the
#: colour of its tick labels, as [r, g, b].
DRAWN_COLOURS = """() => {
    const rgba = (c) => { const v = (c || '').match(/[\\d.]+/g); return v ? v.map(Number) : null; };
    const opaque = (v) => v && (v.length < 4 || v[3] > 0);
    const plot = document.querySelector('.jp-OutputArea .js-plotly-plot');
    if (!plot || !plot.querySelector('rect.bg') || !plot.querySelector('.xtick text')) return null;
    const area = getComputedStyle(plot.querySelector('rect.bg'));  // plotly draws "transparent" as fill-opacity 0
    let background = Number(area.fillOpacity) > 0 ? rgba(area.fill) : null;
    for (let node = plot.querySelector('.main-svg'); !opaque(background) && node; node = node.parentElement) {
        background = rgba(getComputedStyle(node).backgroundColor);
    }
    const text = rgba(getComputedStyle(plot.querySelector('.xtick text')).fill);
    return {background: opaque(background) ? background.slice(0, 3) : [255, 255, 255], text: text.slice(0, 3)};
}"""


def _lightness(rgb: list[float]) -> float:
    r, g, b = rgb
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def _wait_drawn(page, dark: bool) -> dict[str, list[float]]:
    """Wait until the chart is drawn dark (light text on a dark background) or light."""
    test = "b < 0.25 && t > 0.7" if dark else "b > 0.85 && t < 0.5"
    page.wait_for_function(
        f"() => {{ const c = ({DRAWN_COLOURS})(); if (!c) return false;"
        " const l = ([r, g, b]) => (0.299 * r + 0.587 * g + 0.114 * b) / 255;"
        f" const b = l(c.background), t = l(c.text); return {test}; }}",
        timeout=UI_TIMEOUT_MS,
    )
    return page.evaluate(DRAWN_COLOURS)


def _menu_item(page, label: str):
    # a submenu's item has no ARIA role and the themes are checkboxes: match the label itself
    exact = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$"))
    return page.locator(".lm-Menu .lm-Menu-item").filter(has=exact)


def _use_theme(page, name: str) -> None:
    """Settings > Theme > ``name``, as a person would."""
    page.locator(".lm-MenuBar-item").filter(has_text=re.compile(r"^Settings$")).click()
    _menu_item(page, "Theme").hover()
    _menu_item(page, name).click()


def test_the_probe_follows_jupyterlabs_theme_and_the_chart_with_it(jupyter_lab, chromium_page, screenshot) -> None:
    from playwright.sync_api import expect

    page = chromium_page
    notebook = open_in_lab(page, jupyter_lab, "theme.ipynb", CELLS)
    assert page.evaluate("document.body.dataset.jpThemeLight") == "true"  # what the probe reads
    run_all_cells(page, notebook)

    probe = notebook.locator(".aw-theme-probe")
    expect(probe).to_be_attached(timeout=UI_TIMEOUT_MS)
    assert probe.evaluate("el => el.getBoundingClientRect().height") == 0
    expect(notebook.get_by_text("kernel: light=True")).to_be_visible(timeout=UI_TIMEOUT_MS)
    light = _wait_drawn(page, dark=False)

    _use_theme(page, "JupyterLab Dark")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=UI_TIMEOUT_MS)
    # the kernel heard it: its observer wrote this, and re-themed the figure
    expect(notebook.get_by_text("kernel: light=False")).to_be_visible(timeout=UI_TIMEOUT_MS)
    dark = _wait_drawn(page, dark=True)
    assert _lightness(dark["background"]) < 0.25 < 0.85 < _lightness(light["background"]), (light, dark)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)  # shown while a theme loads
    shot = screenshot(page, "dark")
    assert shot.stat().st_size > 10_000

    _use_theme(page, "JupyterLab Light")
    expect(notebook.get_by_text("kernel: light=True")).to_be_visible(timeout=UI_TIMEOUT_MS)
    _wait_drawn(page, dark=False)
    errors = [m for m in page.console_log if m.startswith(("[error]", "[pageerror]"))]
    assert not errors, errors


def test_a_page_that_opens_dark_reports_it_when_the_probe_renders(jupyter_lab, chromium_page) -> None:
    """The common case of a person who always works in the dark theme: no change to observe,
    the first render reports it."""
    from playwright.sync_api import expect

    # the user setting JupyterLab reads when the page loads (browser.py points
    # JUPYTERLAB_SETTINGS_DIR at <workdir>/lab-user-settings)
    themes = jupyter_lab.workdir / "lab-user-settings" / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    themes.write_text(json.dumps({"theme": "JupyterLab Dark"}))
    page = chromium_page
    notebook = open_in_lab(page, jupyter_lab, "theme.ipynb", CELLS)
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=UI_TIMEOUT_MS)
    run_all_cells(page, notebook)
    expect(notebook.get_by_text("kernel: light=False")).to_be_visible(timeout=UI_TIMEOUT_MS)
    _wait_drawn(page, dark=True)
