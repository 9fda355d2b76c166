"""themed(), result_figures' themes and the ThemeProbe's Python side (tests/test_browser_theme.py:
the probe in a real page)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from analyzer_widgets.ui._theme import TEMPLATES, TRANSPARENT, ThemeProbe, themed
from analyzer_widgets.ui.charts import INK, MEAN_LATENCY, result_figures


def _figure(kind: type = go.Figure) -> go.Figure:
    fig = kind()
    fig.add_scatter(x=[1, 2, 3], y=[3, 1, 2], name="a")
    fig.update_layout(title="t", height=300)
    return fig


@pytest.mark.parametrize("kind", [go.Figure, go.FigureWidget])
@pytest.mark.parametrize(("light", "template"), [(True, "plotly_white"), (False, "plotly_dark")])
def test_themed_sets_the_template_and_transparent_backgrounds(kind: type, light: bool, template: str) -> None:
    fig = _figure(kind)
    assert themed(fig, light) is fig
    assert fig.layout.template == pio.templates[template]
    assert fig.layout.paper_bgcolor == TRANSPARENT and fig.layout.plot_bgcolor == TRANSPARENT
    # what it was drawing is left alone
    assert fig.layout.title.text == "t" and fig.layout.height == 300 and list(fig.data[0].y) == [3, 1, 2]


@pytest.mark.parametrize("light", [True, False])
def test_opaque_themes_keep_the_templates_backgrounds(light: bool) -> None:
    fig = themed(themed(_figure(), light), light, transparent=False)  # a transparent one made opaque again
    assert fig.layout.paper_bgcolor is None and fig.layout.plot_bgcolor is None
    full = fig.layout.template.layout
    assert full.paper_bgcolor == ("white" if light else "rgb(17,17,17)")
    assert full.plot_bgcolor == ("white" if light else "rgb(17,17,17)")


@pytest.mark.parametrize("kind", [go.Figure, go.FigureWidget])
@pytest.mark.parametrize("light", [True, False])
def test_themed_is_idempotent_and_switching_back_restores_the_figure(kind: type, light: bool) -> None:
    fig = _figure(kind)
    once = themed(fig, light).to_plotly_json()
    assert themed(fig, light).to_plotly_json() == once
    assert themed(fig, not light).to_plotly_json() != once
    assert themed(fig, light).to_plotly_json() == once


def test_themed_replaces_a_template_the_figure_had() -> None:
    fig = _figure()
    fig.update_layout(template="seaborn")
    assert themed(fig, False).layout.template == pio.templates["plotly_dark"]


def test_a_figure_widget_is_themed_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    fig = _figure(go.FigureWidget)
    sent: list[object] = []
    monkeypatch.setattr(fig, "_send_relayout_msg", lambda *args, **kwargs: sent.append(args))
    monkeypatch.setattr(fig, "_send_update_msg", lambda *args, **kwargs: sent.append(args))
    themed(fig, False)
    assert len(sent) == 1, sent


def test_the_probe_defaults_to_light_and_takes_no_space() -> None:
    probe = ThemeProbe()
    assert probe.light is True
    assert probe.layout.display == "none"
    assert "data-jp-theme-light" in probe._esm and "MutationObserver" in probe._esm
    assert ThemeProbe.class_traits()["light"].metadata.get("sync") is True
    assert set(TEMPLATES.values()) == {"plotly_white", "plotly_dark"}


def _frame() -> pd.DataFrame:
    rows = [{"model": "m", "batch_size": 1, "concurrency": c, "status": "ok", "throughput_infer_per_s": 100.0 * c,
             "latency_p99_ms": 1.0 + c, "latency_avg_ms": 1.0 + c / 2, "server_request_ms": 0.5 + c / 2,
             "server_queue_ms": 0.1, "server_compute_input_ms": 0.1, "server_compute_infer_ms": 0.2,
             "server_compute_output_ms": 0.1, "server_rss_max_mb": 50.0} for c in (1, 2)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("light", [True, False])
def test_result_figures_follow_the_theme_with_opaque_backgrounds(light: bool) -> None:
    figures = result_figures(_frame(), pd.DataFrame([{"server_rss_max_mb": 30.0}]), light=light)
    for fig in figures.values():
        assert fig.layout.template == pio.templates[TEMPLATES[light]]
        assert fig.layout.paper_bgcolor is None and fig.layout.plot_bgcolor is None  # the template's, opaque
    tick = [t for t in figures["latency_breakdown"].data if t.name == MEAN_LATENCY]
    assert tick and tick[0].marker.color == INK[light]


def test_result_figures_default_to_light() -> None:
    df, baseline = _frame(), pd.DataFrame([{"server_rss_max_mb": 30.0}])
    default, light = result_figures(df, baseline), result_figures(df, baseline, None, True)
    assert [f.to_plotly_json() for f in default.values()] == [f.to_plotly_json() for f in light.values()]
