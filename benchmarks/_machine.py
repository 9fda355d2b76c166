"""The first line every benchmark prints: where and when it ran."""

from __future__ import annotations

import os
import platform
import time


def machine_line() -> str:
    return (f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
