"""Request data and response checks: loadgen.inputs (build_inputs, expected_outputs) and
loadgen._worker (check_output, check_outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer_widgets.errors import ConfigError, RepositoryError
from analyzer_widgets.loadgen._worker import OutputCheck, check_output, check_outputs
from analyzer_widgets.loadgen.inputs import build_inputs, expected_outputs
from analyzer_widgets.repository import ModelInfo, TensorSpec


def model(max_batch_size: int, inputs: list[TensorSpec], outputs: list[TensorSpec] | None = None) -> ModelInfo:
    return ModelInfo("m", "python", "", max_batch_size, tuple(inputs), tuple(outputs or []), False)


ALL_TYPES = model(8, [
    TensorSpec("F32", "FP32", (3,)),
    TensorSpec("F16", "FP16", (3,)),
    TensorSpec("F64", "FP64", (3,)),
    TensorSpec("I32", "INT32", (3,)),
    TensorSpec("I64", "INT64", (3,)),
    TensorSpec("U8", "UINT8", (3,)),
    TensorSpec("B", "BOOL", (3,)),
    TensorSpec("S", "BYTES", (3,)),
])

EXPECTED_DTYPE = {
    "F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64,
    "U8": np.uint8, "B": np.bool_, "S": np.object_,
}


# -- build_inputs --------------------------------------------------------------------------------


def test_batching_model_gets_a_leading_batch_dimension() -> None:
    arrays, _ = build_inputs(model(64, [TensorSpec("X", "FP32", (256,))]), 8, {})
    assert arrays["X"].shape == (8, 256)


def test_non_batching_model_gets_no_batch_dimension() -> None:
    arrays, _ = build_inputs(model(0, [TensorSpec("X", "FP32", (2, 256))]), 1, {})
    assert arrays["X"].shape == (2, 256)


def test_dtypes_follow_the_model_datatypes() -> None:
    arrays, datatypes = build_inputs(ALL_TYPES, 2, {})
    assert datatypes == {t.name: t.datatype for t in ALL_TYPES.inputs}
    for name, dtype in EXPECTED_DTYPE.items():
        assert arrays[name].dtype == dtype, name
        assert arrays[name].shape == (2, 3), name


def test_random_mode_is_seeded_and_in_safe_ranges() -> None:
    first, _ = build_inputs(ALL_TYPES, 4, {}, seed=1)
    again, _ = build_inputs(ALL_TYPES, 4, {}, seed=1)
    other, _ = build_inputs(ALL_TYPES, 4, {}, seed=2)
    np.testing.assert_array_equal(first["F32"], again["F32"])
    assert not np.array_equal(first["F32"], other["F32"])
    assert first["I64"].min() >= 0 and first["I64"].max() < 100
    assert first["F32"].any()
    assert all(v == b"analyzer-widgets" for v in first["S"].ravel())


def test_zero_mode_gives_zeros_and_empty_bytes() -> None:
    arrays, _ = build_inputs(ALL_TYPES, 2, {}, mode="zero")
    for name in ("F32", "F16", "F64", "I32", "I64", "U8", "B"):
        assert not arrays[name].any(), name
        assert arrays[name].dtype == EXPECTED_DTYPE[name], name
    assert all(v == b"" for v in arrays["S"].ravel())


def test_variable_dims_take_the_given_shape() -> None:
    info = model(16, [TensorSpec("SEQUENCE", "FP32", (-1, 32))])
    arrays, _ = build_inputs(info, 4, {"SEQUENCE": (128, 32)})
    assert arrays["SEQUENCE"].shape == (4, 128, 32)


def test_variable_dims_without_a_shape_are_refused() -> None:
    info = model(16, [TensorSpec("SEQUENCE", "FP32", (-1, 32))])
    with pytest.raises(RepositoryError, match="--shape SEQUENCE:"):
        build_inputs(info, 4, {})


def test_datatype_that_cannot_be_synthesised_asks_for_an_npz() -> None:
    with pytest.raises(ConfigError, match=r"BF16.*\.npz") as err:
        build_inputs(model(4, [TensorSpec("X", "BF16", (2,))]), 1, {})
    assert err.value.field == "input_data"


def test_user_npz_is_used_and_tiled_over_the_batch(tmp_path: Path) -> None:
    sample = np.arange(6, dtype=np.float64).reshape(2, 3)
    npz = tmp_path / "inputs.npz"
    np.savez(npz, X=sample)
    info = model(8, [TensorSpec("X", "FP32", (2, 3)), TensorSpec("Y", "INT32", (5,))])

    arrays, _ = build_inputs(info, 4, {}, mode=str(npz))

    assert arrays["X"].shape == (4, 2, 3)
    assert arrays["X"].dtype == np.float32  # converted to the model's datatype
    for i in range(4):
        np.testing.assert_array_equal(arrays["X"][i], sample.astype(np.float32))
    assert arrays["X"].flags.writeable  # a real array, not a read-only broadcast view
    # an input the file does not hold is synthesised as usual
    assert arrays["Y"].shape == (4, 5) and arrays["Y"].dtype == np.int32


def test_user_npz_gives_the_shape_of_variable_inputs(tmp_path: Path) -> None:
    npz = tmp_path / "inputs.npz"
    np.savez(npz, SEQUENCE=np.ones((7, 32), dtype=np.float32))
    info = model(16, [TensorSpec("SEQUENCE", "FP32", (-1, 32))])
    arrays, _ = build_inputs(info, 2, {}, mode=str(npz))
    assert arrays["SEQUENCE"].shape == (2, 7, 32)


def test_user_npz_is_used_as_is_for_a_non_batching_model(tmp_path: Path) -> None:
    sample = np.array([1, 2, 3], dtype=np.int64)
    npz = tmp_path / "inputs.npz"
    np.savez(npz, X=sample)
    arrays, _ = build_inputs(model(0, [TensorSpec("X", "INT64", (3,))]), 1, {}, mode=str(npz))
    np.testing.assert_array_equal(arrays["X"], sample)


# -- expected_outputs ----------------------------------------------------------------------------


def test_expected_outputs_add_the_batch_dimension_when_batching() -> None:
    info = model(32, [], [TensorSpec("SUM", "FP32", (1,)), TensorSpec("COUNT", "INT64", (1,))])
    assert expected_outputs(info, 4) == (OutputCheck("SUM", "FP32", (4, 1)), OutputCheck("COUNT", "INT64", (4, 1)))


def test_expected_outputs_without_batching_keep_the_dims() -> None:
    info = model(0, [], [TensorSpec("OUT", "FP32", (-1, 8))])
    assert expected_outputs(info, 1) == (OutputCheck("OUT", "FP32", (-1, 8)),)


# -- check_output / check_outputs ----------------------------------------------------------------


FP32_4x8 = OutputCheck("OUT", "FP32", (4, 8))


def test_valid_output_passes() -> None:
    assert check_output(FP32_4x8, (4, 8), 4 * 8 * 4) is None


def test_unknown_byte_count_skips_the_size_check() -> None:
    assert check_output(FP32_4x8, (4, 8), None) is None


@pytest.mark.parametrize("shape", [(4,), (4, 8, 1), (4, 7), (3, 8)])
def test_wrong_shape_is_reported(shape: tuple[int, ...]) -> None:
    problem = check_output(FP32_4x8, shape, None)
    assert problem is not None
    assert "OUT" in problem
    assert str(list(shape)) in problem and "[4, 8]" in problem


def test_minus_one_accepts_any_size() -> None:
    check = OutputCheck("OUT", "FP32", (4, -1))
    assert check_output(check, (4, 1), 16) is None
    assert check_output(check, (4, 100), 1600) is None
    assert check_output(check, (5, 100), None) is not None  # fixed dims still count


@pytest.mark.parametrize(("check", "shape"), [(OutputCheck("OUT", "FP32", (4, -1)), (4, 0)),
                                              (OutputCheck("OUT", "FP32", (-1,)), (0,))])
def test_empty_output_is_reported(check: OutputCheck, shape: tuple[int, ...]) -> None:
    problem = check_output(check, shape, 0)
    assert problem is not None
    assert "empty" in problem


def test_byte_count_mismatch_is_reported() -> None:
    problem = check_output(FP32_4x8, (4, 8), 4 * 8 * 2)
    assert problem == "output OUT holds 64 bytes, expected 128"


def test_no_data_for_a_non_empty_shape_is_reported() -> None:
    problem = check_output(FP32_4x8, (4, 8), 0)
    assert problem is not None
    assert "no data" in problem


def test_bytes_outputs_skip_the_size_check_but_not_the_no_data_check() -> None:
    check = OutputCheck("S", "BYTES", (2,))
    assert check_output(check, (2,), 37) is None
    assert check_output(check, (2,), 0) is not None


def test_check_outputs_reports_a_missing_output_and_what_came() -> None:
    expected = (OutputCheck("A", "FP32", (1,)), OutputCheck("B", "INT64", (1,)))
    problem = check_outputs(expected, {"A": ((1,), 4), "C": ((1,), 8)})
    assert problem is not None
    assert "output B missing" in problem
    assert "['A', 'C']" in problem


def test_check_outputs_with_an_empty_response_says_none_came() -> None:
    problem = check_outputs((OutputCheck("A", "FP32", (1,)),), {})
    assert problem is not None and "none" in problem


def test_check_outputs_reports_the_first_bad_output() -> None:
    expected = (OutputCheck("A", "FP32", (2,)), OutputCheck("B", "INT64", (2,)))
    assert check_outputs(expected, {"A": ((2,), 8), "B": ((2,), 16)}) is None
    problem = check_outputs(expected, {"A": ((2,), 8), "B": ((2,), 8)})
    assert problem == "output B holds 8 bytes, expected 16"


def test_check_outputs_ignores_extra_outputs() -> None:
    assert check_outputs((OutputCheck("A", "FP32", (1,)),), {"A": ((1,), 4), "EXTRA": ((0,), 0)}) is None
