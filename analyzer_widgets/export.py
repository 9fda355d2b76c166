"""The export folder: the one owner of what a run keeps on disk.

A folder of results holds, for one sweep:

- ``metrics-model.csv``: one row per point, each appended (flushed, fsynced) as it
  finishes, so a crash loses at most the point in flight; or, for models measured
  together (colocation.py), ``metrics-colocated.csv``: a row per model per co-located
  point, appended the same way;
- ``metrics-server-only.csv``: the baseline of each run, the server with no models;
- ``metrics-samples.csv``: every monitor sample, appended every few seconds as the sweep
  goes (whole lines, flushed and fsynced; a resumed sweep's after the earlier runs');
- ``sweep.json``: what the rows were measured with (spec, model files, server version,
  GPUs), so a resumed sweep skips what it measured before only when all of it still matches;
- ``tritonserver.log``: the server's whole log (a resumed run's is ``tritonserver-<time>.log``,
  so the earlier run's log is kept, not overwritten);
- ``.analyzer-widgets.lock`` while a run writes there.

Nothing outside this module knows these names or the order they are written in. A run
goes through :class:`ExportFolder`::

    folder = ExportFolder(export, spec)  # the path checked; nothing touched yet
    folder.open()                        # locked for the run; a resume planned or refused
    folder.server_known(version, gpus)   # the server/GPU check, then the CSV files started
    folder.add_baseline(row); folder.add_point(row); folder.add_samples(chunk); ...
    folder.close()                       # the lock released, also after an error

and :meth:`ExportFolder.save` writes a finished :class:`SweepResult` whole (the panel's
Export CSV), under the same checks and lock. Whole files are replaced atomically (temp
file, fsync, ``os.replace``); an empty or damaged ``sweep.json`` is an error, never a guess.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from analyzer_widgets.config import ExportSettings, LaunchMode, SweepSpec, file_digest, fingerprint
from analyzer_widgets.errors import AnalyzerError, ConfigError, ResumeError
from analyzer_widgets.monitor.session import SAMPLE_TAGS
from analyzer_widgets.results import (
    SweepResult,
    csv_header,
    csv_text,
    read_csv,
    read_samples,
    rewrite_columns,
    samples_csv_text,
    whole_lines_end,
    write_atomic,
)
from analyzer_widgets.schema import (
    COLOCATED_COLUMNS,
    MODEL_COLUMNS,
    SERVER_COLUMNS,
    Column,
    PointKey,
    Status,
    point_key,
)

MODEL_CSV = "metrics-model.csv"
COLOCATED_CSV = "metrics-colocated.csv"
#: the files a run's rows go to, each with its columns: a sweep's points, or models measured
#: together; a run writes one of them, and the other, left by an earlier run, goes
ROW_FILES: dict[str, tuple[Column, ...]] = {MODEL_CSV: MODEL_COLUMNS, COLOCATED_CSV: COLOCATED_COLUMNS}
SERVER_CSV = "metrics-server-only.csv"
SAMPLES_CSV = "metrics-samples.csv"
#: the CSV files of a sweep, in the order they are listed to the user
CSV_FILES = (MODEL_CSV, SERVER_CSV, SAMPLES_CSV)
#: a plan's answer, written when it ends (planning/planner.py's ``files``)
PLAN_FILES = ("plan.csv", "plan.json", "config.pbtxt")
MANIFEST = "sweep.json"
LOCK = ".analyzer-widgets.lock"
_LOG_STEM = "tritonserver"
FORMAT = 2  # of sweep.json; 2: the fingerprint is every setting declared with fingerprint=True, by name
#: rows a resumed sweep keeps; a failed point is measured again
KEPT_STATUSES = (Status.OK.value, Status.UNSTABLE.value, Status.SKIPPED.value)


class ResultsExist(ConfigError):
    """Results are in the export folder already and overwriting was not asked for.
    ``existing`` names the files, so a front end can say it in its own words (the panel
    has an Overwrite box, the CLI a flag)."""

    def __init__(self, directory: Path, existing: list[Path]) -> None:
        self.directory = directory
        self.existing = existing
        super().__init__("export_path", str(directory),
                         f"{', '.join(str(p) for p in existing)} already exist; choose another export path "
                         "or allow overwriting (--overwrite, overwrite=True)")


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


# -- reading a folder back ---------------------------------------------------------------------
def load_results(directory: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``metrics-model.csv`` and ``metrics-server-only.csv`` back as DataFrames."""
    directory = Path(directory)
    return read_csv(directory / MODEL_CSV, MODEL_COLUMNS), read_csv(directory / SERVER_CSV, SERVER_COLUMNS)


