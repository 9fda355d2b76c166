"""Executors for units of work (docs/scale-out.md): a sweep split into units that each run
on a server of their own, on this host's GPUs side by side (:mod:`.gpus`) or as Ray tasks on
a cluster's nodes (:mod:`.ray_cluster`, which imports Ray only when it runs)."""

from analyzer_widgets.distributed.gpus import ParallelRunner, slots
from analyzer_widgets.distributed.ray_cluster import RayRunner
from analyzer_widgets.distributed.units import Slot, Unit, run_unit, split

__all__ = ["ParallelRunner", "RayRunner", "Slot", "Unit", "run_unit", "slots", "split"]
