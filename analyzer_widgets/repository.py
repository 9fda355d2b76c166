"""Read a Triton model repository: which models it holds and what they take.

Configurations are parsed with Triton's own protobuf schema (``model_config.proto`` as
shipped in tritonclient), so what we read is what the server reads.

Example::

    models = list_models("examples/model_repository")
    models["mlp_numpy"].max_batch_size  # 64
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer_widgets.errors import RepositoryError


def _wire_datatype(config_datatype: str) -> str:
    """Triton's wire name for a model_config DataType: TYPE_FP32 -> FP32; TYPE_STRING
    travels as BYTES. Neither tritonclient nor model_config.proto has this table."""
    return "BYTES" if config_datatype == "TYPE_STRING" else config_datatype.removeprefix("TYPE_")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, wire datatype and dims without the batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    @property
    def is_variable(self) -> bool:
        return any(d < 0 for d in self.dims)


@dataclass(frozen=True)
class ModelInfo:
    """What a sweep needs to know about one model."""

    name: str
    backend: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batching: bool
    path: Path | None = None

    @property
    def kind(self) -> str:
        return self.backend or self.platform or "unknown"

    def batch_size_problem(self, batch_size: int) -> str | None:
        """Why ``batch_size`` cannot be sent to this model, or None if it can."""
        if self.max_batch_size == 0 and batch_size != 1:
            return f"model {self.name!r} does not batch (max_batch_size 0); only batch size 1 applies"
        if self.max_batch_size > 0 and batch_size > self.max_batch_size:
            return f"batch size {batch_size} is above the model's max_batch_size {self.max_batch_size}"
        return None


def _from_proto(config: Any, path: Path | None = None) -> ModelInfo:
    from tritonclient.grpc import model_config_pb2

    def tensors(items: Iterable[Any]) -> tuple[TensorSpec, ...]:
        out = []
        for t in items:
            dtype = model_config_pb2.DataType.Name(t.data_type)
            dims = tuple(int(d) for d in t.dims)
            out.append(TensorSpec(t.name, _wire_datatype(dtype), dims))
        return tuple(out)

    return ModelInfo(
        name=config.name or (path.name if path else ""),
        backend=config.backend,
        platform=config.platform,
        max_batch_size=int(config.max_batch_size),
        inputs=tensors(config.input),
        outputs=tensors(config.output),
        dynamic_batching=config.HasField("dynamic_batching"),
        path=path,
    )


def parse_config_text(text: str, path: Path | None = None) -> ModelInfo:
    """Parse the text of a ``config.pbtxt``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        where = f"{path}/config.pbtxt" if path else "config.pbtxt"
        raise RepositoryError(f"{where} is not a valid model configuration: {e}") from e
    if not config.name and path is not None:
        config.name = path.name
    return _from_proto(config, path)


def model_info_from_server_config(config: Mapping[str, Any] | Any) -> ModelInfo:
    """Build a :class:`ModelInfo` from a server's model config (a protobuf or its JSON)."""
    if isinstance(config, Mapping):
        from google.protobuf import json_format
        from tritonclient.grpc import model_config_pb2

        message = model_config_pb2.ModelConfig()
        json_format.ParseDict(dict(config), message, ignore_unknown_fields=True)
        config = message
    return _from_proto(config)


def _check_repository(repository: Path | str) -> Path:
    repo = Path(repository).expanduser()
    if not repo.exists():
        raise RepositoryError(f"model repository {str(repo)!r} does not exist")
    if not repo.is_dir():
        raise RepositoryError(f"model repository {str(repo)!r} is not a directory")
    return repo


def list_models(repository: Path | str) -> dict[str, ModelInfo]:
    """The models of a local repository by name. Folders without a version folder or
    ``config.pbtxt`` are not models and are left out."""
    repo = _check_repository(repository)
    models: dict[str, ModelInfo] = {}
    for entry in sorted(repo.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        config_file = entry / "config.pbtxt"
        has_version = any(p.is_dir() and p.name.isdigit() for p in entry.iterdir())
        if not config_file.is_file():
            if has_version:
                # Triton may auto-complete such a model; the server will tell us its shape.
                models[entry.name] = ModelInfo(entry.name, "", "", -1, (), (), False, entry)
            continue
        models[entry.name] = parse_config_text(config_file.read_text(), entry)
    return models


def resolve_models(repository: Path | str, names: Iterable[str]) -> list[ModelInfo]:
    """The named models of a repository, or an error that lists the models it does hold."""
    repo = _check_repository(repository)
    available = list_models(repo)
    if not available:
        raise RepositoryError(
            f"model repository {str(repo)!r} holds no models (a model is a folder with a "
            "config.pbtxt and a numbered version folder)"
        )
    names = list(names)
    missing = [n for n in names if n not in available]
    if missing:
        raise RepositoryError(
            f"model(s) {', '.join(repr(m) for m in missing)} not found in {str(repo)!r}; "
            f"it holds: {', '.join(sorted(available))}"
        )
    return [available[n] for n in names]


def concrete_shape(tensor: TensorSpec, given: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape to send for ``tensor`` (no batch dimension), using ``given`` for -1 dims."""
    if tensor.name in given:
        shape = tuple(given[tensor.name])
        if len(shape) != len(tensor.dims) or any(d >= 0 and d != s for d, s in zip(tensor.dims, shape, strict=True)):
            raise RepositoryError(
                f"shape {tensor.name}:{','.join(map(str, shape))} does not fit the model's dims "
                f"{list(tensor.dims)} (-1 marks the dimensions you choose)"
            )
        return shape
    if tensor.is_variable:
        example = ",".join(str(d if d >= 0 else 16) for d in tensor.dims)
        raise RepositoryError(
            f"input {tensor.name!r} has variable dims {list(tensor.dims)}; give its shape, "
            f"for example --shape {tensor.name}:{example}"
        )
    return tensor.dims


def element_count(shape: Iterable[int]) -> int:
    return math.prod(shape)


def batch_size_skips(infos: Iterable[ModelInfo], batch_sizes: Iterable[int]) -> dict[str, tuple[tuple[int, ...], int]]:
    """Which batch sizes each model would skip (its max_batch_size), by model: (the sizes,
    the model's max_batch_size); models that skip none are left out."""
    sizes = tuple(batch_sizes)
    out = {}
    for info in infos:
        skipped = tuple(b for b in sizes if info.batch_size_problem(b))
        if skipped:
            out[info.name] = (skipped, info.max_batch_size)
    return out
