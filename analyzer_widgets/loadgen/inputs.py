"""Request data synthesised from a model's inputs (or taken from the user's file)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from analyzer_widgets.errors import ConfigError
from analyzer_widgets.loadgen._worker import OutputCheck
from analyzer_widgets.repository import ModelInfo, concrete_shape


def _numpy_dtype(datatype: str) -> np.dtype[Any] | None:
    """tritonclient's numpy dtype for a wire datatype (object for BYTES); None for one it does
    not know, and for BF16: tritonclient maps BF16 to float32 in older releases (4 bytes, for
    its own converter) and to ml_dtypes.bfloat16 in newer ones, while we send raw bytes."""
    if datatype == "BF16":
        return None
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    return None if dtype is None else np.dtype(dtype)


def _synthesise(datatype: str, shape: tuple[int, ...], mode: str, rng: np.random.Generator) -> np.ndarray:
    dtype = _numpy_dtype(datatype)
    if dtype is None:
        raise ConfigError("input_data", mode, f"cannot synthesise inputs of datatype {datatype}; give a .npz file")
    if datatype == "BYTES":
        fill = b"" if mode == "zero" else b"analyzer-widgets"
        return np.full(shape, fill, dtype=np.object_)
    if mode == "zero":
        return np.zeros(shape, dtype=dtype)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        # small non-negative values: safe as indices, counts or token ids
        return rng.integers(0, 100, size=shape).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)


def build_inputs(
    info: ModelInfo,
    batch_size: int,
    shapes: Mapping[str, tuple[int, ...]],
    mode: str = "random",
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays by input name, datatypes by input name) for one request of ``batch_size``.

    The batch dimension is added when the model batches (max_batch_size > 0)."""
    rng = np.random.default_rng(seed)
    user: Mapping[str, np.ndarray] = {}
    if mode not in ("random", "zero"):
        with np.load(Path(mode), allow_pickle=False) as npz:
            user = {k: npz[k] for k in npz.files}
    arrays: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for tensor in info.inputs:
        datatypes[tensor.name] = tensor.datatype
        if tensor.name in user:
            sample = user[tensor.name]
            if info.max_batch_size > 0:
                sample = np.broadcast_to(sample[None, ...], (batch_size, *sample.shape)).copy()
            dtype = _numpy_dtype(tensor.datatype)
            arrays[tensor.name] = sample.astype(sample.dtype if dtype is None else dtype)
            continue
        shape = concrete_shape(tensor, shapes)
        full = (batch_size, *shape) if info.max_batch_size > 0 else shape
        arrays[tensor.name] = _synthesise(tensor.datatype, full, "zero" if mode == "zero" else "random", rng)
    return arrays, datatypes


def expected_outputs(info: ModelInfo, batch_size: int) -> tuple[OutputCheck, ...]:
    """What every valid response must hold: each declared output, batch dimension first."""
    checks = []
    for out in info.outputs:
        shape = (batch_size, *out.dims) if info.max_batch_size > 0 else out.dims
        checks.append(OutputCheck(out.name, out.datatype, tuple(shape)))
    return tuple(checks)
