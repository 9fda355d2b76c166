"""CSV export and read-back (analyzer_widgets.results, analyzer_widgets.schema, the rows an
ExportFolder appends): quoting, formula neutralisation, NaN, atomic writes, no silent
overwrite, clear errors. The folder's own checks and lock: test_export.py."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analyzer_widgets.config import ExportSettings, SweepSpec
from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.export import MODEL_CSV, SAMPLES_CSV, SERVER_CSV, ExportFolder, load_results
from analyzer_widgets.results import SweepResult, csv_text, read_csv, write_atomic
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS, Status, empty_row

AWKWARD_NAMES = [
    "plain",
    "with,comma",
    'say "hi"',
    "two\nlines",
    "carriage\r\nreturn",
    "=HYPERLINK(\"http://x\")",
    "+1",
    "-2",
    "@SUM(A1)",
    "\tleading tab",
    "'plain quote",
    "ünïcødé",
]


def model_row(model: str = "mlp_numpy", **values: Any) -> dict[str, Any]:
    row = empty_row(MODEL_COLUMNS)
    row.update(model=model, model_version="1", batch_size=1, concurrency=1, status=Status.OK.value,
               started_at="2024-01-01T00:00:00Z")
    row.update(values)
    return row


def server_row(**values: Any) -> dict[str, Any]:
    row = empty_row(SERVER_COLUMNS)
    row.update(launch_mode="local", server_version="2.50.0", duration_s=2.0, server_rss_max_mb=123.5)
    row.update(values)
    return row


def awkward_rows() -> list[dict[str, Any]]:
    return [
        model_row(name, batch_size=i + 1, concurrency=2 * i + 1, throughput_infer_per_s=10.0 * i + 0.1,
                  latency_p99_ms=math.nan if i % 2 else 1.0 / 3 + i, error_rate=-0.0 if i == 0 else 0.25,
                  reason="" if i % 3 else "-1 requests failed, see log")
        for i, name in enumerate(AWKWARD_NAMES)
    ]


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    write_atomic(path, csv_text(rows, MODEL_COLUMNS))
    return path


SPEC = SweepSpec(models=("m",), model_repository=Path("/nonexistent/models"))


def started(directory: Path, overwrite: bool = False) -> ExportFolder:
    """An export folder as a sweep has it once the server is up: open, its CSV files started."""
    folder = ExportFolder(ExportSettings(export_path=directory, overwrite=overwrite), SPEC).open()
    folder.server_known("2.50.0", [])
    return folder


# -- csv_text ------------------------------------------------------------------------------------


def test_header_is_the_schema_column_names_in_order() -> None:
    assert parse(csv_text([], MODEL_COLUMNS)) == [[c.name for c in MODEL_COLUMNS]]


@pytest.mark.parametrize("name", ["with,comma", 'say "hi"', "two\nlines", "carriage\r\nreturn"])
def test_csv_text_quotes_names_with_commas_quotes_and_newlines(name: str) -> None:
    text = csv_text([model_row(name)], MODEL_COLUMNS)
    header, row = parse(text)
    assert len(row) == len(MODEL_COLUMNS)
    assert row[header.index("model")] == name
    assert text.splitlines()[1].startswith('"')


def test_csv_text_doubles_embedded_quotes() -> None:
    text = csv_text([model_row('say "hi"')], MODEL_COLUMNS, header=False)
    assert text.startswith('"say ""hi"""')


@pytest.mark.parametrize("name", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx"])
def test_csv_text_neutralises_formula_cells(name: str) -> None:
    (row,) = parse(csv_text([model_row(name)], MODEL_COLUMNS, header=False))
    assert row[0] == "'" + name


def test_csv_text_neutralises_every_text_column_not_only_the_model() -> None:
    (row,) = parse(csv_text([model_row(reason="=cmd|' /C calc'!A0")], MODEL_COLUMNS, header=False))
    assert row[[c.name for c in MODEL_COLUMNS].index("reason")] == "'=cmd|' /C calc'!A0"


def test_csv_text_leaves_negative_numbers_in_numeric_columns_alone() -> None:
    header, row = parse(csv_text([model_row(throughput_infer_per_s=-1.5)], MODEL_COLUMNS))
    assert row[header.index("throughput_infer_per_s")] == "-1.5"


def test_csv_text_writes_nan_and_none_as_empty_cells() -> None:
    header, row = parse(csv_text([model_row(latency_p99_ms=math.nan, server_queue_ms=None)], MODEL_COLUMNS))
    assert row[header.index("latency_p99_ms")] == ""
    assert row[header.index("server_queue_ms")] == ""


def test_csv_text_floats_round_trip_exactly() -> None:
    header, row = parse(csv_text([model_row(latency_avg_ms=1.0 / 3)], MODEL_COLUMNS))
    assert float(row[header.index("latency_avg_ms")]) == 1.0 / 3


# -- read_csv ------------------------------------------------------------------------------------


def test_read_csv_restores_awkward_names_and_formula_cells(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, awkward_rows()), MODEL_COLUMNS)
    assert list(df["model"]) == AWKWARD_NAMES


