"""The planner's search space (planning/space.py) on the example models' real configs: defaults,
checks, files, variants and their config.pbtxt. No server."""

from __future__ import annotations

import copy
import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from analyzer_widgets.errors import ConfigError

# `from ... import`, not `import analyzer_widgets.planning.space as`: that reads the attribute
# analyzer_widgets.planning, which the package's facade sets to the function aw.plan
from analyzer_widgets.planning import space as space_module
from analyzer_widgets.planning.space import (
    DynamicBatching,
    Space,
    config_diff,
    default_space,
    read_space,
    to_pbtxt,
    variants,
)

REPOSITORY = Path(space_module.__file__).resolve().parent.parent / "examples" / "model_repository"


def example_config(model: str) -> dict[str, Any]:
    """The example model's config.pbtxt as the server's JSON gives it (field names as in the file)."""
    message = text_format.Parse((REPOSITORY / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


#: none of the examples has max_batch_size 0: a model whose inputs carry no batch dimension
NOT_BATCHING: dict[str, Any] = {
    "name": "no_batch", "backend": "python", "max_batch_size": 0,
    "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": ["8", "16"]}],
    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": ["8"]}],
    "instance_group": [{"kind": "KIND_CPU", "count": 1}],
}

BRIEF_SPACE: dict[str, Any] = {
    "instances": [1, 2], "kind": "KIND_GPU", "max_batch_size": [8, 16],
    "dynamic_batching": {"delays_us": [0, 200], "preferred_batch_size": [[4, 8]]},
    "fields": {"optimization.cuda.graphs": [True, False]},
}


def names(found: tuple[space_module.Variant, ...]) -> list[str]:
    return [v.name for v in found]


# -- defaults ----------------------------------------------------------------------------------
def test_the_default_space_of_a_batching_cpu_model_is_48_variants_and_holds_its_own_config() -> None:
    config = example_config("mlp_numpy")  # max batch 64, dynamic batching at 100 us, one CPU instance
    space = default_space(config)
    assert space.to_dict() == {"instances": [1, 2, 3, 4], "max_batch_size": [1, 4, 16, 64],
                               "dynamic_batching": {"delays_us": [0, 100, 500]}}
    found = variants(space, config, gpu_count=0)
    assert len(found) == space.size == 48
    assert [v.name for v in found if v.original] == ["i1_b64_d100"]  # the model's own: no extra variant
    assert names(found)[:4] == ["i1_b1_d0", "i1_b1_d100", "i1_b1_d500", "i1_b4_d0"]
    for v in found:
        assert {g["kind"] for g in v.config["instance_group"]} == {"KIND_CPU"}  # the model's own kind
        assert v.config["dynamic_batching"]["max_queue_delay_microseconds"] in (0, 100, 500)


def test_a_batching_model_without_dynamic_batching_gets_its_own_config_first_as_original() -> None:
    config = example_config("mixed_inputs")  # max batch 32, no dynamic batching
    found = variants(default_space(config), config, gpu_count=0)
    assert len(found) == 49 and found[0].name == "original" and found[0].original
    assert found[0].config == config and "dynamic_batching" not in found[0].config
    assert sorted({v.config["max_batch_size"] for v in found[1:]}) == [1, 4, 8, 32]
    assert found[0].fields == {"instance_group.count": 1, "max_batch_size": 32, "dynamic_batching": False,
                               "dynamic_batching.max_queue_delay_microseconds": None}


def test_dynamic_batching_with_no_fields_equals_a_delay_of_0() -> None:
    # torch_mlp's `dynamic_batching { }`: compared through the schema, the variant at 0 us is it
    config = example_config("torch_mlp")
    found = variants(default_space(config), config, gpu_count=0)  # KIND_MODEL needs no GPU
    assert len(found) == 48 and [v.name for v in found if v.original] == ["i1_b64_d0"]


def test_the_default_space_of_a_model_that_does_not_batch_varies_instances_only() -> None:
    space = default_space(NOT_BATCHING)
    assert space.to_dict() == {"instances": [1, 2, 3, 4]}
    found = variants(space, NOT_BATCHING, gpu_count=0)
    assert names(found) == ["i1", "i2", "i3", "i4"] and found[0].original
    assert all(v.config["max_batch_size"] == 0 and "dynamic_batching" not in v.config for v in found)


def test_the_default_keeps_the_models_preferred_sizes_and_no_max_batch_below_them() -> None:
    config = {**example_config("mlp_numpy"), "dynamic_batching": {"preferred_batch_size": [16, 32]}}
    space = default_space(config)
    assert space.max_batch_size == (32, 64)
    assert all(v.config["dynamic_batching"]["preferred_batch_size"] == [16, 32]
               for v in variants(space, config, gpu_count=0))


