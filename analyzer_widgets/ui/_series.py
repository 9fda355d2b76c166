"""Time series for live charts: bounded storage and peak-preserving decimation.

Pure numpy, no widgets, so it is tested without a kernel. A chart of an hour at 20 Hz
(72,000 samples a trace) must stay fast in the browser and bounded in the kernel: each
series keeps at most ``capacity`` raw points (merging neighbours pairwise, keeping the
larger, when full) and hands the chart at most ``max_points``.
"""

from __future__ import annotations

import numpy as np


def decimate(t: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points that keep every bucket's minimum and maximum, so a
    short peak (the max GPU memory of a point) stays visible.

    >>> t = np.arange(10.0); y = np.zeros(10); y[7] = 5
    >>> _, d = decimate(t, y, 4)
    >>> float(d.max()), len(d) <= 4
    (5.0, True)
    """
    n = len(t)
    if n <= max_points:
        return t, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    out_t: list[float] = []
    out_y: list[float] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        segment = y[lo:hi]
        if np.all(np.isnan(segment)):
            out_t.append(float(t[lo]))
            out_y.append(float("nan"))
            continue
        i_min = lo + int(np.nanargmin(segment))
        i_max = lo + int(np.nanargmax(segment))
        for i in sorted({i_min, i_max}):
            out_t.append(float(t[i]))
            out_y.append(float(y[i]))
    return np.asarray(out_t), np.asarray(out_y)


class Series:
    """An append-only (t, y) series with bounded memory."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._t = np.empty(0)
        self._y = np.empty(0)

    def __len__(self) -> int:
        return len(self._t)

    def extend(self, t: list[float], y: list[float]) -> None:
        if not t:
            return
        self._t = np.concatenate([self._t, np.asarray(t, dtype=float)])
        self._y = np.concatenate([self._y, np.asarray(y, dtype=float)])
        while len(self._t) > self.capacity:
            # halve the older half: pairs become their larger member, recent detail stays
            half = (len(self._t) // 2) & ~1
            old_t, old_y = self._t[:half], self._y[:half]
            keep = np.where(np.nan_to_num(old_y[0::2], nan=-np.inf) >= np.nan_to_num(old_y[1::2], nan=-np.inf), 0, 1)
            idx = np.arange(0, half, 2) + keep
            self._t = np.concatenate([old_t[idx], self._t[half:]])
            self._y = np.concatenate([old_y[idx], self._y[half:]])

    def view(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        return decimate(self._t, self._y, max_points)
