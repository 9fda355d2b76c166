"""A sweep's units as Ray tasks (``--ray auto|ADDRESS``): each unit runs :func:`run_unit` in a
task that asks Ray for ``--ray-unit-resources`` (a GPU by default), on whatever node has them,
with a Triton server of its own there; the driver (this process: a CLI or a notebook) receives
its messages and writes the one set of result files, as :class:`~.gpus.ParallelRunner` does
for this host's worker processes.

The messages come back through a small actor on the driver's node (:class:`_Mailbox`): a task
puts its messages there in batches, the driver takes them. A task whose node or worker is lost
never says "done": the driver sees its reference fail, and runs the unit again on another node,
told to skip the points whose rows already arrived (as a resume is), so no finished row is lost
or written twice; messages of the lost attempt that still arrive are dropped by their attempt
number. docs/scale-out.md says why retries are the driver's and not Ray's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from analyzer_widgets import events as ev
from analyzer_widgets.config import SweepSpec, ray_resources_text
from analyzer_widgets.distributed.gpus import ParallelRunner, _Running
from analyzer_widgets.distributed.units import Message, Slot, Unit, run_unit
from analyzer_widgets.errors import ConfigError

#: how often a unit is started in all before its points are failed: its first run and two more
#: after lost nodes (Ray's own default for a task is three retries)
MAX_ATTEMPTS = 3
#: how often a task hands its messages to the mailbox, and the driver takes them
FLUSH_EVERY_S = 0.25


def _import_ray(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("ray", address, "needs Ray on this machine: pip install 'analyzer-widgets[ray]'") from None
    return ray


class _Mailbox:
    """Where the tasks' messages wait for the driver (a Ray actor on the driver's node), and
    the driver's Stop for them."""

    def __init__(self) -> None:
        self._messages: list[tuple[int, int, Message]] = []
        self._stopping = False

    def put(self, messages: list[tuple[int, int, Message]]) -> bool:
        """Keep a task's messages; whether the driver asked the units to stop."""
        self._messages.extend(messages)
        return self._stopping

    def take(self) -> list[tuple[int, int, Message]]:
        taken, self._messages = self._messages, []
        return taken

    def stop(self) -> None:
        self._stopping = True


class _Outbox:
    """A task's side of the mailbox: ``send`` keeps a message, a thread hands them over every
    :data:`FLUSH_EVERY_S` (one actor call per batch, not per event), ``close`` hands over the
    rest and waits until the mailbox has them."""

    def __init__(self, mailbox: Any, unit: int, attempt: int) -> None:
        import ray

        self._ray, self._mailbox, self._tag = ray, mailbox, (unit, attempt)
        self._pending: list[tuple[int, int, Message]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._flush_until_done, name="analyzer-widgets-outbox", daemon=True)
        self._thread.start()

    def send(self, message: Message) -> None:
        with self._lock:
            self._pending.append((*self._tag, message))

    def stopping(self) -> bool:
        return self._stopping

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        self._stopping = bool(self._ray.get(self._mailbox.put.remote(batch))) or self._stopping

    def _flush_until_done(self) -> None:
        while not self._done.wait(FLUSH_EVERY_S):
            self._flush()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._flush()


def _unit_task(unit: Unit, attempt: int, mailbox: Any) -> None:
    """A Ray task's body: one unit on this node, its messages through ``mailbox``. Ray sets
    ``CUDA_VISIBLE_DEVICES`` to the GPUs it gave the task; the server inherits it and the NVML
    sampler follows it, as with ``--parallel gpus``'s slots."""
    import ray

    context = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"
    outbox = _Outbox(mailbox, unit.index, attempt)
    outbox.send(("started", unit.index, node, os.getpid(), ",".join(str(g) for g in ray.get_gpu_ids())))
    spec = unit.spec
    log = spec.server.log_path
    if log is not None and not log.parent.is_dir():
        # the export folder is the driver's: on another machine there is no such folder to keep the log in
        outbox.send(("event", unit.index, ev.Notice(f"its server's log is not kept: {log.parent} is not a folder on "
                                                    f"node {node}", ev.Level.INFO)))
        spec = dataclasses.replace(spec, server=dataclasses.replace(spec.server, log_path=None))
    try:
        run_unit(dataclasses.replace(unit, spec=spec), Slot(0), outbox.send, outbox.stopping)
    finally:
        outbox.close()