def test_a_model_with_a_sequence_batcher_keeps_it() -> None:
    config = {**example_config("mlp_numpy"), "sequence_batching": {}}
    del config["dynamic_batching"]
    assert default_space(config).dynamic_batching is None
    with pytest.raises(ConfigError, match="sequence_batching"):
        variants(Space(dynamic_batching={"delays_us": [0]}), config, gpu_count=0)


# -- checks ------------------------------------------------------------------------------------
MLP = example_config("mlp_numpy")
GPU_MODEL = {**MLP, "instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0]}]}

#: (space, model config, gpu count, the field the error names, the value it names)
REFUSED: dict[str, tuple[dict[str, Any], dict[str, Any], int, str, Any]] = {
    "dynamic batching on a model that does not batch": (
        {"dynamic_batching": {"delays_us": [100]}}, NOT_BATCHING, 0, "dynamic_batching", {"delays_us": [100]}),
    "a max batch size on a model that does not batch": (
        {"max_batch_size": [8]}, NOT_BATCHING, 0, "max_batch_size", [8]),
    "preferred sizes on a model that does not batch": (
        {"dynamic_batching": {"preferred_batch_size": [[4]]}}, NOT_BATCHING, 0,
        "dynamic_batching.preferred_batch_size", [[4]]),
    "a preferred size above a variant's max batch size": (
        {"max_batch_size": [8, 32], "dynamic_batching": {"preferred_batch_size": [[4, 16]]}}, MLP, 0,
        "dynamic_batching.preferred_batch_size", [4, 16]),
    "the model's own preferred size above the space's max batch size": (
        {"max_batch_size": [8]}, {**MLP, "dynamic_batching": {"preferred_batch_size": [32]}}, 0,
        "dynamic_batching.preferred_batch_size", [32]),
    "a GPU instance without a GPU": ({"kind": "KIND_GPU"}, MLP, 0, "kind", "KIND_GPU"),
    "the model's own GPU instances without a GPU": ({"instances": [2]}, GPU_MODEL, 0, "kind", "KIND_GPU"),
    "an instance count below 1": ({"instances": [0, 1]}, MLP, 0, "instances", [0, 1]),
    "a max batch size below 1": ({"max_batch_size": [0]}, MLP, 0, "max_batch_size", [0]),
    "a negative delay": ({"dynamic_batching": {"delays_us": [-1]}}, MLP, 0, "dynamic_batching.delays_us", [-1]),
    "a preferred size below 1": ({"dynamic_batching": {"preferred_batch_size": [[0]]}}, MLP, 0,
                                 "dynamic_batching.preferred_batch_size", [0]),
    "preferred sizes not as lists of lists": ({"dynamic_batching": {"preferred_batch_size": [4, 8]}}, MLP, 0,
                                              "dynamic_batching.preferred_batch_size", [4, 8]),
    "an unknown kind": ({"kind": ["KIND_TPU"]}, MLP, 0, "kind", ["KIND_TPU"]),
    "an unknown key": ({"instance": [1, 2]}, MLP, 0, "instance", [1, 2]),
    "an unknown key of dynamic batching": ({"dynamic_batching": {"delay_us": [0]}}, MLP, 0,
                                           "dynamic_batching.delay_us", [0]),
    "dynamic batching neither false nor a table": ({"dynamic_batching": "on"}, MLP, 0, "dynamic_batching", "on"),
    "a path through a value that is not a section": (
        {"fields": {"backend.name": ["onnxruntime"]}}, MLP, 0, "backend.name", ["onnxruntime"]),
    "a path onto a section": ({"fields": {"parameters": ["x"]}}, example_config("torch_mlp"), 0, "parameters", ["x"]),
    "a path into a list": ({"fields": {"input.name": ["X"]}}, MLP, 0, "input.name", ["X"]),
    "a field Triton's config lacks": ({"fields": {"optimization.cuda.graph": [True]}}, MLP, 0,
                                      "optimization.cuda.graph", True),
    "a value of the wrong type": ({"fields": {"parameters.layers.string_value": [8]}}, MLP, 0,
                                  "parameters.layers.string_value", 8),
    "a field the space's own key sets": ({"fields": {"max_batch_size": [8]}}, MLP, 0, "max_batch_size", [8]),
    "a path into the instance groups": ({"fields": {"instance_group.count": [2]}}, MLP, 0,
                                        "instance_group.count", [2]),
    "a dynamic batching field where batching may be off": (
        {"dynamic_batching": {"include_off": True}, "fields": {"dynamic_batching.preserve_ordering": [True]}},
        MLP, 0, "dynamic_batching.preserve_ordering", [True]),
    "an empty path part": ({"fields": {"optimization..graphs": [True]}}, MLP, 0, "optimization..graphs", [True]),
    "an empty instance list": ({"instances": []}, MLP, 0, "instances", []),
    "an empty max batch size list": ({"max_batch_size": []}, MLP, 0, "max_batch_size", []),
    "an empty kind list": ({"kind": []}, MLP, 0, "kind", []),
    "an empty delay list": ({"dynamic_batching": {"delays_us": []}}, MLP, 0, "dynamic_batching.delays_us", []),
    "an empty preferred list": ({"dynamic_batching": {"preferred_batch_size": []}}, MLP, 0,
                                "dynamic_batching.preferred_batch_size", []),
    "an empty list of field values": ({"fields": {"optimization.cuda.graphs": []}}, MLP, 0,
                                      "optimization.cuda.graphs", []),
    "a negative GPU count": ({}, MLP, -1, "gpu_count", -1),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_value_the_model_or_machine_cannot_take_is_refused_naming_field_and_value(case: str) -> None:
    declared, config, gpu_count, field, value = REFUSED[case]
    before = copy.deepcopy(config)
    with pytest.raises(ConfigError) as caught:
        variants(read_space(declared), config, gpu_count=gpu_count)
    error = caught.value
    assert (error.field, error.value) == (field, value)
    assert str(error).startswith(f"{field}={value!r}: ") and error.reason
    assert config == before


def test_what_is_refused_without_a_gpu_is_taken_with_one() -> None:
    found = variants(read_space({"kind": "KIND_GPU"}), MLP, gpu_count=1)
    assert names(found) == ["original", "gpu"] and found[1].config["instance_group"][0]["kind"] == "KIND_GPU"
    assert variants(read_space({"instances": [2]}), GPU_MODEL, gpu_count=1)[1].config["instance_group"] == [
        {"kind": "KIND_GPU", "count": 2, "gpus": [0]}]


def test_the_refusal_messages_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="does not batch .* leave this key out"):
        variants(read_space({"max_batch_size": [8]}), NOT_BATCHING, gpu_count=0)
    with pytest.raises(ConfigError, match=r"no GPU \(gpu_count=0\); it is the model's own instance kind.*KIND_CPU"):
        variants(Space(instances=(1,)), GPU_MODEL, gpu_count=0)
    with pytest.raises(ConfigError, match=r"16 is above max_batch_size 8, which variants of this space have"):
        variants(read_space({"max_batch_size": [8], "dynamic_batching": {"preferred_batch_size": [[16]]}}), MLP,
                 gpu_count=0)


# -- files -------------------------------------------------------------------------------------
BRIEF_TOML = """
instances = [1, 2]
kind = "KIND_GPU"
max_batch_size = [8, 16]

[dynamic_batching]
delays_us = [0, 200]
preferred_batch_size = [[4, 8]]

[fields]
"optimization.cuda.graphs" = [true, false]
"""


def test_a_toml_file_and_a_json_file_read_as_the_same_space(tmp_path: Path) -> None:
    (tmp_path / "space.toml").write_text(BRIEF_TOML)
    (tmp_path / "space.json").write_text(json.dumps(BRIEF_SPACE))
    from_toml, from_json = read_space(tmp_path / "space.toml"), read_space(str(tmp_path / "space.json"))
    assert from_toml == from_json == read_space(BRIEF_SPACE)
    assert from_toml.to_dict() == {**BRIEF_SPACE, "kind": ["KIND_GPU"]}
    assert read_space(from_toml.to_dict()) == from_toml
    assert from_toml.size == 2 * 2 * 2 * 2


def test_toml_dotted_keys_unquoted_read_as_paths(tmp_path: Path) -> None:
    (tmp_path / "nested.toml").write_text("[fields]\noptimization.cuda.graphs = [true, false]\n"
                                          "parameters.layers.string_value = ['4', '8']\n")
    assert read_space(tmp_path / "nested.toml").fields == {
        "optimization.cuda.graphs": (True, False), "parameters.layers.string_value": ("4", "8")}


def test_a_yaml_file_reads_where_pyyaml_is_there(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: YAML spaces are refused with a hint")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(BRIEF_SPACE))
    assert read_space(tmp_path / "space.yaml") == read_space(BRIEF_SPACE)


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("space.toml", "instances = [1, 2", "is not valid TOML"),
    ("space.json", "{\"instances\": [1,}", "is not valid JSON"),
    ("space.json", "[1, 2]", "must be a table of the keys"),
    ("space.ini", "instances = 1", "must be a .toml, .json"),
    ("space.toml", "instances = [1, 2]\nwarmup = 3\n", "is not a key of the space"),
])
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, name: str, text: str, reason: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=reason):
        read_space(tmp_path / name)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read") as caught:
        read_space(tmp_path / "absent.toml")
    assert caught.value.field == "space" and caught.value.value == str(tmp_path / "absent.toml")