def load_colocated(directory: Path | str) -> pd.DataFrame:
    """Read ``metrics-colocated.csv`` back as a DataFrame."""
    return read_csv(Path(directory) / COLOCATED_CSV, COLOCATED_COLUMNS)


def load_samples(directory: Path | str) -> pd.DataFrame:
    """Read ``metrics-samples.csv`` back."""
    path = Path(directory) / SAMPLES_CSV
    if not path.is_file():
        raise AnalyzerError(f"samples file {str(path)!r} does not exist")
    return read_samples(path)


# -- the path, checked before anything starts ---------------------------------------------------
def check_path(directory: Path, spec: SweepSpec | None = None) -> None:
    """Refuse, naming ``export_path``, a folder results cannot or must not go to: a file, a
    folder this process may not write (or may not make), a folder inside the model
    repository. Looks only; touches nothing."""
    directory = Path(directory)
    shown = str(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError("export_path", shown, "is a file, not a folder: give a folder for the results")
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("export_path", shown, f"cannot be made: {existing} is a file, not a folder")
    # os.access answers for this process (root included: a read-only mount, or /proc, says no)
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == directory else f"cannot be made: {existing} is not writable"
        raise ConfigError("export_path", shown, f"{what} by this process; choose a folder you may write to")
    if spec is not None and spec.model_repository is not None and spec.server.launch_mode is not LaunchMode.REMOTE:
        repository = Path(spec.model_repository).resolve()
        if directory.resolve().is_relative_to(repository):
            raise ConfigError("export_path", shown, f"is inside the model repository {repository}: the server "
                                                    "would take the results for a model and its files would mix "
                                                    "with them; choose a folder outside it")


# -- the lock ------------------------------------------------------------------------------------
def _me() -> dict[str, Any]:
    """Who holds a lock: this process's pid, command line and start time."""
    import psutil

    try:
        proc = psutil.Process()
        command, started = " ".join(proc.cmdline()), proc.create_time()
    except psutil.Error:
        command, started = "", 0.0
    return {"pid": os.getpid(), "command": command, "started": started}


def _describe(holder: Mapping[str, Any]) -> str:
    pid = holder.get("pid")
    text = "this process" if pid == os.getpid() else "process"
    text += f" {pid}"
    command = " ".join(str(holder.get("command") or "").split())  # a `python -c` script spans lines
    if command:
        text += f" ({command[:200]}{'...' if len(command) > 200 else ''})"
    started = holder.get("started")
    if isinstance(started, int | float) and started > 0:
        text += f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
    return text


def _read_holder(path: Path, wait_s: float = 0.5) -> dict[str, Any] | None:
    """What a lock file says; its holder may be writing it just now, so wait a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "pid" in data:
                return data
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


class _Lock:
    """``flock`` on a file in the folder: the OS releases it when its holder dies, so a
    lock left by a killed run is free; the holder's pid inside names it to the next run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK
        self._file: IO[str] | None = None

    def acquire(self) -> str | None:
        """Take the lock or refuse naming its holder; a note when a stale one was taken over."""
        for _ in range(20):
            f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                holder = _read_holder(self.path)
                who = _describe(holder) if holder else "another process (it has not written its pid yet)"
                raise ConfigError("export_path", str(self.directory),
                                  f"is in use by another run: {who} holds {self.path}. Wait for it to end "
                                  "(or stop it), or choose another folder") from None
            except OSError as e:  # a file system without flock: go on, saying what is not guarded
                f.close()
                return f"{self.directory} could not be locked ({e}); a second run on it would not be noticed"
            # The holder before us removes the file as it lets go: if we opened that file just
            # before, our lock is on a name nobody else sees; open the name again.
            try:
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                f.close()
                continue
            f.seek(0)
            left = f.read()
            f.seek(0)
            f.truncate()
            f.write(json.dumps(_me()) + "\n")
            f.flush()
            self._file = f
            if not left.strip():
                return None
            try:
                earlier = json.loads(left)
                who = _describe(earlier) if isinstance(earlier, dict) else "an earlier run"
            except ValueError:
                who = "an earlier run"
            return f"took over the lock on {self.directory} left by {who}, which no longer holds it (killed, or crashed)"
        raise AnalyzerError(f"{self.path} kept changing while it was being locked; try again")

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                self.path.unlink()  # removed while still held: see acquire
        except FileNotFoundError:
            pass
        finally:
            f.close()


# -- sweep.json ------------------------------------------------------------------------------------
def model_digest(repository: Path, model: str) -> str:
    """A digest of every file of one model (names and contents), caches left out."""
    root = Path(repository) / model
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(file_digest(path).encode() + b"\0")
    return h.hexdigest()


@dataclass
class Manifest:
    """The contents of ``sweep.json``: what a folder's rows were measured with."""

    spec: dict[str, Any]
    model_files: dict[str, str]  # model -> digest ("" where the repository is not ours to read)
    server_version: str = ""
    gpus: list[str] = field(default_factory=list)  # UUIDs, in NVML's order
    created_at: str = ""
    format: int = FORMAT

    @classmethod
    def for_spec(cls, spec: SweepSpec, run: Mapping[str, Any] | None = None) -> Manifest:
        """``run``: what else shapes the rows, beside the sweep's settings (a plan says it
        is one, and how it measures each variant); a sweep's adds nothing, so its
        manifest reads as before."""
        repo = spec.model_repository
        digests = {m: (model_digest(repo, m) if repo is not None and (repo / m).is_dir() else "") for m in spec.models}
        return cls(spec={**fingerprint(spec), **(run or {})}, model_files=digests,
                   created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def save(self, directory: Path) -> None:
        write_atomic(Path(directory) / MANIFEST, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = Path(directory) / MANIFEST
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ResumeError(f"cannot read {path}: {e}") from e
        if not text.strip():
            raise ResumeError(f"{path} is empty, so what these results were measured with is unknown; "
                              "nothing was reused. Export to a new directory, or use --overwrite")
        try:
            data = json.loads(text)
            manifest = cls(**{k: data[k] for k in ("spec", "model_files", "server_version", "gpus", "created_at", "format")})
        except (ValueError, KeyError, TypeError) as e:
            raise ResumeError(f"{path} is damaged ({type(e).__name__}: {e}); nothing was reused. "
                              "Export to a new directory, or use --overwrite") from e
        if manifest.format != FORMAT:
            raise ResumeError(f"{path} has format {manifest.format!r}; this version reads format {FORMAT}")
        return manifest

    def spec_differences(self, other: Manifest) -> list[str]:
        """What differs in the spec and the model files, in words."""
        changes = []
        for key in sorted(set(self.spec) | set(other.spec)):
            before, after = self.spec.get(key), other.spec.get(key)
            if before != after:
                changes.append(f"{key}: {before!r} then, {after!r} now")
        for model in sorted(set(self.model_files) | set(other.model_files)):
            before, after = self.model_files.get(model), other.model_files.get(model)
            if before is not None and after is not None and before != after:
                changes.append(f"the files of model {model!r} changed")
        return changes

    def server_differences(self, server_version: str, gpus: list[str]) -> list[str]:
        changes = []
        # an empty version now: no server started (a split run whose every unit failed first)
        if self.server_version and server_version and server_version != self.server_version:
            changes.append(f"server version: {self.server_version!r} then, {server_version!r} now")
        if self.server_version and server_version and list(gpus) != list(self.gpus):
            changes.append(f"GPUs: {self.gpus or 'none'} then, {list(gpus) or 'none'} now")
        return changes


def _refusal(directory: Path, changes: list[str]) -> str:
    return (f"cannot resume the sweep in {directory}: " + "; ".join(changes) + ". Its rows would be mixed "
            "with figures measured differently. Keep them apart (--keep-apart, keep_apart=True: moved "
            "into previous-<time>/), export to a new directory, or --overwrite")


# -- the folder ------------------------------------------------------------------------------------
class ExportFolder:
    """The folder one run writes its results to, from the check before launch to the last
    row. Give it the run's :class:`~analyzer_widgets.config.ExportSettings` and spec; see
    the module's docstring for the order of the calls.

    >>> folder = ExportFolder(ExportSettings(export_path="results"), spec)  # doctest: +SKIP
    >>> with folder:  # doctest: +SKIP
    ...     folder.server_known("2.51.0", gpu_uuids)
    ...     folder.add_point(row)
    """

    def __init__(self, export: ExportSettings, spec: SweepSpec, run: Mapping[str, Any] | None = None,
                 rows_file: str = MODEL_CSV) -> None:
        if export.directory is None:
            raise ValueError("these export settings write no files: there is no folder")
        if rows_file not in ROW_FILES:
            raise ValueError(f"rows go to one of {', '.join(ROW_FILES)}, not {rows_file!r}")
        if rows_file != MODEL_CSV and export.resume:
            raise ConfigError("resume", export.resume, f"applies to a sweep: {rows_file} is written whole by one run")
        #: where the rows go, and their columns
        self.rows_file, self.row_columns = rows_file, ROW_FILES[rows_file]
        self.directory: Path = export.directory
        self.spec = spec
        self.run = dict(run or {})  # Manifest.for_spec's: a plan's facts beside the settings
        self.settings = export
        check_path(self.directory, spec)
        #: where the server's log goes: beside the rows it produced, never over an earlier run's
        self.server_log = self.directory / f"{_LOG_STEM}.log"
        if export.resume and self.server_log.exists():
            self.server_log = self.directory / f"{_LOG_STEM}-{_utc_stamp()}.log"
        #: said to the user before the sweep starts: what a resume keeps, a lock taken over
        self.notes: list[str] = []
        #: the earlier rows a resumed sweep keeps (final once :meth:`server_known` returns)
        self.kept_rows: list[dict[str, Any]] = []
        #: their points, which the runner skips (the same set throughout: the runner holds it)
        self.done: set[PointKey] = set()
        self._lock = _Lock(self.directory)
        self._made = False
        self._resumed = False
        self._manifest: Manifest | None = None
        self._previous: Manifest | None = None  # the earlier run's, for the server and GPU check
        self._started = False
        self._samples_header: list[str] = []  # metrics-samples.csv's columns, as its first line has them
        self._earlier_columns: list[str] = []  # those of the earlier runs' samples a resumed sweep adds to

    # -- before the launch
    def open(self) -> ExportFolder:
        """Take the folder for this run: made if missing, locked (refused while another run
        holds it), and what a resume keeps decided (refused for a changed spec or damaged
        files, or the earlier results moved apart). Raises before anything is launched."""
        self._take()
        try:
            if self.settings.resume:
                self._plan_resume()
            else:
                self._refuse_existing()
                self._manifest = Manifest.for_spec(self.spec, self.run)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> ExportFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> None:
        if not self.directory.exists():
            try:
                self.directory.mkdir(parents=True)
                self._made = True
            except FileExistsError:
                pass
            except OSError as e:
                raise ConfigError("export_path", str(self.directory), f"cannot be made: {e}") from e
        try:
            note = self._lock.acquire()
        except OSError as e:
            raise ConfigError("export_path", str(self.directory), f"cannot be locked for this run: {e}") from e
        if note:
            self.notes.append(note)

    def _refuse_existing(self) -> None:
        existing = [self.directory / name for name in (*CSV_FILES, COLOCATED_CSV, *PLAN_FILES)
                    if (self.directory / name).exists()]
        if existing and not self.settings.overwrite:
            raise ResultsExist(self.directory, existing)

    def _plan_resume(self) -> None:
        directory = self.directory
        current = Manifest.for_spec(self.spec, self.run)
        self._manifest = current
        self._resumed = True
        if not (directory / MANIFEST).exists():
            present = [n for n in (MODEL_CSV, SERVER_CSV) if (directory / n).exists()]
            if present:
                raise ResumeError(f"{directory} holds results ({', '.join(present)}) but no {MANIFEST}, so what "
                                  "they were measured with is unknown; nothing was reused. Export to a new "
                                  "directory, or --overwrite")
            return
        previous = Manifest.load(directory)
        changes = previous.spec_differences(current)
        if changes:
            if not self.settings.keep_apart:
                raise ResumeError(_refusal(directory, changes))
            moved = self._move_apart()
            self._resumed = False
            self.notes.append(f"earlier results moved to {moved} ({'; '.join(changes)})")
            return
        if (directory / MODEL_CSV).exists():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rows = read_csv(directory / MODEL_CSV, MODEL_COLUMNS)  # damaged rows: an error, not a guess
            self.notes += [str(w.message) for w in caught]
            records = [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
            self.kept_rows = [r for r in records if r["status"] in KEPT_STATUSES]
            again = len(records) - len(self.kept_rows)
            if again:
                self.notes.append(f"{again} point(s) that failed before will be measured again")
            self.done.update(point_key(r) for r in self.kept_rows)
        # the earlier run's server and GPUs are kept until the server check
        current.created_at = previous.created_at
        current.server_version, current.gpus = previous.server_version, list(previous.gpus)
        self._previous = previous

    def _move_apart(self) -> Path:
        """Move earlier results (this run's log excepted) into ``previous-<UTC time>/``."""
        target = self.directory / f"previous-{_utc_stamp()}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
        target.mkdir(parents=True)
        logs = [p.name for p in self.directory.glob(f"{_LOG_STEM}*.log") if p != self.server_log]
        for name in (MANIFEST, *CSV_FILES, COLOCATED_CSV, *PLAN_FILES, *logs):
            source = self.directory / name
            if source.exists():
                source.replace(target / name)
        return target

    # -- once the server is up
    def server_known(self, server_version: str, gpus: list[str]) -> list[str]:
        """Refuse (or move apart) results measured on another server version or other GPUs,
        record this run's in ``sweep.json`` and start the CSV files; returns notes for the
        user. Nothing is written before this, so a refused resume leaves the folder as it was."""
        if self._manifest is None:
            raise AnalyzerError("the export folder is not open")
        notes = []
        if self._previous is not None:
            changes = self._previous.server_differences(server_version, gpus)
            if changes:
                if not self.settings.keep_apart:
                    raise ResumeError(_refusal(self.directory, changes))
                moved = self._move_apart()
                self.kept_rows = []
                self.done.clear()
                self._resumed = False
                notes.append(f"earlier results moved to {moved} ({'; '.join(changes)}); starting over")
        self._manifest.server_version = server_version or (self._previous.server_version if self._previous else "")
        self._manifest.gpus = list(gpus)
        self._manifest.save(self.directory)
        # an earlier plan's answer does not describe this run's rows (overwritten, or a
        # resume that measures more): it goes, and this run writes its own when it ends
        for name in PLAN_FILES:
            (self.directory / name).unlink(missing_ok=True)
        # the kept rows are written again, atomically: a row cut off by a crash, or a failed
        # point to measure again, goes
        write_atomic(self.directory / self.rows_file, csv_text(self.kept_rows, self.row_columns))
        for name in ROW_FILES:
            if name != self.rows_file and not self._resumed:
                (self.directory / name).unlink(missing_ok=True)  # an earlier run's rows of the other kind
        if not (self._resumed and (self.directory / SERVER_CSV).is_file()):
            write_atomic(self.directory / SERVER_CSV, csv_text([], SERVER_COLUMNS))
        notes += self._start_samples()
        self._started = True
        return notes

    def _start_samples(self) -> list[str]:
        """Start the samples file, or with a resume take up the earlier runs': a last line
        cut off by a crash goes, so the next one starts on a line of its own."""
        path = self.samples_path
        self._earlier_columns = []
        if self._resumed and path.is_file():
            header = csv_header(path)
            if set(SAMPLE_TAGS) <= set(header):
                notes = []
                end = whole_lines_end(path)
                if end < path.stat().st_size:
                    os.truncate(path, end)
                    notes.append(f"{path}: the last line was cut off (its writer was interrupted) and was left out")
                self._samples_header = self._earlier_columns = header
                return notes
            moved = path.with_name(f"{path.stem}-unreadable-{_utc_stamp()}{path.suffix}")
            path.replace(moved)
            note = f"{path} has no header of samples; it was moved to {moved.name} and this run's samples start anew"
            write_atomic(path, samples_csv_text(pd.DataFrame()))
            self._samples_header = list(SAMPLE_TAGS)
            return [note]
        write_atomic(path, samples_csv_text(pd.DataFrame()))
        self._samples_header = list(SAMPLE_TAGS)
        return []

    @property
    def started(self) -> bool:
        """Whether the files are started (:meth:`server_known` returned): rows and samples go
        in from then on."""
        return self._started

    @property
    def samples_path(self) -> Path:
        return self.directory / SAMPLES_CSV

    # -- while the sweep runs
    def _append(self, name: str, row: Mapping[str, Any], columns: Any) -> None:
        if not self._started:
            raise AnalyzerError("rows come after server_known(): the CSV files are not started yet")
        with open(self.directory / name, "a", newline="", encoding="utf-8") as f:
            f.write(csv_text([row], columns, header=False))
            f.flush()
            os.fsync(f.fileno())

    def add_baseline(self, row: Mapping[str, Any]) -> None:
        self._append(SERVER_CSV, row, SERVER_COLUMNS)

    def add_point(self, row: Mapping[str, Any]) -> None:
        self._append(self.rows_file, row, self.row_columns)

    def write_file(self, name: str, text: str) -> Path:
        """Write one more file of the run (a plan's plan.csv, plan.json, config.pbtxt),
        atomically, while the folder is held."""
        path = self.directory / name
        write_atomic(path, text)
        return path

    def add_samples(self, samples: pd.DataFrame) -> None:
        """Append the rows of a chunk of samples (:class:`~analyzer_widgets.events.SamplesTaken`)
        to ``metrics-samples.csv``, flushed and fsynced. A chunk with columns the file lacks
        has the file rewritten first with them (atomically; it happens in the first seconds
        of a run, while its samplers show their keys). A resumed sweep's go after the earlier
        runs', in the earlier runs' columns and then its own; times are each run's own clock."""
        if not self._started:
            raise AnalyzerError("samples come after server_known(): the files are not started yet")
        path = self.samples_path
        columns = [*self._earlier_columns, *(c for c in samples.columns if c not in self._earlier_columns)]
        if columns != self._samples_header:
            rewrite_columns(path, columns)
            self._samples_header = columns
        with open(path, "a", newline="", encoding="utf-8") as f:
            f.write(samples_csv_text(samples.reindex(columns=columns), header=False))
            f.flush()
            os.fsync(f.fileno())

    # -- the end
    def close(self) -> None:
        """Release the lock (again: harmless); a folder this run made and left empty goes."""
        self._lock.release()
        if self._made:
            self._made = False
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only when empty

    # -- a finished result, written whole
    @classmethod
    def save(cls, result: SweepResult, directory: Path | str, *, overwrite: bool = False) -> list[Path]:
        """Write ``result``'s CSV files to ``directory``, atomically, under the folder's lock;
        results already there are refused unless ``overwrite``. Returns the paths."""
        folder = cls(ExportSettings(export_path=Path(directory), overwrite=overwrite), result.spec)
        folder._take()
        try:
            folder._refuse_existing()
            paths = [folder.directory / name for name in CSV_FILES]
            write_atomic(paths[0], csv_text(result.rows, MODEL_COLUMNS))
            write_atomic(paths[1], csv_text([result.baseline_row] if result.baseline_row else [], SERVER_COLUMNS))
            write_atomic(paths[2], samples_csv_text(result.samples))
            return paths
        finally:
            folder.close()

