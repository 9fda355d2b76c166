"""The first line every benchmark prints: where and when it ran."""

from __future__ import annotations

import os
import platform
import time


def machine_line() -> str:
    return (f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def gpu_host_header() -> list | None:
    """On a GPU host: prints :func:`machine_line` and the visible GPUs, and returns them; on a
    machine without one says why and returns None (the GPU benchmarks then exit 2)."""
    from analyzer_widgets.machine import nvml_unavailable_reason, visible_gpus

    missing = nvml_unavailable_reason()
    if missing is not None:
        print(f"no GPU here: {missing}")
        return None
    gpus = visible_gpus()
    print(machine_line())
    print(f"GPUs: {', '.join(f'{g.uuid} ({g.name})' for g in gpus)}")
    return gpus

