"""The metrics declared once (analyzer_widgets.schema): the tables agree with themselves,
rows refuse keys that are not columns, and the reductions do what they say."""

from __future__ import annotations

import math
import pickle

import pandas as pd
import pytest

from analyzer_widgets.schema import (
    MODEL_COLUMNS,
    SAMPLE_KEYS,
    SAMPLE_METRICS,
    SERVER_COLUMNS,
    TABLE_COLUMNS,
    Column,
    Kind,
    Reduction,
    Row,
    sampled_columns,
    table_columns,
)

#: the unit a column's or a key's name ends with
SUFFIX_UNITS = {"_ms": "ms", "_mb": "MB", "_pct": ("%", "% of one core"), "_w": "W", "_s": "s", "_per_s": ("infer/s", "requests/s"),
                "_j": "J"}


def _unit_from_name(name: str) -> object:
    for suffix in ("_per_s", "_ms", "_mb", "_pct", "_w", "_s", "_j"):
        if name.endswith(suffix):
            return SUFFIX_UNITS[suffix]
    return None


@pytest.mark.parametrize("column", [c for c in (*MODEL_COLUMNS, *SERVER_COLUMNS) if c.kind is Kind.FLOAT],
                         ids=lambda c: c.name)
def test_a_measured_column_names_its_unit_and_declares_the_same_one(column: Column) -> None:
    expected = _unit_from_name(column.name)
    if expected is None:
        assert column.name in ("error_rate", "in_flight_mean"), f"{column.name} has no unit in its name"
        return
    assert column.unit in (expected if isinstance(expected, tuple) else (expected,)), column.name


@pytest.mark.parametrize("metric", SAMPLE_METRICS, ids=lambda m: m.key)
def test_a_sample_key_names_its_unit(metric: object) -> None:
    expected = _unit_from_name(metric.key)  # type: ignore[attr-defined]
    assert metric.unit in (expected if isinstance(expected, tuple) else (expected,))  # type: ignore[attr-defined]


def test_a_sampled_column_reduces_a_declared_sample_key_and_a_bad_one_is_refused() -> None:
    for column in sampled_columns(MODEL_COLUMNS):
        assert column.sample_key in SAMPLE_KEYS
    with pytest.raises(ValueError, match="no sampler records"):
        Column("x_max_mb", Kind.FLOAT, "x", "MB", "not_a_key", Reduction.MAX)
    with pytest.raises(ValueError, match="both"):
        Column("x_max_mb", Kind.FLOAT, "x", "MB", "gpu_memory_used_mb")


def test_column_names_are_unique_in_each_table_and_the_table_columns_exist() -> None:
    for table in (MODEL_COLUMNS, SERVER_COLUMNS):
        names = [c.name for c in table]
        assert len(names) == len(set(names))
    assert set(TABLE_COLUMNS) <= {c.name for c in MODEL_COLUMNS} and TABLE_COLUMNS[-1] == "reason"


def test_a_row_refuses_a_key_that_is_not_a_column() -> None:
    row = Row(MODEL_COLUMNS)
    row["throughput_infer_per_s"] = 5.0
    row.update(latency_p99_ms=1.0)
    with pytest.raises(KeyError, match="throughput_infer_per_sec"):
        row["throughput_infer_per_sec"] = 5.0
    with pytest.raises(KeyError, match="latency_99_ms"):
        row.update({"latency_99_ms": 1.0})
    assert row["status"] == "" and row["error_count"] == 0 and math.isnan(row["latency_avg_ms"])
    copied = pickle.loads(pickle.dumps(row))
    assert type(copied) is dict and list(copied) == list(row) and copied["latency_p99_ms"] == 1.0


def test_reductions_leave_out_nan_and_give_nan_for_nothing() -> None:
    assert Reduction.MAX([1.0, math.nan, 3.0]) == 3.0
    assert Reduction.MEAN([1.0, math.nan, 3.0]) == 2.0
    assert Reduction.SUM([1.0, 2.0, math.inf]) == 3.0
    assert math.isnan(Reduction.MEAN([])) and math.isnan(Reduction.MAX([math.nan]))


def test_the_table_leaves_out_resource_columns_no_row_has_but_keeps_empty_figures() -> None:
    rows = [Row(MODEL_COLUMNS, {"model": "m", "status": "failed", "server_cpu_util_max_pct": 50.0})]
    df = pd.DataFrame(rows)
    shown = table_columns(df)
    assert "gpu_memory_max_mb" not in shown and "server_cpu_util_max_pct" in shown
    assert "throughput_infer_per_s" in shown  # a failed point's NaN figure is shown as NaN, not hidden


def test_the_tables_show_a_figure_rounded_with_its_intervals_half_width() -> None:
    from analyzer_widgets.schema import INTERVALS, empty_row, shown_value

    assert set(INTERVALS) == {"throughput_infer_per_s", "latency_avg_ms", "latency_p99_ms"}
    row = empty_row(MODEL_COLUMNS)
    row.update(model="m", throughput_infer_per_s=12_104.6, throughput_ci_low_infer_per_s=11_904.6,
               throughput_ci_high_infer_per_s=12_304.6, latency_avg_ms=1.2345, server_queue_ms=0.123)
    assert shown_value(row, "throughput_infer_per_s") == "12,105 ±200"
    assert shown_value(row, "latency_avg_ms") == "1.23"  # bounds NaN (one window): the figure alone
    assert shown_value(row, "server_queue_ms") == "0.12"  # no interval declared
    assert shown_value(row, "latency_p99_ms") == "NaN"
    assert shown_value(row, "model") == "m"