def _task_options(resources: Mapping[str, float], unit: Unit) -> dict[str, Any]:
    """Ray's options for a unit's task: GPU and CPU are Ray's own arguments, any other name a
    custom resource. No retries by Ray: the driver reruns a lost unit itself (module doc)."""
    options: dict[str, Any] = {"max_retries": 0, "name": f"analyzer-widgets unit {unit.index} ({unit.name})"}
    custom = {k: v for k, v in resources.items() if k not in ("GPU", "CPU")}
    if "GPU" in resources:
        options["num_gpus"] = resources["GPU"]
    if "CPU" in resources:
        options["num_cpus"] = resources["CPU"]
    if custom:
        options["resources"] = custom
    return options


class RayRunner(ParallelRunner):
    """Runs a sweep's units as Ray tasks and hands their events on as one sweep's, as
    :class:`~.gpus.ParallelRunner` does with worker processes. Connects in :meth:`preflight`
    (so a wrong address or resources no node has fail before the export folder is touched),
    and lets go of the cluster at the end if it made the connection."""

    def __init__(self, spec: SweepSpec, on_event: Any = None, **split: Any) -> None:
        super().__init__(spec, on_event, **split)
        self._ray: Any = None
        self._owned = False
        self._mailbox: Any = None
        self.dashboard_url = ""
        #: what the driver's part costs (benchmarks/ray_cluster.py prints it): per (unit, attempt),
        #: when it was submitted, when its "started" and its "done" arrived (time.monotonic()); the
        #: driver's time taking messages from the mailbox and handing them on; how many it took
        self.unit_times: dict[tuple[int, int], dict[str, float]] = {}
        self.receive_s = 0.0
        self.received = 0

    def preflight(self) -> None:
        super().preflight()
        if self._ray is None:
            self._join_cluster()

    def _join_cluster(self) -> None:
        spec = self.spec
        ray = _import_ray(spec.ray)
        if not ray.is_initialized():
            try:
                context = ray.init(address=spec.ray, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                # a failed join can leave Ray half set up in this process (a failed ray://
                # connection did: the next ray.init then failed on Ray's own assertion)
                ray.shutdown()
                raise ConfigError("ray", spec.ray, f"no Ray cluster could be joined there: {e}") from None
            self._owned = True
            url = getattr(context, "dashboard_url", "") or ""
        else:  # the notebook joined one already: use it, and leave it joined
            url = ray.get_runtime_context().get_dashboard_url() if hasattr(
                ray.get_runtime_context(), "get_dashboard_url") else ""
        self._ray = ray
        self.dashboard_url = url if not url or "://" in url else f"http://{url}"
        try:
            self._check_resources()
        except ConfigError:
            self._close()
            raise

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def _check_resources(self) -> None:
        """Refuse resources no node has: Ray would keep such a task pending for ever."""
        wanted = self.spec.ray_unit_resources
        nodes = self._nodes()
        if not any(all(node["Resources"].get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes):
            have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n["Resources"].items())
                                       if not k.startswith("node:") and "memory" not in k) for n in nodes)
            raise ConfigError("ray_unit_resources", ray_resources_text(wanted),
                              f"no node of the Ray cluster has that much (its {len(nodes)} nodes: {have})")

    # -- how units run: Ray tasks ---------------------------------------------------------------
    def _slots(self) -> list[Slot]:
        return []  # Ray places the tasks

    def _execute(self, units: list[Unit], places: list[Slot]) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # on the head node, which the cluster cannot outlive (the driver's own node may be any
        # other, and losing it would take the mailbox with it); not soft: Ray then put it elsewhere
        # while the head's CPU was taken by a unit
        head = next((n["NodeID"] for n in self._nodes() if "node:__internal_head__" in n["Resources"]),
                    ray.get_runtime_context().get_node_id())
        self._mailbox = ray.remote(num_cpus=0)(_Mailbox).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=head, soft=False)).remote()
        self._task = ray.remote(_unit_task)
        self.emit(ev.RayJoined(len(self._nodes()), ray_resources_text(self.spec.ray_unit_resources), self.dashboard_url))
        self._refs: dict[Any, _Running] = {}
        for unit in units:
            self._submit(_Running(unit, Slot(-1), None, where="a Ray node"))
        stop_asked = False
        while self._running:
            if self.stopping and not stop_asked:
                self._mailbox.stop.remote()
                stop_asked = True
            refs = list(self._refs)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=FLUSH_EVERY_S) if refs else ([], [])
            # taken after the wait: a task puts its "done" before it returns, so an ended task's
            # last messages are in this batch
            taking = time.monotonic()
            self._take()
            self.receive_s += time.monotonic() - taking
            for ref in ready:
                self._ended(ref, self._refs.pop(ref))

    def _submit(self, task: _Running) -> None:
        self._running[task.unit.index] = task
        options = _task_options(self.spec.ray_unit_resources, task.unit)
        self.unit_times[(task.unit.index, task.attempt)] = {"submitted": time.monotonic()}
        task.process = self._task.options(**options).remote(task.unit, task.attempt, self._mailbox)
        self._refs[task.process] = task

    def _take(self) -> None:
        taken = self._ray.get(self._mailbox.take.remote())
        self.received += len(taken)
        for index, attempt, message in taken:
            task = self._running.get(index)
            if not isinstance(task, _Running) or task.attempt != attempt:
                continue  # a lost attempt's, arriving late: its points run again
            if message[0] in ("started", "done"):
                self.unit_times[(index, attempt)][message[0]] = time.monotonic()
            if message[0] == "started":
                _, _, node, pid, gpus = message
                task.where, task.node = f"node {node}", node
                self.emit(ev.UnitStarted(index, len(self._units), (task.unit.name,), None, gpus, pid, node,
                                         attempt))
            elif self._handle(task, message):
                del self._running[index]

    def _ended(self, ref: Any, task: _Running) -> None:
        """A task's reference is ready: fine if its unit said "done"; otherwise its node or
        worker was lost, and the unit runs again with the rows that arrived kept."""
        if task.finished or self._running.get(task.unit.index) is not task:
            return
        try:
            self._ray.get(ref)
            why = "its Ray task ended without its last message"
        except Exception as e:  # noqa: BLE001 - Ray's errors for a lost node or worker vary; each is said
            why = f"its Ray task was lost ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        if task.attempt >= MAX_ATTEMPTS or self.stopping:
            self._unit_done(task, why)
            del self._running[task.unit.index]
            return
        arrived = tuple(row for row in self.rows if task.unit.owns(row))
        again = _Running(dataclasses.replace(task.unit, earlier=task.unit.earlier + arrived), task.slot, None,
                      where="a Ray node", points=task.points, attempt=task.attempt + 1)
        self.emit(ev.Notice(f"{task.unit.name} ({task.where}): {why}; its points not yet measured run again "
                            f"(attempt {again.attempt} of {MAX_ATTEMPTS}), the {len(arrived)} rows that arrived are kept"))
        self._submit(again)

    def _abort(self, grace_s: float = 30.0) -> None:
        """Stop every task still running: asked first, cancelled after ``grace_s``."""
        if self._mailbox is None:
            return
        self._mailbox.stop.remote()
        refs = list(getattr(self, "_refs", {}))
        if refs:
            _, left = self._ray.wait(refs, num_returns=len(refs), timeout=grace_s)
            for ref in left:
                self._ray.cancel(ref, force=True)

    def _close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        if self._mailbox is not None:
            ray.kill(self._mailbox)
            self._mailbox = None
        if self._owned:
            ray.shutdown()
            self._owned = False
        self._ray = None

