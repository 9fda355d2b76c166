"""The JupyterLab panel: the only layer that imports ipywidgets and plotly."""

from analyzer_widgets.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
