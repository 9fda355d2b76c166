"""Charts that travel (ui/static.py): each chart's output carries the figure and a PNG drawn
by kaleido in the real headless Chromium; without a browser, interactive HTML that embeds
plotly.js once and a reason. The panel's charts left under it are checked in a real kernel
by tests/test_notebooks.py."""

from __future__ import annotations

import base64
import struct

import plotly.graph_objects as go
import pytest
from browser import CHROMIUM, require_browser_tools

from analyzer_widgets.ui.static import (
    IMAGE_SCALE,
    IMAGE_WIDTH,
    PLOTLY_MIME,
    ImageRenderer,
    chart_outputs,
    without_images_note,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def figures(title: str = "first") -> dict[str, go.Figure]:
    return {
        "line": go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]), layout={"title": {"text": title}, "height": 300}),
        "bars": go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout={"title": {"text": "bars"}}),
    }


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert data[:8] == PNG_MAGIC, data[:8]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.browser
def test_each_chart_carries_the_figure_and_its_png(monkeypatch: pytest.MonkeyPatch) -> None:
    require_browser_tools()
    monkeypatch.setenv("BROWSER_PATH", CHROMIUM)
    outputs, problem = chart_outputs(figures())
    assert problem is None
    assert list(outputs) == ["line", "bars"]
    for name, bundle in outputs.items():
        assert "text/html" not in bundle, "plotly.js would be saved again"
        assert bundle[PLOTLY_MIME]["data"] and "layout" in bundle[PLOTLY_MIME], name
        assert bundle[PLOTLY_MIME]["config"]["displaylogo"] is False
    # drawn at the panel's width and the figure's own height, scaled for sharp screens
    assert png_size(base64.b64decode(outputs["line"]["image/png"])) == (IMAGE_WIDTH * IMAGE_SCALE, 300 * IMAGE_SCALE)
    width, _ = png_size(base64.b64decode(outputs["bars"]["image/png"]))
    assert width == IMAGE_WIDTH * IMAGE_SCALE
    assert outputs["line"]["text/plain"] == "<plotly chart: first>"


def test_without_a_browser_the_charts_are_html_with_plotlyjs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    outputs, problem = chart_outputs(figures())
    assert problem is not None and "no Chrome or Chromium" in problem and "BROWSER_PATH" in problem
    assert "GitHub" in without_images_note(problem)
    line, bars = outputs["line"], outputs["bars"]
    assert "image/png" not in line and "image/png" not in bars
    assert line["text/html"].count("* plotly.js v") == 1  # inlined in the first chart only
    assert "* plotly.js v" not in bars["text/html"] and "Plotly.newPlot" in bars["text/html"]
    assert bars[PLOTLY_MIME]["layout"]["title"]["text"] == "bars"


def test_the_renderer_hands_over_the_latest_request_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")  # quick: no browser is started
    renderer = ImageRenderer()
    assert not renderer.pending and renderer.take() is None
    renderer.submit(figures("older"))
    renderer.submit(figures("newer"))
    assert renderer.pending
    assert renderer.wait(60)
    done = renderer.take()
    assert done is not None
    outputs, problem = done
    assert problem is not None
    assert outputs["line"][PLOTLY_MIME]["layout"]["title"]["text"] == "newer"
    assert renderer.take() is None and not renderer.pending
