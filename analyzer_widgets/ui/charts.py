"""The result charts, as plain plotly figures (static: they need no kernel to show).

    throughput_vs_latency(df)      per model, one line per batch size, points by concurrency
    throughput_vs_concurrency(df)  per model and batch size
    memory_per_point(df, baseline) max GPU memory of each point against the baseline
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

MEASURED = ("ok", "unstable")


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].isin(MEASURED)].sort_values(["model", "batch_size", "concurrency"])


def throughput_vs_latency(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for (model, batch), part in _measured(df).groupby(["model", "batch_size"], sort=True):
        fig.add_scatter(
            x=part["latency_p99_ms"], y=part["throughput_infer_per_s"], mode="lines+markers",
            name=f"{model} b={batch}", text=[f"concurrency {c}" for c in part["concurrency"]],
            hovertemplate="%{text}<br>p99 %{x:.2f} ms<br>%{y:.1f} infer/s<extra>%{fullData.name}</extra>",
        )
    fig.update_layout(title="Throughput vs p99 latency", xaxis_title="p99 latency (ms)",
                      yaxis_title="throughput (infer/s)", height=380, margin={"t": 50, "b": 40})
    return fig


def throughput_vs_concurrency(df: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for (model, batch), part in _measured(df).groupby(["model", "batch_size"], sort=True):
        fig.add_scatter(x=part["concurrency"], y=part["throughput_infer_per_s"], mode="lines+markers",
                        name=f"{model} b={batch}")
    fig.update_layout(title="Throughput vs concurrency", xaxis_title="concurrency (requests in flight)",
                      yaxis_title="throughput (infer/s)", height=380, margin={"t": 50, "b": 40})
    fig.update_xaxes(type="log", dtick=math.log10(2))
    return fig


def memory_per_point(df: pd.DataFrame, baseline: pd.DataFrame) -> go.Figure:
    """Max GPU memory per point against the baseline; the server's resident memory where
    there is no GPU figure (said in the title)."""
    measured = _measured(df)
    gpu = measured["gpu_memory_max_mb"].notna().any()
    column, base_column, what = (
        ("gpu_memory_max_mb", "gpu_memory_max_mb", "Max GPU memory")
        if gpu else ("server_rss_max_mb", "server_rss_max_mb", "Max server memory (RSS; no GPU figures here)")
    )
    labels = [f"{m} b={b} c={c}" for m, b, c in zip(measured["model"], measured["batch_size"],
                                                      measured["concurrency"], strict=True)]
    fig = go.Figure(go.Bar(x=labels, y=measured[column], name=what, marker_color="#76b900"))
    if not baseline.empty and pd.notna(baseline.iloc[0][base_column]):
        level = float(baseline.iloc[0][base_column])
        fig.add_hline(y=level, line_dash="dash", line_color="#555",
                      annotation_text=f"baseline (no models) {level:.0f} MB", annotation_position="top left")
    fig.update_layout(title=f"{what} per point", yaxis_title="MB", height=380, margin={"t": 50, "b": 90})
    return fig


def result_figures(df: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, go.Figure]:
    return {
        "throughput_vs_latency": throughput_vs_latency(df),
        "throughput_vs_concurrency": throughput_vs_concurrency(df),
        "memory_per_point": memory_per_point(df, baseline),
    }


def static_bundle(figures: dict[str, go.Figure]) -> dict[str, object]:
    """A display bundle that shows the figures with no kernel and no network: HTML with
    plotly.js inlined once, for JupyterLab, nbconvert, nbviewer and any HTML reader.
    (JupyterLab runs it in a notebook someone else saved only once it is trusted;
    GitHub's notebook view runs no scripts and shows no chart.)"""
    html = []
    for i, fig in enumerate(figures.values()):
        html.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_height="380px"))
    return {"text/html": "\n".join(html), "text/plain": f"<{len(figures)} analyzer-widgets result charts>"}
