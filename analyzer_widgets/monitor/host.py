"""CPU utilization and resident memory of the server's process tree (psutil)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import psutil

from analyzer_widgets.monitor.base import Sampler
from analyzer_widgets.schema import sample_metrics

#: the keys this sampler records for the whole tree (model_rss_mb is the session's, from the
#: per-process keys), as schema.py declares them
HOST_KEYS = ("server_cpu_util_pct", "server_rss_mb")
assert set(HOST_KEYS) <= {m.key for m in sample_metrics("host")}
#: resident memory of one process of the tree, keyed "pid<pid>.rss_mb" (the session sums a
#: model's stubs from them, as it does NVML's per-process GPU memory)
PROCESS_KEY = "pid{pid}.rss_mb"


class ProcessTreeSampler(Sampler):
    """Sums CPU % (100 = one core busy) and RSS over a process and its descendants, so the
    Python backend's stub processes (one per model instance) are counted with the server."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        super().__init__("host", interval_s)
        self.pid = pid
        self._procs: dict[int, psutil.Process] = {}
        #: every process seen in the tree: "server", or the model a Python-backend stub serves
        self.labels: dict[int, str] = {pid: "server"}

    def setup(self) -> None:
        self._root = psutil.Process(self.pid)
        self._root.cpu_percent(None)  # the first call only primes the counter
        self._procs = {self.pid: self._root}

    def sample(self) -> Mapping[str, float]:
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return {c: math.nan for c in HOST_KEYS}
        cpu = rss = 0.0
        read = 0
        per_process: dict[str, float] = {}
        alive: dict[int, psutil.Process] = {}
        for proc in tree:
            # Keep Process objects between samples: cpu_percent measures since its last call.
            known = self._procs.get(proc.pid)
            try:
                if known is None:
                    known = proc
                    known.cpu_percent(None)  # a new process counts from the next sample on
                else:
                    cpu += known.cpu_percent(None)
                resident = known.memory_info().rss
                rss += resident
                per_process[PROCESS_KEY.format(pid=proc.pid)] = resident / 2**20
                read += 1
            except psutil.Error:
                continue
            alive[proc.pid] = known
            # A child seen between its fork and its exec still shows tritonserver's command
            # line: a "server" label of a child is read again until it shows the stub's
            if proc.pid != self.pid and self.labels.get(proc.pid, "server") == "server":
                self.labels[proc.pid] = _label(proc)
        self._procs = alive
        if read == 0:  # the server is gone: no figure, rather than a false zero
            return {c: math.nan for c in HOST_KEYS}
        return {"server_cpu_util_pct": cpu, "server_rss_mb": rss / 2**20, **per_process}


def _label(proc: psutil.Process) -> str:
    """The model a Python-backend stub serves (its first argument is
    ``<repository>/<model>/<version>/model.py``), or "server" for any other process."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return "server"
    if len(cmdline) > 1 and cmdline[0].endswith("triton_python_backend_stub"):
        parts = cmdline[1].replace("\\", "/").split("/")
        if len(parts) >= 3:
            return parts[-3]
    return "server"
