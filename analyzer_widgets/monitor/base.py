"""Background samplers: a named daemon thread per source, a buffer per sampler.

A sampler never touches widgets; readers (the runner, the panel) take what they need
from the buffer at their own pace. The buffer is not bounded by a count, which would drop
samples a reader still needs without a word: its owner trims it to what its readers need
(:meth:`Sampler.discard_before`; :class:`~analyzer_widgets.monitor.session.MonitorSession`
does, once the samples are handed on).
"""

from __future__ import annotations

import abc
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() when taken
    values: Mapping[str, float]


class Sampler(abc.ABC):
    """Calls :meth:`sample` every ``interval_s`` on a drift-free schedule in its own thread.

    >>> class Clock(Sampler):
    ...     def sample(self): return {"one": 1.0}
    >>> with Clock("clock", 0.01) as s:  # doctest: +SKIP
    ...     time.sleep(0.1)
    >>> len(s.between(0, math.inf)) > 5  # doctest: +SKIP
    True
    """

    def __init__(self, name: str, interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._buffer: deque[Sample] = deque()
        #: samples taken since the start, trimmed ones included
        self.taken = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: why this sampler gives NaN for some of its columns, if it does
        self.unavailable: dict[str, str] = {}

    @abc.abstractmethod
    def sample(self) -> Mapping[str, float]:
        """One reading; NaN for a value that is not available this time."""

    def setup(self) -> None:  # noqa: B027 - an optional hook
        """Called once in the sampler's thread before the first sample."""

    def teardown(self) -> None:  # noqa: B027 - an optional hook
        """Called once in the sampler's thread after the last sample."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"analyzer-widgets-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        try:
            self.setup()
        except Exception as e:  # noqa: BLE001 - a sampler that cannot start gives NaN, never kills a sweep
            self.unavailable["*"] = f"{type(e).__name__}: {e}"
            return
        try:
            self._sample_until_stopped()
        finally:
            self.teardown()

    def _sample_until_stopped(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            try:
                values = self.sample()
            except Exception as e:  # noqa: BLE001
                self.unavailable["*"] = f"{type(e).__name__}: {e}"
                values = {}
            with self._lock:
                # stamped under the lock: a reader that read the clock before taking the
                # lock (MonitorSession.take_samples) never sees a later append with an
                # earlier stamp, so nothing falls between two of its hand-offs
                stamp = time.monotonic()
                self._buffer.append(Sample(stamp, values))
                self.taken += 1
            # schedule on the grid, not "now + interval", so the rate does not drift
            next_due += self.interval_s
            if next_due < stamp:
                next_due = stamp + self.interval_s
            self._stop.wait(next_due - time.monotonic())

    def between(self, start: float, end: float) -> list[Sample]:
        """The samples taken in ``[start, end]``, oldest first.

        Walks back from the newest sample and stops at the first one older than
        ``start``: readers ask for recent spans (a point, the panel's last tick), so the
        cost follows the span, not the hour of samples in the buffer."""
        picked: list[Sample] = []
        with self._lock:
            for sample in reversed(self._buffer):
                if sample.t < start:
                    break
                if sample.t <= end:
                    picked.append(sample)
        picked.reverse()
        return picked

    def discard_before(self, t: float) -> float:
        """Drop the samples taken before ``t`` (no reader needs them any more); returns
        the time of the newest one dropped (-inf when none was)."""
        newest = -math.inf
        with self._lock:
            while self._buffer and self._buffer[0].t < t:
                newest = self._buffer.popleft().t
        return newest

    @property
    def buffered(self) -> int:
        """How many samples the buffer holds now."""
        return len(self._buffer)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
