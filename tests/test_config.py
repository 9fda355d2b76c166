"""Validation of sweep settings (analyzer_widgets.config): bad values are refused before
anything launches, with a ConfigError naming the field and the value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer_widgets import machine
from analyzer_widgets.config import (
    OWNERS,
    SETTINGS_CLASSES,
    ExportSettings,
    LaunchMode,
    MeasurementSettings,
    Protocol,
    ServerSettings,
    SweepSpec,
    declared,
    fingerprint,
    make_settings,
    parse_shape,
    positive_int_list,
)
from analyzer_widgets.errors import AnalyzerError, ConfigError


def spec(**kwargs: object) -> SweepSpec:
    """A valid spec with ``kwargs`` changed."""
    values: dict[str, object] = {"models": ("mlp_numpy",), "model_repository": "repo"}
    values.update(kwargs)
    return SweepSpec(**values)  # type: ignore[arg-type]


# -- positive_int_list / batch sizes / concurrency ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (-4, "-4"),
        (1.5, "1.5"),
        ("abc", "abc"),
        (True, "True"),
        ([], "[]"),
        ("1,,2", "1,,2"),
        ([1, True], "True"),
        ([8, 0], "0"),
        ("", "''"),
    ],
)
def test_bad_batch_sizes_raise_config_error_naming_field_and_value(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec(batch_sizes=value)
    assert info.value.field == "batch_sizes"
    assert shown in str(info.value)
    assert str(info.value).startswith("batch_sizes=")


def test_config_error_is_an_analyzer_error_and_a_value_error() -> None:
    with pytest.raises(ConfigError) as info:
        spec(batch_sizes=0)
    assert isinstance(info.value, AnalyzerError)
    assert isinstance(info.value, ValueError)
    assert info.value.value == 0


def test_concurrency_zero_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        spec(concurrency=0)
    assert info.value.field == "concurrency"
    assert "0" in str(info.value)


def test_concurrency_empty_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one") as info:
        spec(concurrency=[])
    assert info.value.field == "concurrency"


def test_string_list_is_split_stripped_and_deduplicated() -> None:
    assert positive_int_list("batch_sizes", "1, 8,8") == (1, 8)


def test_list_is_deduplicated_keeping_first_order() -> None:
    assert positive_int_list("concurrency", [4, 1, 4, 2, 1]) == (4, 1, 2)


def test_single_number_becomes_a_one_item_tuple() -> None:
    assert positive_int_list("batch_sizes", 16) == (16,)


def test_whole_floats_and_numeric_strings_are_accepted_as_ints() -> None:
    result = positive_int_list("batch_sizes", [2.0, "4", " 8 "])
    assert result == (2, 4, 8)
    assert all(type(v) is int for v in result)


def test_spec_stores_validated_tuples() -> None:
    s = spec(batch_sizes="1,2,2,4", concurrency=[1, 8])
    assert s.batch_sizes == (1, 2, 4)
    assert s.concurrency == (1, 8)
    assert s.points_per_model == 6


def test_numpy_integers_are_accepted_as_batch_sizes() -> None:
    assert positive_int_list("batch_sizes", np.arange(1, 9, 4)) == (1, 5)


# -- models / repository / input data ----------------------------------------------------------


@pytest.mark.parametrize("models", [(), [], ""])
def test_empty_models_are_refused(models: object) -> None:
    with pytest.raises(ConfigError, match="at least one model") as info:
        spec(models=models)
    assert info.value.field == "models"


def test_blank_model_name_in_list_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        spec(models=["a", "  "])
    assert info.value.field == "models"
    assert "'  '" in str(info.value)


def test_models_string_is_split_and_deduplicated() -> None:
    assert spec(models=" a, b,a").models == ("a", "b")


def test_local_mode_without_repository_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        SweepSpec(models=("m",))
    assert info.value.field == "model_repository"


def test_remote_mode_needs_no_repository() -> None:
    s = SweepSpec(models=("m",), server=ServerSettings(launch_mode="remote", url="localhost:8001"))
    assert s.model_repository is None
    assert s.server.launch_mode is LaunchMode.REMOTE


def test_input_data_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        spec(input_data="ones")
    assert info.value.field == "input_data"
    assert "'ones'" in str(info.value)


@pytest.mark.parametrize("name", ["missing.npz", "inputs.npy"])
def test_input_data_must_be_an_existing_npz_file(name: str, tmp_path: Path) -> None:
    np.save(tmp_path / "inputs.npy", np.zeros(4))
    path = str(tmp_path / name)
    with pytest.raises(ConfigError, match=r"\.npz") as info:
        spec(input_data=path)
    assert info.value.field == "input_data"
    assert path in str(info.value)


def test_input_data_accepts_random_zero_and_an_existing_npz(tmp_path: Path) -> None:
    npz = tmp_path / "inputs.npz"
    np.savez(npz, INPUT0=np.zeros(4, dtype=np.float32))
    assert spec(input_data="random").input_data == "random"
    assert spec(input_data="zero").input_data == "zero"
    assert spec(input_data=str(npz)).input_data == str(npz)


def test_input_shapes_are_validated_and_stored_as_tuples() -> None:
    assert spec(input_shapes={"SEQUENCE": [128, 32]}).input_shapes == {"SEQUENCE": (128, 32)}
    with pytest.raises(ConfigError) as info:
        spec(input_shapes={"SEQUENCE": (0, 32)})
    assert info.value.field == "input_shapes"
    assert "SEQUENCE" in str(info.value)


# -- ServerSettings ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, -1, 70000, 65536])
@pytest.mark.parametrize("name", ["http_port", "grpc_port", "metrics_port"])
def test_bad_port_is_refused_naming_the_port_field(name: str, port: int) -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings(**{name: port})  # type: ignore[arg-type]
    assert info.value.field == name
    assert str(port) in str(info.value)


def test_port_bounds_are_inclusive() -> None:
    s = ServerSettings(http_port=1, grpc_port=65535, metrics_port="8002")  # type: ignore[arg-type]
    assert (s.http_port, s.grpc_port, s.metrics_port) == (1, 65535, 8002)


def test_duplicate_ports_are_refused() -> None:
    with pytest.raises(ConfigError, match="must differ") as info:
        ServerSettings(http_port=8000, grpc_port=8001, metrics_port=8000)
    assert info.value.field == "ports"
    assert "8000" in str(info.value)


def test_remote_mode_without_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="URL") as info:
        ServerSettings(launch_mode=LaunchMode.REMOTE)
    assert info.value.field == "url"


def test_unknown_launch_mode_is_refused_listing_the_modes() -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings(launch_mode="kubernetes")  # type: ignore[arg-type]
    assert info.value.field == "launch_mode"
    assert "kubernetes" in str(info.value)
    assert "local, docker, remote" in str(info.value)


def test_server_settings_default_to_localhost_and_normalise_types() -> None:
    s = ServerSettings(launch_mode="docker", triton_version="24.08", extra_args=["--log-verbose=1"], log_path="~/triton.log")  # type: ignore[arg-type]
    assert s.host == "127.0.0.1"
    assert s.launch_mode is LaunchMode.DOCKER
    assert s.extra_args == ("--log-verbose=1",)
    assert s.log_path == Path("~/triton.log").expanduser()


# -- MeasurementSettings -------------------------------------------------------------------------


@pytest.mark.parametrize("pct", [0, 100, -5, 150, float("nan")])
def test_stability_pct_outside_zero_to_hundred_is_refused(pct: float) -> None:
    with pytest.raises(ConfigError) as info:
        MeasurementSettings(stability_pct=pct)
    assert info.value.field == "stability_pct"
    assert repr(pct) in str(info.value)


def test_stability_pct_bool_is_refused() -> None:
    with pytest.raises(ConfigError):
        MeasurementSettings(stability_pct=True)


def test_max_trials_below_stable_windows_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        MeasurementSettings(stable_windows=5, max_trials=4)
    assert info.value.field == "max_trials"
    assert "max_trials=4" in str(info.value)
    assert "5" in info.value.reason


def test_max_trials_equal_to_stable_windows_is_allowed() -> None:
    assert MeasurementSettings(stable_windows=4, max_trials=4).max_trials == 4


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        MeasurementSettings(protocol="udp")  # type: ignore[arg-type]
    assert info.value.field == "protocol"
    assert MeasurementSettings(protocol="http").protocol is Protocol.HTTP  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "value"), [("window_ms", 0), ("client_processes", -1), ("warmup_requests", True)])
def test_other_bad_measurement_settings_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        MeasurementSettings(**{name: value})  # type: ignore[arg-type]
    assert info.value.field == name


def test_processes_for_never_exceeds_fixed_processes_or_concurrency() -> None:
    m = MeasurementSettings(client_processes=3)
    assert m.processes_for(2) == 2
    assert m.processes_for(3) == 3
    assert m.processes_for(64) == 3


def test_processes_for_automatic_follows_cpu_count_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "usable_cpu_count", lambda: 16)
    assert MeasurementSettings().processes_for(16) == 14  # two cores left to the server
    monkeypatch.setattr(machine, "usable_cpu_count", lambda: 2)
    assert MeasurementSettings().processes_for(16) == 1
    monkeypatch.undo()
    m = MeasurementSettings()
    spare = min(max(1, machine.usable_cpu_count() - 2), 32)
    assert m.processes_for(1) == 1
    assert m.processes_for(1000) == spare
    assert 1 <= m.processes_for(2) <= 2


# -- parse_shape ---------------------------------------------------------------------------------


def test_parse_shape_reads_name_and_dims() -> None:
    assert parse_shape("shape", "SEQUENCE:128,32") == ("SEQUENCE", (128, 32))


def test_parse_shape_splits_on_last_colon() -> None:
    assert parse_shape("shape", "scope:INPUT:4") == ("scope:INPUT", (4,))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("SEQUENCE", "INPUT_NAME:D1,D2"),
        (":4", "INPUT_NAME:D1,D2"),
        ("SEQUENCE:", "whole numbers"),
        ("SEQUENCE:128,x", "whole numbers"),
        ("SEQUENCE:0,32", "1 or more"),
        ("SEQUENCE:-1,32", "1 or more"),
    ],
)
def test_parse_shape_rejects_bad_text(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        parse_shape("shape", text)
    assert info.value.field == "shape"
    assert text in str(info.value)


def test_setting_names_are_unique_across_the_settings_classes() -> None:
    # flat keyword settings are routed by name: a name in two classes would be misrouted
    names = [f.name for cls in SETTINGS_CLASSES for f, _ in declared(cls)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert set(OWNERS) == set(names)


def test_a_name_declared_twice_is_refused_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from analyzer_widgets import config

    @dataclasses.dataclass(frozen=True)
    class Clash:
        window_ms: int = config.setting(5, help="a second window_ms")

    monkeypatch.setattr(config, "SETTINGS_CLASSES", (*config.SETTINGS_CLASSES, Clash))
    with pytest.raises(TypeError, match="window_ms.*MeasurementSettings and Clash"):
        config._owners()


def test_every_setting_has_help_and_its_flags_are_unique() -> None:
    flags: list[str] = []
    for cls in SETTINGS_CLASSES:
        for f, s in declared(cls):
            assert s.help.strip(), f.name
            flags += s.flags
    assert len(flags) == len(set(flags))


def test_make_settings_routes_each_setting_to_its_class_and_refuses_unknown_names() -> None:
    spec, export = make_settings(models="a", model_repository="r", window_ms="250", url="h:1", launch_mode="remote",
                                 nvml=False, export_path="out", resume=True)
    assert spec.measurement.window_ms == 250 and spec.server.url == "h:1" and spec.monitor.nvml is False
    assert export.export_path == Path("out") and export.resume and export.directory == Path("out")
    with pytest.raises(ConfigError, match="is not a setting") as info:
        make_settings(models="a", model_repository="r", windw_ms=250)
    assert info.value.field == "windw_ms"
    with pytest.raises(ConfigError, match="is required") as info:
        make_settings(model_repository="r")
    assert info.value.field == "models"


def test_export_settings_refuse_resume_with_overwrite_and_keep_apart_without_resume() -> None:
    with pytest.raises(ConfigError, match="exclude each other") as info:
        ExportSettings(resume=True, overwrite=True)
    assert info.value.field == "resume"
    with pytest.raises(ConfigError, match="only applies when resuming") as info:
        ExportSettings(keep_apart=True)
    assert info.value.field == "keep_apart"
    assert ExportSettings(export_path="x", write_files=False).directory is None


def test_the_fingerprint_is_every_setting_declared_to_shape_the_figures(tmp_path: Path) -> None:
    shaping = {f.name for cls in SETTINGS_CLASSES for f, s in declared(cls) if s.fingerprint}
    base = spec()
    assert set(fingerprint(base)) == shaping
    assert {"window_ms", "batch_sizes", "protocol", "launch_mode", "input_data"} <= shaping
    assert "nvml_interval_s" not in shaping and "export_path" not in shaping
    assert fingerprint(spec(batch_sizes=[1, 2])) != fingerprint(base)
    assert fingerprint(spec(measurement=MeasurementSettings(window_ms=500))) != fingerprint(base)
    npz = tmp_path / "in.npz"
    np.savez(npz, X=np.zeros(2))
    first = fingerprint(spec(input_data=str(npz)))["input_data"]
    np.savez(npz, X=np.ones(2))
    assert first.startswith("npz:") and fingerprint(spec(input_data=str(npz)))["input_data"] != first


def test_docker_mode_needs_an_image_or_a_version() -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings(launch_mode="docker")
    assert info.value.field == "triton_image" and "--triton-version" in str(info.value)
    assert ServerSettings(launch_mode="docker", triton_image="local/triton:1").triton_image == "local/triton:1"


@pytest.mark.parametrize(("given", "kept"), [
    ("auto", "auto"), (" ALL ", "all"), ("none", "none"), ("0", "0"), ("0, 1", "0,1"),
    ("GPU-5b7c3a1e-0000-1111-2222-333344445555", "GPU-5b7c3a1e-0000-1111-2222-333344445555"),
])
def test_gpus_are_keywords_or_gpu_indexes_and_uuids(given: str, kept: str) -> None:
    assert ServerSettings(gpus=given).gpus == kept


@pytest.mark.parametrize(("given", "shown"), [
    ("", "''"), ("0,,1", "'0,,1'"), ("first", "'first'"), ("0,0", "'0,0'"), ("GPU-", "'GPU-'"), ("-1", "'-1'"),
])
def test_bad_gpus_name_the_field_and_the_value(given: str, shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ServerSettings(gpus=given)
    assert raised.value.field == "gpus" and shown in str(raised.value)


def test_docker_device_requests_follow_the_gpu_selection() -> None:
    from analyzer_widgets.server.docker import device_requests

    assert device_requests("none", host_has_gpus=True) == []
    assert device_requests("auto", host_has_gpus=False) == []
    every = device_requests("auto", host_has_gpus=True)
    assert every == device_requests("all", host_has_gpus=False)
    assert [(r["Count"], r["DeviceIDs"], r["Capabilities"]) for r in every] == [(-1, [], [["gpu"]])]
    listed = device_requests(ServerSettings(gpus="1, GPU-abc").gpus, host_has_gpus=True)
    assert [(r["Count"], r["DeviceIDs"]) for r in listed] == [(0, ["1", "GPU-abc"])]


@pytest.mark.parametrize(("headers", "shown"), [
    ({"X-Key": "a\r\nX-Other: b"}, "line break"), ({"X Key": "a"}, "'X Key' is not a header name"),
    ({"": "a"}, "'' is not a header name"), ({"X:Key": "a"}, "is not a header name"),
])
def test_headers_that_would_break_a_request_name_the_field(headers: dict[str, str], shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ServerSettings(headers=headers)
    assert raised.value.field == "headers" and shown in str(raised.value)


def test_headers_are_kept_stripped() -> None:
    assert ServerSettings(headers={" X-Key ": " secret "}).headers == {"X-Key": "secret"}