# -- variants ----------------------------------------------------------------------------------
def test_names_are_unique_stable_and_say_what_each_variant_sets() -> None:
    torch_mlp = example_config("torch_mlp")
    space = read_space({**BRIEF_SPACE, "kind": ["KIND_CPU", "KIND_GPU"],
                        "dynamic_batching": {**BRIEF_SPACE["dynamic_batching"], "include_off": True,
                                             "preferred_batch_size": [[4, 8], []]},
                        "fields": {**BRIEF_SPACE["fields"], "parameters.layers.string_value": ["4", "8"]}})
    found = variants(space, torch_mlp, gpu_count=1)
    assert len(found) == space.size + 1 == 2 * 2 * 2 * (2 * 2 + 1) * 2 * 2 + 1
    assert len(set(names(found))) == len(found)
    assert names(found) == names(variants(space, torch_mlp, gpu_count=1))  # deterministic
    assert names(found)[:3] == ["original", "i1cpu_b8_d0p4-8_graphs-true_layers-4",
                                "i1cpu_b8_d0p4-8_graphs-true_layers-8"]
    assert {"i2gpu_b16_nodb_graphs-false_layers-8", "i1cpu_b8_d200_graphs-true_layers-4"} <= set(names(found))
    assert all("_" not in part for v in found for part in v.name.split("_") if part)


