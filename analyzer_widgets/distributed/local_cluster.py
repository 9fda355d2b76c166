"""A real Ray cluster of several nodes on this one machine, for trying ``--ray`` without a
cluster, and for the tests and the benchmark that need one: each node is a ``ray start
--block`` of this Python's Ray, in a session of its own, with a custom resource standing in for
a GPU slot (``slot_resource``), so that each node runs one unit at a time.

    with LocalRayCluster(nodes=2) as cluster:
        aw.profile(models=[...], ray=cluster.address, ray_unit_resources="aw_slot=1")

The head listens on 127.0.0.1 and each further node on 127.0.0.N (every 127.x address is this
machine's on Linux): a driver joins through the node of its own IP, the head's, so losing
another node (:meth:`LocalRayCluster.kill_node`) is not losing the driver's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

#: the custom resource each node has one of: a unit asks for it with ``--ray-unit-resources aw_slot=1``
SLOT_RESOURCE = "aw_slot"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRayCluster:
    """Starts a head node (with Ray's dashboard) and ``nodes - 1`` more; :meth:`close` (or the
    ``with`` block's end) stops them all. Token authentication is off for the cluster and for
    this process (``RAY_AUTH_MODE=disabled``): Ray 2.60 turns it on by itself once a token file
    exists in ``~/.ray``, which would make the cluster differ from machine to machine."""

    def __init__(self, nodes: int = 2, slots_per_node: int = 1, cpus_per_node: int = 1,
                 timeout_s: float = 180.0, gpus_per_node: int = 0, dashboard: bool = True) -> None:
        # Ray's command line through this interpreter, not a `ray` script beside it: where Ray
        # is importable from PYTHONPATH only (the GPU host carries its core), no script exists
        self._ray = [sys.executable, "-m", "ray.scripts.scripts"]
        self._slots, self._cpus, self._timeout_s = slots_per_node, cpus_per_node, timeout_s
        self._gpus = gpus_per_node  # a GPU host's: units then ask for GPU=1 (Ray sets CUDA_VISIBLE_DEVICES)
        self._auth_mode = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self._env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        # a short path: Ray's socket paths live under it, and a Unix socket's path has at most 107 bytes
        self.temp = Path(tempfile.mkdtemp(prefix="awray-", dir="/tmp"))
        port, self.dashboard_port, client_port = _free_port(), _free_port(), _free_port()
        self.address = f"127.0.0.1:{port}"
        #: the address of Ray's client server on the head (a driver on a machine that is no
        #: node connects through it, as the Helm chart's Job does to a KubeRay head)
        self.client_address = f"ray://127.0.0.1:{client_port}"
        #: the `ray start` process of each node, the head first
        self.nodes: list[subprocess.Popen[bytes]] = []
        try:
            # without the dashboard, Ray's [default] extra is not needed (the GPU host carries Ray's core only)
            shown = (["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                      f"--dashboard-port={self.dashboard_port}"] if dashboard else ["--include-dashboard=false"])
            self._start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}", *shown, f"--ray-client-server-port={client_port}",
                         f"--temp-dir={self.temp}"])
            for _ in range(nodes - 1):
                self.add_node()
        except BaseException:
            self.close()
            raise

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def add_node(self) -> subprocess.Popen[bytes]:
        """One more node (127.0.0.N), once the cluster counts it."""
        return self._start([f"--address={self.address}", f"--node-ip-address=127.0.0.{len(self.nodes) + 1}"])

    def _start(self, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.temp / f"node{len(self.nodes)}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [*self._ray, "start", "--block", f"--num-cpus={self._cpus}", f"--num-gpus={self._gpus}",
                 *([f'--resources={{"{SLOT_RESOURCE}": {self._slots}}}'] if self._slots else []), *args],
                stdout=out, stderr=subprocess.STDOUT, env=self._env, start_new_session=True)
        self.nodes.append(process)
        deadline = time.monotonic() + self._timeout_s
        while self.alive_nodes() < len(self.nodes):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a Ray node did not join the cluster at {self.address} within "
                                   f"{self._timeout_s:g} s: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(1)
        return process

    def alive_nodes(self) -> int:
        """How many nodes the cluster counts, as `ray status` says (0 while it does not answer)."""
        out = subprocess.run([*self._ray, "status", f"--address={self.address}"], capture_output=True, text=True,
                             timeout=60, env=self._env)
        if out.returncode != 0:
            return 0
        active = out.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))

    def node_of(self, pid: int) -> int | None:
        """Which node (0: the head) a process runs under, or None (not under any, or gone)."""
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.NoSuchProcess:
            return None
        return next((i for i, node in enumerate(self.nodes) if node.pid in parents), None)

    def kill_node(self, index: int) -> None:
        """Node ``index`` lost at once, as a machine that loses power: its `ray start`, raylet,
        workers and what they started, SIGKILL."""
        node = psutil.Process(self.nodes[index].pid)
        for proc in [node, *node.children(recursive=True)]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def close(self) -> None:
        """Stop every node (the last first), each asked, then killed after 15 s, and wait until
        the processes under it are gone."""
        for process in reversed(self.nodes):
            _stop(process)
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
        if self._auth_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self._auth_mode

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        under = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        under = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(15)
            break
        except subprocess.TimeoutExpired:
            continue
    _, alive = psutil.wait_procs(under, timeout=15)
    for proc in alive:  # a worker that left the session: ended as the node was
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