def test_read_csv_reads_empty_cells_back_as_nan(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, [model_row(latency_p99_ms=math.nan, latency_p50_ms=2.5)]), MODEL_COLUMNS)
    assert math.isnan(df.loc[0, "latency_p99_ms"])
    assert df.loc[0, "latency_p50_ms"] == 2.5


def test_read_csv_keeps_text_that_looks_like_a_number_or_nan(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, [model_row("NaN", model_version="007")]), MODEL_COLUMNS)
    assert df.loc[0, "model"] == "NaN"
    assert df.loc[0, "model_version"] == "007"


def test_read_csv_round_trips_to_the_same_frame(tmp_path: Path) -> None:
    rows = awkward_rows()
    df = read_csv(write(tmp_path / MODEL_CSV, rows), MODEL_COLUMNS)
    expected = SweepResult(SweepSpec(models=("m",), model_repository=tmp_path), rows=rows).to_frame()
    pd.testing.assert_frame_equal(df, expected)


def test_read_csv_of_a_header_only_file_is_an_empty_frame_with_every_column(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, []), MODEL_COLUMNS)
    assert df.empty
    assert list(df.columns) == [c.name for c in MODEL_COLUMNS]


def test_read_csv_of_an_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    path = tmp_path / MODEL_CSV
    path.write_text("")
    with pytest.raises(AnalyzerError, match="is empty") as info:
        read_csv(path, MODEL_COLUMNS)
    assert str(path) in str(info.value)


def test_read_csv_of_a_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(AnalyzerError, match="does not exist"):
        read_csv(tmp_path / "nothing.csv", MODEL_COLUMNS)


def test_read_csv_names_the_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / MODEL_CSV
    path.write_text("model,batch_size,concurrency\nm,1,1\n")
    with pytest.raises(AnalyzerError, match="lacks the columns") as info:
        read_csv(path, MODEL_COLUMNS)
    message = str(info.value)
    assert str(path) in message
    assert "status" in message and "latency_p99_ms" in message
    assert "batch_size," not in message  # columns that are there are not listed


def test_read_csv_keeps_a_name_that_itself_starts_with_quote_then_formula_char(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, [model_row("'=x")]), MODEL_COLUMNS)
    assert df.loc[0, "model"] == "'=x"


def test_read_csv_refuses_a_truncated_row(tmp_path: Path) -> None:
    path = write(tmp_path / MODEL_CSV, [model_row()])
    path.write_text(path.read_text() + "mlp_numpy,1,4\n")
    with pytest.raises(AnalyzerError):
        read_csv(path, MODEL_COLUMNS)


def test_read_csv_keeps_a_name_with_a_lone_carriage_return(tmp_path: Path) -> None:
    df = read_csv(write(tmp_path / MODEL_CSV, [model_row("a\rb", batch_size=3)]), MODEL_COLUMNS)
    assert list(df["model"]) == ["a\rb"]
    assert list(df["batch_size"]) == [3]


# -- write_atomic --------------------------------------------------------------------------------


def test_write_atomic_creates_parents_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.csv"
    write_atomic(path, "x,y\n1,2\n")
    assert path.read_text() == "x,y\n1,2\n"
    assert os.listdir(path.parent) == ["out.csv"]


