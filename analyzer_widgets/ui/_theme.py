"""Which theme the page shows, light or dark, as a trait the kernel can observe; and
:func:`themed`, which dresses a plotly figure for either.

JupyterLab marks the page's ``<body>`` with ``data-jp-theme-light="true"`` or ``"false"``
and changes it when the user switches theme (Voila's lab template sets it too, from
``--theme``). :class:`ThemeProbe` is an invisible widget that reads that attribute where it
is rendered and follows its changes. Where the attribute is absent (Voila's classic
template, an nbconvert HTML page) the probe keeps its default, light: it never guesses
from colours.

    probe = ThemeProbe()
    probe.observe(lambda change: themed(fig, change["new"]), names="light")
    display(probe)             # renders nothing: the probe must be displayed to report
"""

from __future__ import annotations

import copy
from typing import TypeVar

import anywidget
import plotly.io as pio
import traitlets
from plotly.basedatatypes import BaseFigure
from plotly.basewidget import BaseFigureWidget

#: the plotly template for each theme (key: light)
TEMPLATES = {True: "plotly_white", False: "plotly_dark"}
TRANSPARENT = "rgba(0,0,0,0)"

Fig = TypeVar("Fig", bound=BaseFigure)

#: The front-end module (anywidget's AFM: ``export default { render }``, ``render`` may
#: return a cleanup). It reports from ``render`` rather than ``initialize`` because the
#: theme that counts is the one of the page the widget is shown in.
_ESM = """
const ATTRIBUTE = "data-jp-theme-light";

function pageIsLight() {
  const value = document.body.getAttribute(ATTRIBUTE);
  return value === null ? null : value !== "false";
}

function render({ model, el }) {
  el.classList.add("aw-theme-probe");
  el.style.display = "none";
  const report = () => {
    const light = pageIsLight();
    if (light !== null && light !== model.get("light")) {
      model.set("light", light);
      model.save_changes();
    }
  };
  report();
  const observer = new MutationObserver(report);
  observer.observe(document.body, { attributes: true, attributeFilter: [ATTRIBUTE] });
  return () => observer.disconnect();
}

export default { render };
"""


class ThemeProbe(anywidget.AnyWidget):
    """An invisible widget whose ``light`` trait follows the page's JupyterLab theme.

    It reports only once displayed (put it anywhere in a layout: it takes no space).

    >>> probe = ThemeProbe()
    >>> probe.light
    True
    """

    _esm = _ESM
    light = traitlets.Bool(True, help="whether the page shows a light theme (True where the page does not say)").tag(
        sync=True
    )

    def __init__(self, **kwargs: object) -> None:
        # display: none keeps the output area and the panel's layout free of an empty box
        kwargs.setdefault("layout", {"display": "none"})
        super().__init__(**kwargs)


def themed(fig: Fig, light: bool, *, transparent: bool = True) -> Fig:
    """Dress ``fig`` (a ``go.Figure`` or ``go.FigureWidget``, changed in place and returned)
    for a light or dark page: ``plotly_white`` or ``plotly_dark``, replacing any template it
    had, so applying it again, or the other theme and back, gives the same figure.

    ``transparent`` (the default) lets the page show through the paper and the plot area:
    on JupyterLab's own themes that is the template's colour anyway (white, #111), and on
    any other theme the chart sits on the page's colour. Figures that travel (saved static
    charts, images) should pass ``transparent=False``: a dark chart's light text on a
    transparent background is unreadable once shown on a light page, and the other way round.

    >>> import plotly.graph_objects as go
    >>> themed(go.Figure(), light=False).layout.paper_bgcolor
    'rgba(0,0,0,0)'
    """
    background = TRANSPARENT if transparent else None  # None: the template's own colour
    with fig.batch_update():  # a FigureWidget sends one message, not three
        fig.layout.template = pio.templates[TEMPLATES[light]]
        fig.layout.paper_bgcolor = background
        fig.layout.plot_bgcolor = background
    if isinstance(fig, BaseFigureWidget):
        keep_widget_state(fig)
    return fig


def keep_widget_state(fig: BaseFigureWidget) -> None:
    """Make what a FigureWidget shows the state a view opened later starts from.

    A FigureWidget sends each edit as a message to the views open at the time; the state a
    later view starts from (Voila draws the page after the notebook ran, a reloaded page, the
    widget state saved in a notebook) plotly refreshes only when the figure is displayed on
    its own, never as a child of a layout. Without this the panel's live figure opened in
    Voila in plotly's default template and a saved notebook kept it empty."""
    fig._widget_layout = copy.deepcopy(fig._layout_obj._props)
    fig._widget_data = copy.deepcopy(fig._data)
