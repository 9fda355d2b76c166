"""The arithmetic benchmarks/fidelity.py adds to a pair, and the pooled table that
docs/benchmarks.md quotes, read back from the kept CSVs of the H200 runs."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "h200-2026-12-01"
sys.path.insert(0, str(ROOT / "benchmarks"))
import fidelity  # noqa: E402  (a script in benchmarks/, not a package module)


def pair(batch: int, concurrency: int, ours: float, pa: float, ours_server_ms: float, pa_server_ms: float) -> dict:
    return dict(batch_size=batch, concurrency=concurrency, ours_throughput=ours, pa_throughput=pa,
                ours_server_ms=ours_server_ms, pa_server_ms=pa_server_ms)


def test_equal_time_outside_the_server_is_a_server_equal_ratio_of_one() -> None:
    # ours: 1000/s at concurrency 1 is a 1 ms cycle, 0.7 of it in the server; perf_analyzer's
    # server took 0.95 of a 1.25 ms cycle: both spent 0.3 ms outside, so the raw 1.25 is the server's
    got = fidelity.outside_server(pair(1, 1, 1000.0, 800.0, 0.7, 0.95))
    assert got["ours_outside_ms"] == pytest.approx(0.3)
    assert got["pa_outside_ms"] == pytest.approx(0.3)
    assert got["server_equal_ratio"] == pytest.approx(1.0)


def test_the_cycle_counts_every_slot_and_every_inference_of_a_request() -> None:
    # batch 8 at concurrency 4: 16000 infer/s is 2000 requests/s over 4 slots, a 2 ms cycle
    got = fidelity.outside_server(pair(8, 4, 16000.0, 16000.0, 1.5, 1.6))
    assert got["ours_outside_ms"] == pytest.approx(0.5)
    assert got["pa_outside_ms"] == pytest.approx(0.4)
    assert got["server_equal_ratio"] == pytest.approx(2.0 / 2.1)  # ours spends longer outside


def test_within_run_sd_takes_out_each_run_and_skips_runs_of_one() -> None:
    assert fidelity.within_run_sd([[1.0, 3.0], [10.0, 12.0], [100.0]]) == pytest.approx(math.sqrt(2.0))
    assert math.isnan(fidelity.within_run_sd([[1.0], [2.0]]))


def test_the_pooled_table_in_the_docs_is_what_the_kept_csvs_give() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fidelity.summarize(sorted(str(p) for p in RESULTS.glob("*.csv")))
    printed = out.getvalue().splitlines()
    assert "82 pairs from 6 file(s)" in printed
    # batch 1, concurrency 1: its summary line (17 pairs) and its scatter line (17 pairs, 5 runs)
    summary = next(line for line in printed if line.split()[:3] == ["1", "1", "17"])
    assert "1.037 [0.86-1.12]" in summary and "1.004 [0.95-1.03]" in summary and "0.278   0.276" in summary
    scatter = next(line for line in printed if line.split()[:4] == ["1", "1", "17", "5"])
    assert scatter.split()[-4:] == ["0.079", "0.072", "|", "43"]
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "| 1 | 1 | 17 | 1.037 [0.86-1.12] | 1.021 | 0.278 / 0.276 | 1.004 [0.95-1.03] | 0.079 | 0.072 | 43 |" in docs
