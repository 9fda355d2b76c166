"""Executors for units of work (docs/scale-out.md): a sweep split into units that each run
on a server of their own, here on this host's GPUs side by side (:mod:`.gpus`)."""

from analyzer_widgets.distributed.gpus import ParallelRunner, slots
from analyzer_widgets.distributed.units import Slot, Unit, run_unit, split

__all__ = ["ParallelRunner", "Slot", "Unit", "run_unit", "slots", "split"]
