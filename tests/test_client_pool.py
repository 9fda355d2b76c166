"""A client process that dies or fails in the middle of a point (RELIABILITY.md row 21),
made to happen for real on the embedded server: SIGKILL on the process, or the worker's
test hook (``ANALYZER_WIDGETS_TEST_CLIENT_FAULT``) raising in it. The point fails naming
the process; the next point starts clean, on a fresh process in the bad one's place, and
counts only its own load; no client process is left after the sweep."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable

import pandas as pd
import psutil
import pytest
from conftest import FAST, assert_counts_agree

import analyzer_widgets as aw
from analyzer_widgets import events
from analyzer_widgets.loadgen._worker import TEST_FAULT_ENV

pytestmark = [pytest.mark.server, pytest.mark.faults]

MEASURED = {"ok", "unstable"}

# Two points, both on two client processes (wids 0 and 1 for the first: the automatic
# count is 1 on a 2-core machine, so it is set).
SWEEP: dict[str, object] = dict(models=["mlp_numpy"], model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=[1],
                                concurrency=[2, 4], client_processes=2, **FAST)


def client_pids() -> set[int]:
    """The live client processes this test process spawned."""
    pids = set()
    for proc in psutil.Process().children():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(proc.cmdline()):
                pids.add(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def sweep(at_first_window: Callable[[set[int]], None] | None = None) -> tuple[pd.DataFrame, dict[int, set[int]]]:
    """Run SWEEP; return its rows and the client pids seen at each point's first window.
    ``at_first_window`` gets the first point's pids then."""
    seen: dict[int, set[int]] = {}
    point = [-1]

    def on_event(event: object) -> None:
        if isinstance(event, events.PointStarted):
            point[0] = event.index
        elif isinstance(event, events.WindowMeasured) and event.trial == 1:
            seen[point[0]] = client_pids()
            if point[0] == 0 and at_first_window is not None:
                at_first_window(seen[0])

    df = aw.profile(**SWEEP, on_event=on_event).to_frame()
    return df, seen


def assert_next_point_clean(df: pd.DataFrame, seen: dict[int, set[int]], bad_pid: int) -> None:
    after = df.iloc[1]
    assert after["status"] in MEASURED, after["reason"]
    # A process still loading the server for the failed point would add hundreds of
    # inferences; the counts differ only by what the cuts leave unpinned
    assert_counts_agree(after)
    assert len(seen[1]) == 2 and bad_pid not in seen[1], "the bad process was not replaced by a fresh one"
    assert not client_pids(), "client processes left after the sweep"


def failed_pid(reason: str, wid: int, how: str) -> int:
    match = re.search(rf"client process {wid} \(pid (\d+)\) {how}", reason)
    assert match, reason
    return int(match.group(1))


def test_a_client_process_killed_mid_point_fails_that_point_and_the_next_starts_clean() -> None:
    killed: list[int] = []

    def kill_one(pids: set[int]) -> None:
        assert len(pids) == 2
        killed.append(max(pids))
        os.kill(killed[0], signal.SIGKILL)

    df, seen = sweep(kill_one)
    first = df.iloc[0]
    assert first["status"] == "failed"
    assert re.search(rf"client process \d+ \(pid {killed[0]}\) was killed by signal 9", first["reason"]), first["reason"]
    assert_next_point_clean(df, seen, killed[0])


def test_a_client_process_failing_mid_point_fails_that_point_and_the_next_starts_clean(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_FAULT_ENV, "run:1:0.5")
    df, seen = sweep()
    first = df.iloc[0]
    assert first["status"] == "failed"
    pid = failed_pid(first["reason"], 1, "failed: RuntimeError: deliberate failure in the run")
    assert_next_point_clean(df, seen, pid)


def test_a_client_process_failing_in_its_warm_up_fails_that_point_and_the_next_starts_clean(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_FAULT_ENV, "warmup:1")
    df, seen = sweep()
    first = df.iloc[0]
    assert first["status"] == "failed" and first["window_count"] == 0
    pid = failed_pid(first["reason"], 1, "failed: RuntimeError: deliberate failure in the warmup")
    assert_next_point_clean(df, seen, pid)
