"""What a sweep's results were measured with, so a later run can resume them safely.

Beside the results, ``sweep.json`` records a fingerprint of everything that shapes the
figures: the spec's grid and measurement settings, a digest of each model's files, the
server's version and the GPUs (by UUID). A resumed sweep skips the points already measured
only when all of these still match; otherwise it is refused with the list of what changed,
or, when asked, the old results are moved apart into ``previous-<time>/``. Never mixed.

The file is always replaced whole (temp file, fsync, ``os.replace``), so a crash leaves
the old version or the new one. An empty or damaged file is an error, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from analyzer_widgets.config import SweepSpec, file_digest, fingerprint
from analyzer_widgets.errors import ResumeError
from analyzer_widgets.results import (
    MODEL_CSV,
    SAMPLES_CSV,
    SERVER_CSV,
    SERVER_LOG,
    check_export_target,
    read_csv,
    write_atomic,
)
from analyzer_widgets.schema import MODEL_COLUMNS, Status

MANIFEST = "sweep.json"
FORMAT = 2  # 2: the fingerprint is every setting declared with fingerprint=True, by name


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
    spec: dict[str, Any]
    model_files: dict[str, str]  # model -> digest ("" where the repository is not ours to read)
    server_version: str = ""
    gpus: list[str] = field(default_factory=list)  # UUIDs, in NVML's order
    created_at: str = ""
    format: int = FORMAT

    @classmethod
    def for_spec(cls, spec: SweepSpec) -> Manifest:
        repo = spec.model_repository
        digests = {m: (model_digest(repo, m) if repo is not None and (repo / m).is_dir() else "") for m in spec.models}
        return cls(spec=fingerprint(spec), model_files=digests,
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
        if self.server_version and server_version != self.server_version:
            changes.append(f"server version: {self.server_version!r} then, {server_version!r} now")
        if self.server_version and list(gpus) != list(self.gpus):
            changes.append(f"GPUs: {self.gpus or 'none'} then, {list(gpus) or 'none'} now")
        return changes


def move_apart(directory: Path, names: list[str]) -> Path:
    """Move earlier results into ``previous-<UTC time>/`` inside ``directory``."""
    target = Path(directory) / time.strftime("previous-%Y%m%dT%H%M%SZ", time.gmtime())
    suffix = 1
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir(parents=True)
    for name in names:
        source = Path(directory) / name
        if source.exists():
            source.replace(target / name)
    return target


#: the files of one sweep's results in its export directory
RESULT_FILES = (MANIFEST, MODEL_CSV, SERVER_CSV, SAMPLES_CSV, SERVER_LOG)
#: rows a resumed sweep keeps; a failed point is measured again
KEPT_STATUSES = (Status.OK.value, Status.UNSTABLE.value, Status.SKIPPED.value)


@dataclass
class ResumePlan:
    manifest: Manifest  # to save for this run
    kept_rows: list[dict[str, Any]] | None  # the earlier rows to keep; None: a fresh start
    done: set[tuple[str, int, int]]  # their points, which the runner skips
    notes: list[str]
    previous: Manifest | None = None  # the earlier run's, for the server and GPU check

    def check_server(self, directory: Path, server_version: str, gpus: list[str], keep_apart: bool) -> list[str]:
        """Refuse (or move apart) results measured on another server version or other GPUs;
        record this run's. After a move the plan is a fresh start. Returns notes for the user."""
        notes = []
        if self.previous is not None:
            changes = self.previous.server_differences(server_version, gpus)
            if changes:
                if not keep_apart:
                    raise ResumeError(_refusal(directory, changes))
                moved = move_apart(directory, list(RESULT_FILES))
                self.kept_rows = None
                self.done.clear()
                notes.append(f"earlier results moved to {moved} ({'; '.join(changes)}); starting over")
        self.manifest.server_version = server_version
        self.manifest.gpus = list(gpus)
        self.manifest.save(directory)
        return notes


def _refusal(directory: Path, changes: list[str]) -> str:
    return (f"cannot resume the sweep in {directory}: " + "; ".join(changes) + ". Its rows would be mixed "
            "with figures measured differently. Keep them apart (--keep-apart, keep_apart=True: moved "
            "into previous-<time>/), export to a new directory, or --overwrite")


def plan_export(directory: Path, spec: SweepSpec, *, overwrite: bool, resume: bool, keep_apart: bool) -> ResumePlan:
    """Decide, before anything is launched, what a sweep exporting to ``directory`` keeps:
    nothing for a new sweep (refused where results exist, unless ``overwrite``), the
    points already measured for a resumed one."""
    if not resume:
        check_export_target(directory, overwrite)
        return ResumePlan(Manifest.for_spec(spec), None, set(), [])
    return plan_resume(directory, spec, keep_apart)


def plan_resume(directory: Path, spec: SweepSpec, keep_apart: bool) -> ResumePlan:
    """What a resumed sweep keeps; refuses a changed spec or damaged files."""
    directory = Path(directory)
    current = Manifest.for_spec(spec)
    if not (directory / MANIFEST).exists():
        present = [n for n in (MODEL_CSV, SERVER_CSV) if (directory / n).exists()]
        if present:
            raise ResumeError(f"{directory} holds results ({', '.join(present)}) but no {MANIFEST}, so what they "
                              "were measured with is unknown; nothing was reused. Export to a new directory, "
                              "or --overwrite")
        return ResumePlan(current, None, set(), [])
    previous = Manifest.load(directory)
    changes = previous.spec_differences(current)
    if changes:
        if not keep_apart:
            raise ResumeError(_refusal(directory, changes))
        moved = move_apart(directory, list(RESULT_FILES))
        return ResumePlan(current, None, set(), [f"earlier results moved to {moved} ({'; '.join(changes)})"])
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    if (directory / MODEL_CSV).exists():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = read_csv(directory / MODEL_CSV, MODEL_COLUMNS)  # damaged rows: an error, not a guess
        notes += [str(w.message) for w in caught]
        records = rows.to_dict("records")
        kept = [r for r in records if r["status"] in KEPT_STATUSES]
        again = len(records) - len(kept)
        if again:
            notes.append(f"{again} point(s) that failed before will be measured again")
    # saved again before the server check: the earlier run's server and GPUs must survive it
    current.created_at = previous.created_at
    current.server_version, current.gpus = previous.server_version, list(previous.gpus)
    return ResumePlan(current, kept, {(r["model"], int(r["batch_size"]), int(r["concurrency"])) for r in kept},
                      notes, previous)