def test_write_atomic_replaces_the_file_rather_than_rewriting_it(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_atomic(path, "old\n")
    reader = open(path)  # a reader holding the old file still sees the old contents
    try:
        old_inode = os.stat(path).st_ino
        write_atomic(path, "new\n")
        assert os.stat(path).st_ino != old_inode
        assert path.read_text() == "new\n"
        assert reader.read() == "old\n"
    finally:
        reader.close()
    assert os.listdir(tmp_path) == ["out.csv"]


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "bad \udc80 surrogate\n")  # cannot be encoded: fails mid-write
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_write_atomic_does_not_translate_newlines(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write_atomic(path, "a\r\nb\n")
    assert path.read_bytes() == b"a\r\nb\n"


# -- the rows an export folder appends / SweepResult / load_results ----------------------------


def test_export_folder_starts_both_files_with_headers(tmp_path: Path) -> None:
    started(tmp_path / "run").close()
    assert (tmp_path / "run" / MODEL_CSV).read_text() == ",".join(c.name for c in MODEL_COLUMNS) + "\n"
    assert (tmp_path / "run" / SERVER_CSV).read_text() == ",".join(c.name for c in SERVER_COLUMNS) + "\n"


@pytest.mark.parametrize("existing", [MODEL_CSV, SERVER_CSV])
def test_export_folder_refuses_to_overwrite_naming_the_file(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious\n")
    with pytest.raises(AnalyzerError, match="already exist") as info:
        started(tmp_path)
    assert str(tmp_path / existing) in str(info.value)
    assert "overwrite" in str(info.value)
    assert (tmp_path / existing).read_text() == "precious\n"


def test_export_folder_overwrites_when_allowed(tmp_path: Path) -> None:
    first = started(tmp_path)
    first.add_point(model_row())
    first.close()
    started(tmp_path, overwrite=True).close()
    model, server = load_results(tmp_path)
    assert model.empty and server.empty


def test_rows_appended_by_the_folder_load_back_equal_to_the_result_frame(tmp_path: Path) -> None:
    rows = awkward_rows()
    folder = started(tmp_path / "run")
    for row in rows:
        folder.add_point(row)
    folder.add_baseline(server_row(server_version="=2.50"))
    folder.close()
    result = SweepResult(SweepSpec(models=("m",), model_repository=tmp_path), rows=rows, baseline_row=server_row(
        server_version="=2.50"))

    model, server = load_results(tmp_path / "run")
    pd.testing.assert_frame_equal(model, result.to_frame())
    pd.testing.assert_frame_equal(server, result.baseline)
    assert len(model) == len(AWKWARD_NAMES)


def test_the_model_file_is_readable_after_each_row(tmp_path: Path) -> None:
    folder = started(tmp_path)
    for i in range(1, 4):
        folder.add_point(model_row(batch_size=i))
        assert list(load_results(tmp_path)[0]["batch_size"]) == list(range(1, i + 1))
    folder.close()


def test_sweep_result_export_loads_back_equal(tmp_path: Path) -> None:
    rows = awkward_rows()
    result = SweepResult(SPEC, rows=rows, baseline_row=server_row())
    paths = result.export(tmp_path / "export")
    assert [p.name for p in paths] == [MODEL_CSV, SERVER_CSV, SAMPLES_CSV]
    model, server = load_results(tmp_path / "export")
    pd.testing.assert_frame_equal(model, result.to_frame())
    pd.testing.assert_frame_equal(server, result.baseline)


def test_frame_has_schema_columns_and_dtypes(tmp_path: Path) -> None:
    df = SweepResult(SweepSpec(models=("m",), model_repository=tmp_path), rows=[model_row()]).to_frame()
    assert list(df.columns) == [c.name for c in MODEL_COLUMNS]
    for c in MODEL_COLUMNS:
        if c.kind == "int":
            assert df[c.name].dtype == "int64", c.name
        elif c.kind == "float":
            assert df[c.name].dtype == "float64", c.name
        else:
            assert pd.api.types.is_string_dtype(df[c.name]), c.name


def test_sweep_result_ok_is_false_when_a_point_failed(tmp_path: Path) -> None:
    spec = SweepSpec(models=("m",), model_repository=tmp_path)
    assert SweepResult(spec, rows=[model_row()]).ok
    assert not SweepResult(spec, rows=[model_row(), model_row(status=Status.FAILED.value)]).ok
    assert not SweepResult(spec, rows=[model_row()], cancelled=True).ok


def test_empty_row_fills_every_column_by_kind() -> None:
    row = empty_row(MODEL_COLUMNS)
    assert set(row) == {c.name for c in MODEL_COLUMNS}
    assert row["model"] == "" and row["batch_size"] == 0 and math.isnan(row["latency_p99_ms"])


def test_read_csv_leaves_out_a_last_row_cut_off_mid_write_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path / MODEL_CSV, [model_row("first"), model_row("second")])
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 10])  # the writer died inside the last line
    with pytest.warns(UserWarning, match="incomplete"):
        df = read_csv(path, MODEL_COLUMNS)
    assert list(df["model"]) == ["first"]


def test_the_outcome_line_never_says_done_when_nothing_was_measured() -> None:
    from analyzer_widgets.results import outcome

    skipped = [model_row(status="skipped", reason="batch size 128 is above the model's max_batch_size 64")] * 2
    line = outcome(skipped, 7.2)
    assert line.startswith("Nothing was measured: 2 skipped (batch size 128 is above") and "Done" not in line
    failed = [model_row(status="failed", reason="every request failed: 3x boom")]
    assert outcome(failed, 1.0) == "Nothing was measured: 1 failed (every request failed: 3x boom)."
    mixed = [model_row(status="ok"), model_row(status="unstable"), *skipped[:1]]
    assert outcome(mixed, 12.4) == ("Done: 3 points in 12 s: 2 measured; 1 unstable; "
                                    "1 skipped (batch size 128 is above the model's max_batch_size 64).")
    assert outcome([model_row(status="ok")] * 2, 5.0) == "Done: 2 points in 5 s."
