"""Charts that travel: a plotly figure as a display output that shows wherever the saved
notebook is read, and the images for it, made off the kernel's thread.

Each chart is one output holding two forms of it:

- ``application/vnd.plotly.v1+json``, the figure itself, with nothing embedded but its
  data: plotly's JupyterLab extension shows the PNG until the pointer enters the chart,
  then draws the figure there, interactive;
- ``image/png``, drawn by kaleido in a headless Chrome or Chromium: what every reader that
  runs no plotly shows (GitHub's notebook view, nbviewer, an nbconvert HTML page opened
  offline, an untrusted notebook).

So the saved notebook carries no copy of plotly.js for these charts (about 5 MB each).
Where kaleido finds no Chrome or Chromium, :func:`chart_outputs` says why once and falls back
to HTML with plotly.js inlined in the first chart only: interactive in any browser, but
blank on GitHub.

    outputs, problem = chart_outputs(figures)          # blocks: a second or two
    renderer = ImageRenderer(); renderer.submit(figures)   # the same, on a thread
    ...; done = renderer.take()                         # (outputs, problem) once ready
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from analyzer_widgets.ui._png import compact_png

PLOTLY_MIME = "application/vnd.plotly.v1+json"
#: the size a chart's image is drawn at, in CSS pixels, when its layout gives no width: the
#: panel's width in a notebook. Scale 1: a sharper 1.5 makes each image about twice the bytes
#: (the four charts of the quickstart 0.6 MB instead of 0.3), and the saved notebook is to
#: stay small (issue 16: at most 6 MB, of which the live figure's widget state takes 5)
IMAGE_WIDTH = 900
IMAGE_SCALE = 1
DEFAULT_HEIGHT = 450
#: plotly's toolbar without the plotly-cloud links, for every interactive form. Not
#: "responsive": with it, a chart whose container has no height of its own (an output in
#: JupyterLab) collapsed to 0 px high at the first resize of the window; JupyterLab's plotly
#: renderer fits the width to the output on every resize itself (tests/test_browser_plan.py).
#: The HTML form, whose div has a height, keeps it
CONFIG = {"displaylogo": False}

_kaleido_lock = threading.Lock()  # one headless browser at a time: the host may be small


def _figure_json(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON (numpy arrays and dates made lists and strings)."""
    return json.loads(pio.to_json(fig, validate=False))


def render_pngs(specs: Mapping[str, dict[str, Any]]) -> tuple[dict[str, bytes], str | None]:
    """Each figure (as :func:`_figure_json` gives it) as a PNG, by name, drawn by kaleido in
    one headless browser session; or ({}, why not) where kaleido or a Chrome/Chromium for it
    is missing or fails."""
    try:
        import kaleido
        from choreographer.errors import ChromeNotFoundError
    except ImportError:
        return {}, "kaleido is not installed (pip install kaleido)"
    images: dict[str, bytes] = {}

    async def draw() -> None:
        # kaleido's own blocking helpers are not used: their shared browser hangs the
        # caller for good when it cannot start (no Chrome found)
        async with kaleido.Kaleido(n=1) as k:
            for name, spec in specs.items():
                layout = spec.get("layout", {})
                opts = {"format": "png", "width": layout.get("width") or IMAGE_WIDTH,
                        "height": layout.get("height") or DEFAULT_HEIGHT, "scale": IMAGE_SCALE}
                images[name] = compact_png(await k.calc_fig(spec, opts=opts))

    with _kaleido_lock:
        try:
            _run_on_own_loop(draw)
        except ChromeNotFoundError:
            return {}, "kaleido found no Chrome or Chromium to draw them (install one, or set BROWSER_PATH to one)"
        except Exception as e:  # noqa: BLE001 - a browser that failed: the charts go without images
            return {}, f"kaleido could not draw them ({type(e).__name__}: {_first_line(e)})"
    return images, None


def _run_on_own_loop(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work()`` to the end on an event loop of its own, in a thread of its own: the
    caller may be a kernel's thread, whose loop is already running. Its error is raised here."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            failure.append(e)

    thread = threading.Thread(target=run, name="analyzer-widgets-kaleido", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


def chart_output(spec: dict[str, Any], png: bytes | None, *, include_plotlyjs: bool = True) -> dict[str, Any]:
    """One chart's display bundle from its figure (as :func:`_figure_json` gives it): the
    figure, and its PNG where there is one, else HTML (with plotly.js inlined when
    ``include_plotlyjs``, else relying on an earlier output's)."""
    layout = spec.get("layout", {})
    title = (layout.get("title") or {}).get("text") or "chart"
    bundle: dict[str, Any] = {PLOTLY_MIME: {**spec, "config": CONFIG}, "text/plain": f"<plotly chart: {title}>"}
    if png is not None:
        bundle["image/png"] = base64.b64encode(png).decode("ascii")
    else:
        bundle["text/html"] = pio.to_html(spec, full_html=False, include_plotlyjs=include_plotlyjs,
                                          config={**CONFIG, "responsive": True},  # its div has a height
                                          default_height=f"{layout.get('height') or DEFAULT_HEIGHT}px")
    return bundle


def chart_outputs(figures: Mapping[str, go.Figure]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Every figure's display bundle, by name, and why they have no images (None when they
    have). Blocks while the images are drawn."""
    specs = {name: _figure_json(fig) for name, fig in figures.items()}  # once: a recorded sweep is large
    images, problem = render_pngs(specs)
    outputs = {name: chart_output(spec, images.get(name), include_plotlyjs=(i == 0))
               for i, (name, spec) in enumerate(specs.items())}
    return outputs, problem


def without_images_note(problem: str) -> str:
    """What a reader is told, once, when the charts are saved without images."""
    return (f"The charts are saved without images: {problem}. They stay interactive in JupyterLab and in an "
            "HTML export, but GitHub's notebook view shows no chart.")


class ImageRenderer:
    """:func:`chart_outputs` on a thread of its own, so that the kernel stays responsive
    while the images are drawn. The latest request wins: a request made while one is being
    drawn replaces any still waiting, and :meth:`take` hands over the newest result once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: Mapping[str, go.Figure] | None = None
        self._result: tuple[dict[str, dict[str, Any]], str | None] | None = None
        self._thread: threading.Thread | None = None

    def submit(self, figures: Mapping[str, go.Figure]) -> None:
        with self._lock:
            self._waiting = dict(figures)
            self._result = None  # an older result would now show the wrong figures
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="analyzer-widgets-images", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                figures, self._waiting = self._waiting, None
                if figures is None:
                    self._thread = None
                    return
            done = chart_outputs(figures)
            with self._lock:
                if self._waiting is None:
                    self._result = done

    @property
    def pending(self) -> bool:
        """Whether a request is waiting, being drawn, or drawn and not yet taken."""
        with self._lock:
            return self._thread is not None or self._result is not None

    def take(self) -> tuple[dict[str, dict[str, Any]], str | None] | None:
        """The newest finished (outputs, problem), once; None while there is none."""
        with self._lock:
            result, self._result = self._result, None
            return result

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is waiting or being drawn; False after ``timeout`` seconds."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            return self._thread is None
