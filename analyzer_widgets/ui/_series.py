"""Time series for live charts: bounded storage and peak-preserving decimation.

Pure numpy, no widgets, so it is tested without a kernel. A chart of an hour at 20 Hz
(72,000 samples a trace) must stay fast in the browser and bounded in the kernel: each
series keeps at most ``capacity`` raw points (merging neighbours pairwise, keeping the
larger, when full) and hands the chart at most ``max_points``.
"""

from __future__ import annotations

import math

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
    size = math.ceil(n / buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    rows = padded.reshape(buckets, size)
    nan = np.isnan(rows)
    # an all-NaN bucket gives index 0 twice: one NaN point, a gap in the line
    i_max = np.where(nan, -np.inf, rows).argmax(axis=1)
    i_min = np.where(nan, np.inf, rows).argmin(axis=1)
    offsets = np.arange(buckets) * size
    index = np.unique(np.concatenate([i_min + offsets, i_max + offsets]))
    index = index[index < n]
    return t[index], y[index]


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
