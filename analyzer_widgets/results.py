"""Rows, DataFrames and CSV text.

The columns are declared once, in :mod:`analyzer_widgets.schema`; the CSV header, the
DataFrame and the docs all read those tables. Which files a sweep writes, where and when
is :mod:`analyzer_widgets.export`'s business.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd

from analyzer_widgets import events
from analyzer_widgets.config import SweepSpec
from analyzer_widgets.errors import AnalyzerError
from analyzer_widgets.monitor.session import SAMPLE_TAGS
from analyzer_widgets.schema import MODEL_COLUMNS, SERVER_COLUMNS, Column, Status

if TYPE_CHECKING:  # the export folder's module imports this one
    from analyzer_widgets.export import ExportFolder


def frame(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> pd.DataFrame:
    """A DataFrame with exactly ``columns``, in order, with one dtype per column kind."""
    df = pd.DataFrame([{c.name: r.get(c.name) for c in columns} for r in rows], columns=[c.name for c in columns])
    for c in columns:
        if c.kind == "int":
            df[c.name] = pd.to_numeric(df[c.name]).fillna(0).astype("int64")
        elif c.kind == "float":
            df[c.name] = pd.to_numeric(df[c.name]).astype("float64")
        elif c.kind == "bool":
            df[c.name] = df[c.name].map(lambda v: v is True or v == 1).astype(bool)  # missing: false
        else:
            df[c.name] = df[c.name].fillna("").astype(str)
    return df


# -- CSV -----------------------------------------------------------------------------------
# A spreadsheet runs a cell that starts like a formula; such cells get a leading quote.
# Cells that already start with a quote get one too, so reading back is exact.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_GUARDED_START = (*_FORMULA_START, "'")


def _cell(value: Any, kind: str) -> str:
    if kind == "str":
        text = "" if value is None else str(value)
        return "'" + text if text.startswith(_GUARDED_START) else text
    if kind == "bool":
        return "true" if value else "false"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if kind == "float":
        return repr(float(value))
    return str(int(value))


def _uncell(text: str, kind: str) -> Any:
    if kind == "str":
        return text[1:] if text.startswith("'") and text[1:].startswith(_GUARDED_START) else text
    if kind == "bool":
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if text == "":
        return math.nan if kind == "float" else 0
    return float(text) if kind == "float" else int(text)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], header: bool = True) -> str:
    out = io.StringIO()
    # RFC 4180 line ends: the writer then quotes any cell holding \r or \n
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow([c.name for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c.name), c.kind) for c in columns])
    return out.getvalue()


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[TextIO]:
    """A text file that takes ``path``'s place, synced, when the block ends without an
    error (a reader sees the old file or the new one, never half); on an error it is
    removed and ``path`` left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file so a reader sees the old one or the new one, never half."""
    with replacing(path) as f:
        f.write(text)


def read_csv(path: Path | str, columns: Sequence[Column]) -> pd.DataFrame:
    """Read a file this module wrote back into the DataFrame it came from.

    A last line without its line end was cut off by a crash mid-append: it is left out
    with a warning. Any other malformed row is an error."""
    path = Path(path)
    if not path.is_file():
        raise AnalyzerError(f"results file {str(path)!r} does not exist")
    with open(path, newline="", encoding="utf-8") as f:  # keep \r\n inside quoted cells
        text = f.read()
    if not text.strip():
        raise AnalyzerError(f"results file {str(path)!r} is empty")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    missing = [c.name for c in columns if c.name not in header]
    if missing:
        raise AnalyzerError(f"results file {str(path)!r} lacks the columns {', '.join(missing)}")
    if body and not text.endswith("\n"):
        warnings.warn(f"{path}: the last row is incomplete (its writer was interrupted) and was left out",
                      stacklevel=2)
        body = body[:-1]
    kinds = {c.name: c.kind for c in columns}
    records = []
    for number, cells in enumerate(body, start=2):
        if len(cells) != len(header):
            raise AnalyzerError(f"results file {str(path)!r}: row {number} has {len(cells)} fields, "
                                f"expected {len(header)}; the file is damaged")
        try:
            records.append({name: _uncell(cell, kinds[name]) for name, cell in zip(header, cells, strict=True) if name in kinds})
        except ValueError as e:
            raise AnalyzerError(f"results file {str(path)!r}: row {number} holds a bad value ({e})") from e
    return frame(records, columns)


@dataclass
class RunResult:
    """What one run on a server measured (a sweep, or models measured together): its rows,
    the baseline, how it ended and its samples; each kind says how its rows make a frame."""

    spec: SweepSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    baseline_row: dict[str, Any] | None = None
    server_version: str = ""
    export_path: Path | None = None
    cancelled: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: why some columns are NaN, by sampler or metric
    unavailable: dict[str, str] = field(default_factory=dict)
    _samples: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)
    _samples_file: Path | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def samples(self) -> pd.DataFrame:
        """Every monitor sample (NVML, host, Triton /metrics), tagged with its phase and
        point; empty until the sweep ends. With an export folder they are read from its
        ``metrics-samples.csv`` when first asked for (the earlier runs' of a resumed sweep
        too, as its rows are), so a long sweep never holds them all in memory; without one
        they are kept in memory as the sweep goes."""
        if self._samples is None:
            self._samples = read_samples(self._samples_file) if self._samples_file is not None else pd.DataFrame()
        return self._samples

    @samples.setter
    def samples(self, frame: pd.DataFrame) -> None:
        self._samples, self._samples_file = frame, None

    def samples_from(self, path: Path) -> None:
        """Read :attr:`samples` from ``path`` (a samples file) when first asked for."""
        self._samples, self._samples_file = None, Path(path)

    @property
    def baseline(self) -> pd.DataFrame:
        return frame([self.baseline_row] if self.baseline_row else [], SERVER_COLUMNS)

    @property
    def ok(self) -> bool:
        """True when the run went to its end and no row failed."""
        return not self.cancelled and self.error is None and all(r["status"] != Status.FAILED for r in self.rows)


@dataclass
class SweepResult(RunResult):
    """What a sweep measured. ``to_frame()`` gives one row per point; ``baseline`` the
    server with no models loaded.

    >>> result = analyzer_widgets.profile(...)  # doctest: +SKIP
    >>> result.to_frame()[["model", "batch_size", "throughput_infer_per_s"]]  # doctest: +SKIP
    """

    def to_frame(self) -> pd.DataFrame:
        return frame(self.rows, MODEL_COLUMNS)

    def export(self, directory: Path | str, overwrite: bool = True) -> list[Path]:
        """Write the CSV files (atomically) to ``directory``; returns their paths. The
        folder is checked and locked as for a sweep (:meth:`ExportFolder.save`)."""
        from analyzer_widgets.export import ExportFolder  # it imports this module

        return ExportFolder.save(self, directory, overwrite=overwrite)


def samples_csv_text(samples: pd.DataFrame, header: bool = True) -> str:
    """The samples table as CSV (numbers and our own phase names only: nothing to guard
    but the model's name)."""
    if samples.empty:
        return ",".join(samples.columns if len(samples.columns) else SAMPLE_TAGS) + "\r\n" if header else ""
    out = samples.copy()
    out["model"] = out["model"].map(lambda v: _cell(v, "str"))
    return out.to_csv(index=False, header=header, lineterminator="\r\n")


def joined_samples(chunks: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Chunks of samples (:class:`~analyzer_widgets.events.SamplesTaken`) as one table, in
    the columns of the last chunk (every chunk's columns come first in it)."""
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True)[list(chunks[-1].columns)]


def whole_lines_end(path: Path) -> int:
    """The size of ``path`` up to the end of its last whole line: a write cut off by a
    crash leaves a last line without its line end."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


def csv_header(path: Path) -> list[str]:
    """The names in the first line of a CSV file ([] when it has none)."""
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def rewrite_columns(path: Path, columns: Sequence[str]) -> None:
    """Rewrite a CSV file with ``columns``, which hold its own and more: each row's cells
    are copied as they are, an empty cell where the row has no column. Streams, so a long
    file costs no memory; atomic, as :func:`write_atomic`."""
    with open(path, newline="", encoding="utf-8") as source, replacing(path) as target:
        reader = csv.reader(source)
        old = next(reader, [])
        where = [old.index(c) if c in old else None for c in columns]
        writer = csv.writer(target, lineterminator="\r\n")
        writer.writerow(columns)
        for number, cells in enumerate(reader, start=2):
            if len(cells) != len(old):
                raise AnalyzerError(f"samples file {str(path)!r}: row {number} has {len(cells)} fields, "
                                    f"expected {len(old)}; the file is damaged")
            writer.writerow(["" if i is None else cells[i] for i in where])


def read_samples(path: Path) -> pd.DataFrame:
    """Read what :func:`samples_csv_text` wrote back into a DataFrame. A last line without
    its line end (its writer was killed mid-write) is left out with a warning."""
    text_columns = ("source", "phase", "model")
    end = whole_lines_end(path)
    source: Path | io.BytesIO = path
    if end < path.stat().st_size:
        warnings.warn(f"{path}: the last line is incomplete (its writer was interrupted) and was left out",
                      stacklevel=2)
        with open(path, "rb") as f:
            source = io.BytesIO(f.read(end))
    header = pd.read_csv(source, nrows=0).columns
    if isinstance(source, io.BytesIO):
        source.seek(0)
    # round_trip: the figures as they were measured, not the fast parser's nearest guess
    df = pd.read_csv(source, keep_default_na=False, dtype={c: str for c in text_columns if c in header},
                     na_values={c: [""] for c in header if c not in text_columns}, float_precision="round_trip")
    df["model"] = df["model"].map(lambda v: _uncell(v, "str"))
    return df


class ResultCollector:
    """An event handler that builds the :class:`SweepResult` as the runner goes and, with an
    export folder, appends every finished row to it at once; the folder is closed (its lock
    released) when the sweep ends."""

    def __init__(self, spec: SweepSpec, folder: ExportFolder | None = None) -> None:
        self.result = SweepResult(spec, export_path=folder.directory if folder else None)
        self.folder = folder
        # samples not on disk: all of them without an export folder (the result holds them);
        # with one, those taken before its files were started (the server not known yet)
        self._samples: list[pd.DataFrame] = []

    def keep(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Start from these rows (a resumed sweep's earlier ones)."""
        self.result.rows[:] = [dict(r) for r in rows]

    def close(self) -> None:
        """Release the export folder; harmless when done already. Whoever runs the runner
        calls it too, in case the sweep never started."""
        if self.folder is not None:
            self.folder.close()

    def __call__(self, event: object) -> None:
        result = self.result
        if isinstance(event, events.ServerReady):
            result.server_version = event.server_version
        elif isinstance(event, events.BaselineFinished):
            result.baseline_row = dict(event.row)
            if self.folder:
                self.folder.add_baseline(event.row)
        elif isinstance(event, events.PointFinished):
            result.rows.append(dict(event.row))
            if self.folder:
                self.folder.add_point(event.row)
        elif isinstance(event, events.SamplesTaken):
            self._samples.append(event.samples)
            self._write_samples()
        elif isinstance(event, events.Notice) and event.level is not events.Level.PROGRESS:
            result.warnings.append(event.message)
        elif isinstance(event, events.SweepFinished):
            result.cancelled = event.cancelled
            result.error = event.error
            result.unavailable = dict(event.unavailable)
            try:
                self._write_samples()
                if self.folder is not None and self.folder.started:
                    result.samples_from(self.folder.samples_path)
                else:  # no folder, or a run that ended before its files were started
                    result.samples = joined_samples(self._samples)
                self._samples = []
            finally:
                self.close()

    def _write_samples(self) -> None:
        """Append the samples held to the export folder's samples file, once it is started."""
        if self.folder is not None and self.folder.started:
            while self._samples:
                self.folder.add_samples(self._samples[0])
                del self._samples[0]


def outcome(rows: Sequence[Mapping[str, Any]], elapsed_s: float) -> str:
    """One line on how a finished sweep went, for the status line and the CLI. It never says
    "Done" when nothing was measured: it counts what was skipped or failed, and says why."""
    counts = Counter(str(r["status"]) for r in rows)
    measured = counts[Status.OK.value] + counts[Status.UNSTABLE.value]
    others = []
    for status in (Status.UNSTABLE, Status.SKIPPED, Status.FAILED):
        if counts[status.value]:
            first = next(str(r["reason"]) for r in rows if r["status"] == status.value)
            why = f" ({first})" if status is not Status.UNSTABLE and first else ""
            others.append(f"{counts[status.value]} {status.value}{why}")
    tail = "; ".join(others)
    if measured == 0:
        return f"Nothing was measured: {tail or 'no points ran'}."
    head = f"Done: {len(rows)} points in {elapsed_s:.0f} s"
    return f"{head}: {measured} measured; {tail}." if tail else f"{head}."