def test_values_that_make_poor_names_are_named_by_their_position() -> None:
    values = ["a much longer string than a name wants", "x"]
    found = variants(Space(fields={"parameters.note.string_value": values}), MLP, gpu_count=0)
    assert names(found) == ["original", "note-v0", "note-v1"]
    assert [v.config["parameters"]["note"]["string_value"] for v in found[1:]] == values


def test_each_variant_lists_the_same_fields_for_the_plan_table() -> None:
    found = variants(read_space(BRIEF_SPACE), example_config("torch_mlp"), gpu_count=1)
    keys = {"instance_group.count", "instance_group.kind", "max_batch_size", "dynamic_batching",
            "dynamic_batching.max_queue_delay_microseconds", "dynamic_batching.preferred_batch_size",
            "optimization.cuda.graphs"}
    assert all(set(v.fields) == keys for v in found)
    assert found[0].fields == {"instance_group.count": 1, "instance_group.kind": "KIND_MODEL", "max_batch_size": 64,
                               "dynamic_batching": True, "dynamic_batching.max_queue_delay_microseconds": 0,
                               "dynamic_batching.preferred_batch_size": (), "optimization.cuda.graphs": None}
    assert found[-1].fields == {"instance_group.count": 2, "instance_group.kind": "KIND_GPU", "max_batch_size": 16,
                                "dynamic_batching": True, "dynamic_batching.max_queue_delay_microseconds": 200,
                                "dynamic_batching.preferred_batch_size": (4, 8), "optimization.cuda.graphs": False}


def test_the_models_config_is_left_untouched_and_no_two_variants_share_a_part() -> None:
    config = example_config("torch_mlp")
    before = copy.deepcopy(config)
    found = variants(read_space(BRIEF_SPACE), config, gpu_count=1)
    assert config == before
    found[1].config["instance_group"][0]["count"] = 99
    found[1].config["parameters"]["layers"]["string_value"] = "99"
    found[0].config["input"][0]["dims"].append("1")
    assert config == before and found[2].config["instance_group"][0]["count"] == 1
    assert found[2].config["parameters"]["layers"]["string_value"] == "8"


def test_a_variant_keeps_every_other_field_of_the_models_config() -> None:
    config = example_config("torch_mlp")
    for v in variants(read_space(BRIEF_SPACE), config, gpu_count=1):
        for key in ("name", "backend", "input", "output", "parameters"):
            assert v.config[key] == config[key]


