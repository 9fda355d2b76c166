"""Reading a model repository (analyzer_widgets.repository): the bundled examples, clear
errors for missing or bad repositories, and shapes for variable dims."""

from __future__ import annotations

from pathlib import Path

import pytest

import analyzer_widgets
from analyzer_widgets.errors import RepositoryError
from analyzer_widgets.repository import (
    ModelInfo,
    TensorSpec,
    concrete_shape,
    list_models,
    parse_config_text,
    resolve_models,
)

EXAMPLES = Path(analyzer_widgets.__file__).parent / "examples" / "model_repository"

VALID_CONFIG = """
name: "tiny"
backend: "python"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP16, dims: [ 4 ] } ]
output [ { name: "Y", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""


def make_model(repo: Path, name: str, config: str | None = VALID_CONFIG, version: bool = True) -> Path:
    folder = repo / name
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.pbtxt").write_text(config.replace('"tiny"', f'"{name}"'))
    if version:
        (folder / "1").mkdir()
    return folder


def info(max_batch_size: int) -> ModelInfo:
    return ModelInfo("m", "python", "", max_batch_size, (), (), False)


# -- the bundled example repository --------------------------------------------------------------


def test_list_models_finds_the_four_examples() -> None:
    assert sorted(list_models(EXAMPLES)) == ["mixed_inputs", "mlp_numpy", "sequence_mean", "torch_mlp"]


def test_mlp_numpy_config_is_read() -> None:
    m = list_models(EXAMPLES)["mlp_numpy"]
    assert m.name == "mlp_numpy"
    assert m.kind == "python"
    assert m.max_batch_size == 64
    assert m.inputs == (TensorSpec("INPUT0", "FP32", (256,)),)
    assert m.outputs == (TensorSpec("OUTPUT0", "FP32", (64,)),)
    assert m.dynamic_batching
    assert m.path == EXAMPLES / "mlp_numpy"


def test_mixed_inputs_config_is_read() -> None:
    m = list_models(EXAMPLES)["mixed_inputs"]
    assert m.max_batch_size == 32
    assert m.inputs == (TensorSpec("FEATURES", "FP32", (16,)), TensorSpec("COUNTS", "INT32", (16,)))
    assert m.outputs == (TensorSpec("WEIGHTED_SUM", "FP32", (1,)), TensorSpec("TOTAL_COUNT", "INT64", (1,)))
    assert not m.dynamic_batching


def test_sequence_mean_has_a_variable_input() -> None:
    m = list_models(EXAMPLES)["sequence_mean"]
    assert m.max_batch_size == 16
    (seq,) = m.inputs
    assert seq == TensorSpec("SEQUENCE", "FP32", (-1, 32))
    assert seq.is_variable
    assert not m.outputs[0].is_variable
    assert not m.dynamic_batching


def test_torch_mlp_config_is_read() -> None:
    m = list_models(EXAMPLES)["torch_mlp"]
    assert m.max_batch_size == 64
    assert m.inputs == (TensorSpec("INPUT", "FP32", (4096,)),)
    assert m.outputs == (TensorSpec("OUTPUT", "FP32", (4096,)),)
    assert m.dynamic_batching  # an empty dynamic_batching { } block still turns it on


def test_resolve_models_returns_models_in_the_order_asked() -> None:
    models = resolve_models(EXAMPLES, ["torch_mlp", "mlp_numpy"])
    assert [m.name for m in models] == ["torch_mlp", "mlp_numpy"]


def test_resolve_models_with_an_unknown_name_lists_the_models_that_exist() -> None:
    with pytest.raises(RepositoryError) as err:
        resolve_models(EXAMPLES, ["mlp_numpy", "resnet50"])
    message = str(err.value)
    assert "'resnet50'" in message
    assert "mixed_inputs, mlp_numpy, sequence_mean, torch_mlp" in message
    assert str(EXAMPLES) in message


# -- bad repositories ----------------------------------------------------------------------------


def test_missing_repository_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for call in (lambda: list_models(missing), lambda: resolve_models(missing, ["m"])):
        with pytest.raises(RepositoryError, match="does not exist") as err:
            call()
        assert str(missing) in str(err.value)


def test_a_file_is_not_a_repository(tmp_path: Path) -> None:
    file = tmp_path / "repo.txt"
    file.write_text("not a folder")
    for call in (lambda: list_models(file), lambda: resolve_models(file, ["m"])):
        with pytest.raises(RepositoryError, match="is not a directory") as err:
            call()
        assert str(file) in str(err.value)


def test_an_empty_repository_holds_no_models(tmp_path: Path) -> None:
    assert list_models(tmp_path) == {}
    with pytest.raises(RepositoryError, match="holds no models") as err:
        resolve_models(tmp_path, ["m"])
    assert str(tmp_path) in str(err.value)
    assert "config.pbtxt" in str(err.value)  # says what a model looks like


def test_folders_that_are_not_models_are_left_out(tmp_path: Path) -> None:
    make_model(tmp_path, "real")
    (tmp_path / "notes").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("hi")
    make_model(tmp_path, ".hidden")
    assert list(list_models(tmp_path)) == ["real"]


def test_a_model_without_config_but_with_a_version_is_listed_for_auto_complete(tmp_path: Path) -> None:
    make_model(tmp_path, "onnx_model", config=None)
    m = list_models(tmp_path)["onnx_model"]
    assert m.max_batch_size == -1
    assert m.inputs == () and m.outputs == ()


def test_malformed_config_names_the_file(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "broken", config='name: "broken"\nmax_batch_size: eight\n')
    with pytest.raises(RepositoryError, match="not a valid model configuration") as err:
        list_models(tmp_path)
    assert str(folder / "config.pbtxt") in str(err.value)


def test_unknown_field_in_config_is_malformed(tmp_path: Path) -> None:
    make_model(tmp_path, "typo", config='name: "typo"\nmax_bach_size: 8\n')
    with pytest.raises(RepositoryError, match="max_bach_size"):
        resolve_models(tmp_path, ["typo"])


def test_config_datatypes_map_to_wire_names(tmp_path: Path) -> None:
    make_model(tmp_path, "tiny")
    m = list_models(tmp_path)["tiny"]
    assert m.inputs[0].datatype == "FP16"
    assert m.outputs[0].datatype == "BYTES"  # TYPE_STRING travels as BYTES


def test_config_without_name_takes_the_folder_name() -> None:
    m = parse_config_text('backend: "python"\nmax_batch_size: 0\n', Path("/repo/unnamed"))
    assert m.name == "unnamed"
    assert m.max_batch_size == 0


# -- concrete_shape ------------------------------------------------------------------------------


SEQUENCE = TensorSpec("SEQUENCE", "FP32", (-1, 32))


def test_fixed_dims_need_no_shape() -> None:
    assert concrete_shape(TensorSpec("X", "FP32", (3, 4)), {}) == (3, 4)


def test_given_shape_fills_variable_dims() -> None:
    assert concrete_shape(SEQUENCE, {"SEQUENCE": (128, 32)}) == (128, 32)


def test_missing_shape_for_variable_dims_suggests_the_shape_flag() -> None:
    with pytest.raises(RepositoryError) as err:
        concrete_shape(SEQUENCE, {"OTHER": (1,)})
    message = str(err.value)
    assert "'SEQUENCE'" in message
    assert "[-1, 32]" in message
    assert "--shape SEQUENCE:16,32" in message


@pytest.mark.parametrize("shape", [(128,), (128, 32, 1), (128, 16)])
def test_given_shape_of_wrong_rank_or_fixed_dim_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(RepositoryError, match="does not fit the model's dims") as err:
        concrete_shape(SEQUENCE, {"SEQUENCE": shape})
    assert f"SEQUENCE:{','.join(map(str, shape))}" in str(err.value)
    assert "[-1, 32]" in str(err.value)


def test_given_shape_must_match_a_fixed_tensor_too() -> None:
    with pytest.raises(RepositoryError):
        concrete_shape(TensorSpec("X", "FP32", (3, 4)), {"X": (3, 5)})


# -- ModelInfo.batch_size_problem ----------------------------------------------------------------


def test_batch_size_within_max_is_fine() -> None:
    assert info(64).batch_size_problem(1) is None
    assert info(64).batch_size_problem(64) is None


def test_batch_size_above_max_is_a_problem() -> None:
    problem = info(64).batch_size_problem(65)
    assert problem is not None
    assert "65" in problem and "64" in problem


def test_model_that_does_not_batch_takes_only_batch_size_one() -> None:
    assert info(0).batch_size_problem(1) is None
    problem = info(0).batch_size_problem(2)
    assert problem is not None
    assert "does not batch" in problem and "'m'" in problem


def test_unknown_max_batch_size_allows_any_batch_size() -> None:
    # -1: no config.pbtxt yet; the server's auto-completed config decides later
    assert info(-1).batch_size_problem(512) is None
