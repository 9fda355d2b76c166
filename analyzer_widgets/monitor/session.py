"""All the samplers of one sweep, the phases they are tagged with, and their reductions.

The runner tells the session which phase the sweep is in (baseline, a point, a load),
and asks it to reduce a span of samples into row columns. Which sample key each column
reduces, and how, is declared with the columns in :mod:`analyzer_widgets.schema`.

GPU memory per process: NVML lists each compute process with its memory; the host
sampler names each process of the server's tree ("server", or the model whose Python
backend stub it is, read from the stub's command line). Summing by name gives the
memory of the server and of each model separately (each Python-backend model instance
runs in its own stub process).

Samples go on as the sweep goes (:meth:`MonitorSession.take_samples`: the runner sends
them out every few seconds, the results layer appends them to ``metrics-samples.csv``), so
the samplers' buffers hold only what a reader still needs: the samples not handed on yet,
those of the current baseline or point (its reductions read its own windows) and the last
:data:`LIVE_SPAN_S` seconds (the panel's live charts read each tick's new samples). Memory
follows the longest phase, never the sweep's length.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analyzer_widgets.config import MonitorSettings
from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.machine import nvml_unavailable_reason
from analyzer_widgets.monitor.base import Sample, Sampler
from analyzer_widgets.monitor.host import ProcessTreeSampler
from analyzer_widgets.monitor.nvml import NvmlSampler
from analyzer_widgets.monitor.triton_metrics import TritonMetricsSampler
from analyzer_widgets.schema import Column, sampled_columns

#: the columns every sample row starts with, before its values
SAMPLE_TAGS = ("time_s", "source", "phase", "model", "batch_size", "concurrency")
#: samples are handed on at most this often: what a crash can lose of them
HAND_OFF_EVERY_S = 2.0
#: samples younger than this wait for the next hand-off: the host sampler names a new
#: model process (whose GPU memory NVML lists) within a few of its intervals
SETTLE_S = 1.0
#: the span kept for the panel, which reads each tick's new samples (every 0.25 s); a
#: kernel busy longer than this leaves a gap in the live charts, never in the file
LIVE_SPAN_S = 30.0
#: the phases whose samples are reduced into a row when they end: held whole while they last
REDUCED_PHASES = ("baseline", "point", "colocated")


@dataclass(frozen=True)
class Phase:
    start: float
    name: str  # startup, baseline, load, point, unload
    model: str = ""
    batch_size: int = 0
    concurrency: int = 0


class MonitorSession:
    """Owns the samplers of a sweep. Not thread-safe beyond the samplers' own buffers:
    call it from the runner's thread (the panel reads the samplers' buffers directly)."""

    def __init__(self, settings: MonitorSettings | None = None) -> None:
        self.settings = settings or MonitorSettings()
        self.started = time.monotonic()
        self.nvml: NvmlSampler | None = None
        self.host: ProcessTreeSampler | None = None
        self.triton: TritonMetricsSampler | None = None
        self.reasons: dict[str, str] = {}  # metric group -> why it is NaN
        self._phases: list[Phase] = []
        self.baseline_gpu_memory_mb = math.nan
        self.gpu_memory_before_server_mb = math.nan
        # the phases, and the samples handed on, are shared between begin() and
        # take_samples(), which may run in different threads
        self._lock = threading.Lock()
        self._handed_until = -math.inf  # every sample up to here was handed on
        self._last_hand_off = -math.inf
        self._dropped_through = -math.inf  # the newest sample dropped from a buffer
        #: per sampler, the keys its rows had, in the order they first came (the file's columns)
        self._keys: dict[str, dict[str, None]] = {}
        #: samplers of a server that was restarted: stopped, still read for their samples
        self._retired: list[Sampler] = []

    @property
    def samplers(self) -> list[Sampler]:
        return [s for s in (self.nvml, self.host, self.triton, *self._retired) if s is not None]

    # -- lifecycle ---------------------------------------------------------------------
    def start_gpu(self) -> None:
        """Start NVML before the server, so its memory before the server is known."""
        if not self.settings.nvml:
            self.reasons["gpu"] = "GPU sampling was turned off"
            return
        reason = nvml_unavailable_reason()
        if reason is not None:
            self.reasons["gpu"] = reason
            return
        self.nvml = NvmlSampler(self.settings.nvml_interval_s)
        self.nvml.start()
        deadline = time.monotonic() + 2.0
        while not self.nvml.between(0, math.inf) and time.monotonic() < deadline:
            time.sleep(0.01)
        first = self.nvml.between(0, math.inf)
        if first:
            self.gpu_memory_before_server_mb = first[-1].values.get("gpu_memory_used_mb", math.nan)

    def attach_server(self, pid: int | None, metrics_url: str | None) -> None:
        if pid is not None:
            self.host = ProcessTreeSampler(pid, self.settings.process_interval_s)
            self.host.start()
        else:
            self.reasons["server process"] = "the server runs elsewhere: its CPU, memory and per-process GPU figures are unknown"
        if metrics_url and self.settings.triton_metrics:
            self.triton = TritonMetricsSampler(metrics_url, self.settings.triton_metrics_interval_s)
            self.triton.start()

    def server_restarted(self, pid: int | None, metrics_url: str | None) -> None:
        """Sample the restarted server's processes and /metrics from now on; the samplers of
        the one before stop, and their samples are still handed on."""
        for old in (self.host, self.triton):
            if old is not None:
                old.stop()
                self._retired.append(old)
        self.host = self.triton = None
        self.attach_server(pid, metrics_url)

    def stop(self) -> None:
        for sampler in self.samplers:
            sampler.stop()

    def begin(self, name: str, model: str = "", batch_size: int = 0, concurrency: int = 0) -> None:
        """Tag the samples from now on with this phase."""
        with self._lock:
            self._phases.append(Phase(time.monotonic(), name, model, batch_size, concurrency))

    def await_samples(self, start: float, longest_s: float) -> None:
        """Wait (at most ``longest_s``) until each running sampler has taken a sample since
        ``start``. A span as short as the baseline can pass with none from a sampler whose
        thread did not get the interpreter in time (a long garbage collection in a process
        that ran a thousand tests did it here), and its figures would be NaN for no reason
        the machine has; a sampler that gives up (its ``unavailable``) is not waited for."""
        deadline = time.monotonic() + longest_s
        waiting = [s for s in (self.nvml, self.host, self.triton) if s is not None and not s.unavailable.get("*")]
        while waiting and time.monotonic() < deadline:
            waiting = [s for s in waiting if not s.between(start, math.inf) and not s.unavailable.get("*")]
            if waiting:
                time.sleep(0.01)

    def unavailable(self) -> dict[str, str]:
        """Why some columns are NaN, by sampler or metric."""
        out = dict(self.reasons)
        for sampler in self.samplers:
            for what, why in sampler.unavailable.items():
                out[f"{sampler.name} {what}".strip()] = why
        return out

    # -- reductions --------------------------------------------------------------------
    def _model_rss(self, sample: Sample, model: str) -> dict[str, float]:
        """Resident memory of ``model``'s stub processes, from the host sampler's pid keys
        (on a machine without a GPU it stands in for the model's GPU memory)."""
        labels: dict[int, str] = getattr(self.host, "labels", {})
        processes = [(key, value) for key, value in sample.values.items() if key.startswith("pid")]
        if not processes:
            return {}  # a sample without its processes (the server gone): no figure, rather than a false 0
        return {"model_rss_mb": math.fsum(value for key, value in processes
                                          if labels.get(int(key[3:].split(".", 1)[0])) == model)}

    def _derived(self, sample: Sample, model: str) -> dict[str, float]:
        """Per-process GPU memory of the server and of ``model``, from the pid keys."""
        labels = self.host.labels if self.host is not None else None
        if labels is None:
            return {}
        server = model_mb = 0.0
        for key, value in sample.values.items():
            if not key.startswith("pid"):
                continue
            label = labels.get(int(key[3:].split(".", 1)[0]))
            if label is None:
                continue  # another program's process
            server += value
            if model and label == model:
                model_mb += value
        out = {"server_gpu_memory_mb": server}
        if model:
            out["model_gpu_memory_mb"] = model_mb
        return out

    def reduce(self, start: float, end: float, columns: Sequence[Column], model: str = "") -> dict[str, float]:
        """Each sampled column of ``columns`` over ``[start, end]``, by its declared
        reduction (NaN where no sampler gave a value); ``model`` names the model whose stub
        memory to attribute. The span must lie in the current baseline or point, or in the
        last :data:`LIVE_SPAN_S` seconds: older samples may have been handed on and dropped."""
        if start <= self._dropped_through:
            raise AnalyzerError(f"the samples from {start - self.started:.1f} s into the sweep on are no longer "
                                f"all held (the samplers dropped those up to {self._dropped_through - self.started:.1f}"
                                " s): reduce a span of the current phase")
        values: dict[str, list[float]] = {}
        for sampler in self.samplers:
            for sample in sampler.between(start, end):
                merged = dict(sample.values)
                if sampler is self.nvml:
                    merged.update(self._derived(sample, model))
                elif sampler is self.host and model:
                    merged.update(self._model_rss(sample, model))
                for key, value in merged.items():
                    if isinstance(value, float | int) and math.isfinite(value):
                        values.setdefault(key, []).append(float(value))
        return {c.name: c.reduction(values.get(c.sample_key, [])) for c in sampled_columns(columns)
                if c.reduction is not None}

    # -- samples as rows, handed on as the sweep goes ----------------------------------------
    def take_samples(self, final: bool = False) -> pd.DataFrame | None:
        """The samples taken since the last call, one row each, tagged with their phase and
        point (the rows of ``metrics-samples.csv``), or None when none are due: at most every
        :data:`HAND_OFF_EVERY_S`, samples younger than the settling time left for the next
        call. ``final`` (once the samplers stopped) takes them all. Then drops from the
        samplers what no reader needs any more.

        ``time_s`` counts from the session's start. Per-process keys are folded into
        ``server_gpu_memory_mb`` and ``model_gpu_memory_mb`` (the model of the phase). The
        columns are every column seen so far in the session, values as float64, so the
        chunks of a sweep line up; rows are in time order, within a chunk and across them."""
        with self._lock:
            now = time.monotonic()
            if not final and now - self._last_hand_off < HAND_OFF_EVERY_S:
                return None
            self._last_hand_off = now
            # a sample appended after the clock was read has a later stamp (Sampler stamps
            # under its lock), so (handed_until, cut] is complete once read
            cut = now if final else now - self._settling_s()
            if cut <= self._handed_until:
                return None
            rows = self._rows(self._handed_until, cut)
            self._handed_until = cut
            self._trim(now)
        return self._frame(rows) if rows else None

    def _settling_s(self) -> float:
        return max(SETTLE_S, 2 * self.host.interval_s) if self.host is not None else SETTLE_S

    def _rows(self, after: float, until: float) -> list[dict[str, Any]]:
        """The rows of the samples taken in ``(after, until]``, sampler by sampler."""
        rows: list[dict[str, Any]] = []
        starts = [p.start for p in self._phases]
        for sampler in self.samplers:
            keys = self._keys.setdefault(sampler.name, {})
            for sample in sampler.between(after, until):
                if sample.t <= after:
                    continue
                index = bisect.bisect_right(starts, sample.t) - 1
                phase = self._phases[index] if index >= 0 else None
                row: dict[str, Any] = {
                    "time_s": sample.t - self.started,
                    "source": sampler.name,
                    "phase": phase.name if phase else "",
                    "model": phase.model if phase else "",
                    "batch_size": phase.batch_size if phase else 0,
                    "concurrency": phase.concurrency if phase else 0,
                }
                row.update({k: v for k, v in sample.values.items() if not k.startswith("pid")})
                if sampler is self.nvml:
                    row.update(self._derived(sample, phase.model if phase else ""))
                elif sampler is self.host and phase is not None and phase.model:
                    row.update(self._model_rss(sample, phase.model))
                keys.update(dict.fromkeys(row))
                rows.append(row)
        return rows

    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        # the columns in the order a table of every row, sampler by sampler, would have them
        columns = list(dict.fromkeys(k for s in self.samplers for k in self._keys.get(s.name, {})))
        frame = pd.DataFrame(rows, columns=columns)
        values = [c for c in columns if c not in SAMPLE_TAGS]
        frame[values] = frame[values].astype("float64")
        return frame.sort_values(["time_s", "source"], kind="stable").reset_index(drop=True)

    def _trim(self, now: float) -> None:
        """Drop the samples no reader needs: handed on, older than the panel's span and
        before the current phase, if it is one whose reductions are still to come."""
        phase = self._phases[-1] if self._phases else None
        current = phase.start if phase is not None and phase.name in REDUCED_PHASES else math.inf
        keep_from = min(self._handed_until, current, now - LIVE_SPAN_S)
        for sampler in self.samplers:
            self._dropped_through = max(self._dropped_through, sampler.discard_before(keep_from))

    def gpu_uuids(self) -> list[str]:
        """The monitored GPUs' UUIDs, in NVML's order (none without NVML)."""
        return [g.uuid for g in (self.nvml.gpus if self.nvml is not None else [])]

    @property
    def gpu_memory_total_mb(self) -> float:
        """The monitored GPUs' memory in all (NaN without NVML)."""
        gpus = self.nvml.gpus if self.nvml is not None else []
        return math.fsum(g.memory_total_mb for g in gpus) if gpus else math.nan

    def gpu_descriptions(self) -> dict[str, str]:
        gpus = self.nvml.gpus if self.nvml is not None else []
        return {
            "gpu_names": "; ".join(g.name for g in gpus),
            "gpu_uuids": "; ".join(self.gpu_uuids()),
        }