def test_dynamic_batching_off_removes_the_key_and_keeps_the_other_batching_fields_when_on() -> None:
    config = {**MLP, "dynamic_batching": {"max_queue_delay_microseconds": "100", "preserve_ordering": True}}
    off = variants(Space(dynamic_batching=False), config, gpu_count=0)
    assert names(off) == ["original", "nodb"] and "dynamic_batching" not in off[1].config
    on = variants(Space(dynamic_batching=DynamicBatching(delays_us=(500,), include_off=True)), config, gpu_count=0)
    assert names(on) == ["original", "d500", "nodb"]
    assert on[1].config["dynamic_batching"] == {"max_queue_delay_microseconds": 500, "preserve_ordering": True}


def test_instances_and_kind_are_set_on_every_group() -> None:
    config = {**MLP, "instance_group": [{"name": "a", "kind": "KIND_GPU", "count": 1, "gpus": [0]},
                                        {"name": "b", "kind": "KIND_GPU", "count": 2, "gpus": [1]}]}
    [_, both] = variants(Space(instances=(3,), kind=("KIND_CPU",)), config, gpu_count=2)
    assert both.config["instance_group"] == [{"name": "a", "kind": "KIND_CPU", "count": 3},
                                             {"name": "b", "kind": "KIND_CPU", "count": 3}]
    no_groups = {k: v for k, v in MLP.items() if k != "instance_group"}
    assert variants(Space(instances=(2,)), no_groups, gpu_count=0)[1].config["instance_group"] == [{"count": 2}]


def test_a_model_whose_config_the_server_gave_with_int64_as_text_matches_its_variant() -> None:
    config = {**MLP, "dynamic_batching": {"max_queue_delay_microseconds": "100"}}  # as gRPC's JSON writes int64
    found = variants(Space(dynamic_batching={"delays_us": [100, 200]}), config, gpu_count=0)
    assert names(found) == ["d100", "d200"] and found[0].original


def test_an_empty_space_is_the_models_own_config() -> None:
    found = variants(Space(), MLP, gpu_count=0)
    assert names(found) == ["original"] and found[0].config == MLP and Space().size == 0


# -- for people and for the repository ------------------------------------------------------------
def test_the_diff_shows_each_changed_field_as_old_to_new() -> None:
    found = {v.name: v for v in variants(default_space(MLP), MLP, gpu_count=0)}
    assert config_diff(MLP, found["i2_b16_d500"].config) == [
        "max_batch_size: 64 -> 16",
        "instance_group[0].count: 1 -> 2",
        "dynamic_batching.max_queue_delay_microseconds: 100 -> 500",
    ]
    assert config_diff(MLP, found["i1_b64_d100"].config) == []
    off = variants(Space(dynamic_batching=False), MLP, gpu_count=0)[1]
    assert config_diff(MLP, off.config) == ["dynamic_batching: {max_queue_delay_microseconds: 100} -> off"]
    graphs = variants(Space(fields={"optimization.cuda.graphs": [True]}), MLP, gpu_count=0)[1]
    assert config_diff(MLP, graphs.config) == ["optimization: (none) -> {cuda: {graphs: true}}"]


@pytest.mark.parametrize("model", ["mlp_numpy", "torch_mlp", "mixed_inputs", "sequence_mean"])
def test_a_variants_config_pbtxt_parses_back_to_its_config(model: str) -> None:
    config = example_config(model)
    space = read_space({**BRIEF_SPACE, "kind": "KIND_CPU", "dynamic_batching": {"delays_us": [0, 200]}})
    for v in variants(space, config, gpu_count=0):
        text = to_pbtxt(v.config, comment=f"variant {v.name} of {model}\nwritten by the planner")
        assert text.startswith(f"# variant {v.name} of {model}\n# written by the planner\n")
        parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
        assert parsed == json_format.ParseDict(v.config, model_config_pb2.ModelConfig())
        assert json_format.MessageToDict(parsed, preserving_proto_field_name=True)["input"] == config["input"]
        assert f"max_batch_size: {v.config['max_batch_size']}\n" in text


def test_the_original_config_pbtxt_is_the_repositorys_own() -> None:
    text = (REPOSITORY / "torch_mlp" / "config.pbtxt").read_text()
    rendered = to_pbtxt(example_config("torch_mlp"))
    assert text_format.Parse(rendered, model_config_pb2.ModelConfig()) == text_format.Parse(
        text, model_config_pb2.ModelConfig())


def test_a_field_the_schema_does_not_know_is_refused_rather_than_dropped_from_the_pbtxt() -> None:
    with pytest.raises(ConfigError, match="no field named \"shiny_new_field\"") as caught:
        to_pbtxt({**MLP, "shiny_new_field": 1})
    assert caught.value.field == "config" and caught.value.value == "mlp_numpy"


def test_the_modules_examples_run() -> None:
    assert doctest.testmod(space_module).failed == 0
