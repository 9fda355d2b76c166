"""Load generation: drives one point (concurrency load) and cuts it into windows.

The public face of the package; its private modules (``_worker``, ``_http2``) are not
imported from outside it.
"""

from __future__ import annotations

from analyzer_widgets.loadgen._worker import OutputCheck, PointJob
from analyzer_widgets.loadgen.generator import ClientPool, LoadError, PointLoad

__all__ = ["ClientPool", "LoadError", "OutputCheck", "PointJob", "PointLoad"]
