"""The planner's search space: which model-config variants of a model to measure.

A :class:`Space` declares the choices; :func:`variants` checks them against the model's own
config (as the server gives it: ``get_model_config(..., as_json=True)``, field names as in
config.pbtxt) and against the machine, then lists every combination as a :class:`Variant`:
a short name, the values it sets (the plan.csv columns) and the whole config to load through
the repository API's config override (../shared/DESIGN.md, "Model-config variants"). Nothing
here talks to a server; a value the model cannot take is a
:class:`~analyzer_widgets.errors.ConfigError` naming the field and the value before anything
runs.

The space's keys, each optional (left out: every variant keeps the model's own):

- ``instances``: instance counts, set on every instance group (``count`` is per group, and
  per listed GPU in a GPU group, as Triton counts it, so a model spread over groups keeps its
  layout); a model without ``instance_group`` gets one group.
- ``kind``: one or a list of KIND_CPU, KIND_GPU, KIND_MODEL, KIND_AUTO, set on every group;
  a group that changes kind away from KIND_GPU loses its ``gpus`` list (Triton refuses device
  ids on a CPU group).
- ``max_batch_size``: values above 0, for a model that batches (its own is above 0).
- ``dynamic_batching``: ``false`` (off on every variant: the key is removed) or a table:
  ``delays_us`` (``max_queue_delay_microseconds`` values; default ``[0]``),
  ``preferred_batch_size`` (a list of lists; ``[]`` among them for none; left out: the model's
  own) and ``include_off`` (``true``: one more choice, off). The model's other dynamic
  batching fields (priorities, queue policy) are kept.
- ``fields``: any other config field by its dotted path through sections (``parameters``
  is a section keyed by the parameter's name), each with a list of values. Each is checked
  against Triton's own schema (model_config.proto as tritonclient ships it): a field it
  lacks, or a value of the wrong type, is refused.

A file holds those keys: TOML, JSON, or YAML where PyYAML is importable::

    instances = [1, 2]
    kind = "KIND_GPU"
    max_batch_size = [8, 16]

    [dynamic_batching]
    delays_us = [0, 200]
    preferred_batch_size = [[4, 8]]

    [fields]
    "optimization.cuda.graphs" = [true, false]

(In TOML quote a dotted path, or write it as nested tables: both read the same.)

The default space (:func:`default_space`): instance counts 1-4 of the model's own kind;
for a model that batches, ``max_batch_size`` over powers of two up to its own (its own
included), thinned to 4 values spread evenly on the log scale (64 gives 1, 4, 16, 64; never
below its own largest preferred batch size, which is kept), and dynamic batching on with a
delay of 0, 100 or 500 µs (no wait; a wait short beside a millisecond inference; a long one
that fills batches at low load). So at most 4 x 4 x 3 = 48 variants, plus the model's own
config where it is not one of them: few enough that a brute search can measure each.
A model that does not batch varies only its instances (4 variants); one with a sequence
batcher or an ensemble scheduler keeps its scheduler.

Every variant's name has one part per key the space sets, joined by ``_``: ``i2`` (2
instances; ``i2gpu`` where the space sets the kind), ``b16`` (max batch size), ``d500``
(delay in µs; ``d500p4-8`` with preferred sizes 4 and 8; ``nodb`` for off), and per field
its last path name and the value (``graphs-true``; ``graphs-v0`` where values make poor
names). The variant whose config equals the model's own is marked ``original``; where none
does, the model's own config comes first as a variant named ``original``. The rest follow in
the order of the space's keys above, each key's values in the order given.

>>> config = {"name": "m", "max_batch_size": 8, "instance_group": [{"kind": "KIND_CPU", "count": 1}]}
>>> found = variants(Space(instances=(1, 2), max_batch_size=(4, 8)), config, gpu_count=0)
>>> [(v.name, v.original) for v in found]
[('i1_b4', False), ('i1_b8', True), ('i2_b4', False), ('i2_b8', False)]
>>> config_diff(config, found[3].config)
['instance_group[0].count: 1 -> 2']
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyzer_widgets.config import count, distinct, flag, positive_int
from analyzer_widgets.errors import ConfigError

KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL")
DEFAULT_INSTANCES = (1, 2, 3, 4)
DEFAULT_DELAYS_US = (0, 100, 500)
#: how many max_batch_size values the default space spreads over (it keeps the space at 48)
DEFAULT_MAX_BATCH_SIZE_COUNT = 4
ORIGINAL = "original"
#: the keys of a space file, and of its dynamic_batching table
KEYS = ("instances", "kind", "max_batch_size", "dynamic_batching", "fields")
BATCHING_KEYS = ("delays_us", "preferred_batch_size", "include_off")
#: config paths that the space's own keys set (and check); a field may not set them around the checks
OWN_PATHS = {
    "max_batch_size": "max_batch_size",
    "instance_group": "instances and kind",
    "dynamic_batching": "dynamic_batching",
    "dynamic_batching.max_queue_delay_microseconds": "dynamic_batching.delays_us",
    "dynamic_batching.preferred_batch_size": "dynamic_batching.preferred_batch_size",
}
#: schedulers a model takes instead of the dynamic batcher (one ``scheduling_choice`` in the proto)
OTHER_SCHEDULERS = ("sequence_batching", "ensemble_scheduling")
_ABSENT: Any = object()


# -- the declaration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DynamicBatching:
    """Dynamic batching on, each variant with one delay and one list of preferred sizes, and,
    with ``include_off``, off as one more choice.

    >>> DynamicBatching(delays_us=[0, 100], preferred_batch_size=[[4, 8], []]).to_dict()
    {'delays_us': [0, 100], 'preferred_batch_size': [[4, 8], []]}
    """

    delays_us: tuple[int, ...] = (0,)
    #: None: each variant keeps the model's own preferred sizes; () among the lists: none
    preferred_batch_size: tuple[tuple[int, ...], ...] | None = None
    include_off: bool = False

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("delays_us", _whole_list("dynamic_batching.delays_us", self.delays_us, count))
        if self.preferred_batch_size is not None:
            set_("preferred_batch_size", _preferred_lists("dynamic_batching.preferred_batch_size",
                                                          self.preferred_batch_size))
        set_("include_off", flag("dynamic_batching.include_off", self.include_off))

    def choices(self) -> tuple[_Batching | None, ...]:
        """Each variant's dynamic batching: on with a delay and preferred sizes, or None (off)."""
        preferred = self.preferred_batch_size if self.preferred_batch_size is not None else (None,)
        on = tuple(_Batching(d, p) for d, p in itertools.product(self.delays_us, preferred))
        return (*on, None) if self.include_off else on

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"delays_us": list(self.delays_us)}
        if self.preferred_batch_size is not None:
            out["preferred_batch_size"] = [list(p) for p in self.preferred_batch_size]
        if self.include_off:
            out["include_off"] = True
        return out


@dataclass(frozen=True)
class _Batching:
    delay_us: int
    preferred: tuple[int, ...] | None  # None: the model's own


@dataclass(frozen=True)
class Space:
    """The choices to combine. ``()`` (the default) keeps the model's own; an empty list is an
    error. ``dynamic_batching``: None keeps the model's own, False turns it off, True is
    :class:`DynamicBatching` with its defaults; a dict is read as its keys.

    >>> Space(instances=[1, 2], dynamic_batching={"delays_us": [0, 200]}).size
    4
    """

    instances: tuple[int, ...] = ()
    kind: tuple[str, ...] = ()
    max_batch_size: tuple[int, ...] = ()
    dynamic_batching: DynamicBatching | bool | None = None
    #: config path -> the values to try (a nested dict of sections is read as dotted paths)
    fields: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        if self.instances != ():
            set_("instances", _whole_list("instances", self.instances, positive_int))
        if self.kind != ():
            set_("kind", _kinds("kind", self.kind))
        if self.max_batch_size != ():
            set_("max_batch_size", _whole_list("max_batch_size", self.max_batch_size, positive_int))
        set_("dynamic_batching", _batching_declaration(self.dynamic_batching))
        set_("fields", _fields(self.fields))

    @property
    def size(self) -> int:
        """How many variants the grid holds (the model's own config may be one more)."""
        dims = _dimensions(self)
        return math.prod(len(choices) for choices in dims) if dims else 0

    def to_dict(self) -> dict[str, Any]:
        """The space as a file holds it (JSON-ready): what :func:`read_space` reads back."""
        out: dict[str, Any] = {}
        for key in ("instances", "kind", "max_batch_size"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.dynamic_batching is False:
            out["dynamic_batching"] = False
        elif isinstance(self.dynamic_batching, DynamicBatching):
            out["dynamic_batching"] = self.dynamic_batching.to_dict()
        if self.fields:
            out["fields"] = {path: list(values) for path, values in self.fields.items()}
        return out


@dataclass(frozen=True)
class Variant:
    """One model config to measure. ``fields``: the value of each key the space sets, by
    config path (the plan.csv columns; the same keys for every variant of a space).
    ``config``: the whole config to load (``load_model(name, config=variant.config_json())``).
    ``original``: this config equals the model's own."""

    name: str
    fields: Mapping[str, Any] = field(compare=False, hash=False)
    config: dict[str, Any] = field(compare=False, hash=False)
    original: bool = False

    def config_json(self) -> str:
        return json.dumps(self.config)


# -- checks of the declaration (no model needed) ---------------------------------------------------
def _as_list(name: str, values: object) -> list[Any]:
    """A list of choices: a single value is a list of one; an empty list is refused."""
    items = list(values) if isinstance(values, list | tuple) else [values]
    if not items:
        raise ConfigError(name, values, "is an empty list: give at least one value, or leave the key out "
                                        "for its default")
    return items


def _whole_list(name: str, values: object, check: Callable[[str, object], int]) -> tuple[int, ...]:
    return distinct(name, values, _as_list(name, values), check)


def _preferred_lists(name: str, values: object) -> tuple[tuple[int, ...], ...]:
    out: list[tuple[int, ...]] = []
    for item in _as_list(name, values):
        if not isinstance(item, list | tuple):
            # [4, 8] could mean one list or two: make the user say which
            raise ConfigError(name, values, "must be a list of lists of batch sizes, e.g. [[4, 8]] "
                                            "(one choice: 4 and 8), [[4], [8]] (two), [[]] (none)")
        sizes = _whole_list(name, item, positive_int) if item else ()
        if sizes not in out:
            out.append(sizes)
    return tuple(out)


def _kinds(name: str, values: object) -> tuple[str, ...]:
    out: list[str] = []
    for item in _as_list(name, values):
        kind = str(item).strip().upper()
        kind = kind if kind.startswith("KIND_") else f"KIND_{kind}"
        if kind not in KINDS:
            raise ConfigError(name, values, f"{item!r} is not an instance kind; the kinds are {', '.join(KINDS)}")
        if kind not in out:
            out.append(kind)
    return tuple(out)


def _known_keys(data: Mapping[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key, value in data.items():
        if key not in keys:
            raise ConfigError(f"{prefix}{key}", value, f"is not a key of the space; the keys are "
                                                       f"{', '.join(prefix + k for k in keys)}")


def _batching_declaration(value: object) -> DynamicBatching | bool | None:
    if value is None or value is False or isinstance(value, DynamicBatching):
        return value
    if value is True:
        return DynamicBatching()
    if isinstance(value, Mapping):
        _known_keys(value, BATCHING_KEYS, "dynamic_batching.")
        return DynamicBatching(**value)
    raise ConfigError("dynamic_batching", value, "must be false (off) or a table of "
                                                 f"{', '.join(BATCHING_KEYS)} (on)")


def _flat_paths(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted paths out of nested sections: TOML reads an unquoted a.b.c key as nested tables."""
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _flat_paths(value, path)
        else:
            yield path, value


def _fields(data: object) -> dict[str, tuple[Any, ...]]:
    if not isinstance(data, Mapping):
        raise ConfigError("fields", data, "must map config paths to lists of values, "
                                          "e.g. {'optimization.cuda.graphs': [true, false]}")
    out: dict[str, tuple[Any, ...]] = {}
    for path, values in _flat_paths(data):
        if any(not part for part in path.split(".")):
            raise ConfigError(path, values, "is not a config path: write section names joined by dots")
        if path in OWN_PATHS or path.startswith("instance_group."):
            key = OWN_PATHS.get(path, OWN_PATHS["instance_group"])
            raise ConfigError(path, values, f"is set by the space's own key ({key}), which checks it: use that")
        unique: dict[str, Any] = {}
        for value in _as_list(path, values):
            unique.setdefault(json.dumps(value, sort_keys=True), value)
        out[path] = tuple(unique.values())
    return out


def _check_field_value(path: str, value: Any) -> None:
    """Refuse a field Triton's model config does not have, or a value of the wrong type, using
    its own schema (model_config.proto as tritonclient ships it)."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    nested: Any = value
    for part in reversed(path.split(".")):
        nested = {part: nested}
    try:
        json_format.ParseDict(nested, model_config_pb2.ModelConfig())
    except json_format.ParseError as e:
        raise ConfigError(path, value, f"Triton's model config does not take it: {' '.join(str(e).split())}") from e


# -- reading a space ---------------------------------------------------------------------------
def read_space(source: str | os.PathLike[str] | Mapping[str, Any]) -> Space:
    """A space from a file (.toml, .json; .yaml or .yml where PyYAML is importable) or a dict
    of the same keys. Unknown keys, empty lists and bad values are ConfigErrors.

    >>> read_space({"instances": [1, 2], "dynamic_batching": False}).to_dict()
    {'instances': [1, 2], 'dynamic_batching': False}
    """
    data = source if isinstance(source, Mapping) else _load_file(Path(source))
    if not isinstance(data, Mapping):
        raise ConfigError("space", data, f"must be a table of the keys {', '.join(KEYS)}")
    _known_keys(data, KEYS, "")
    return Space(**{key: value for key, value in data.items()})


def _load_file(path: Path) -> Any:
    readers: dict[str, Callable[[str], Any]] = {".toml": _parse_toml, ".json": json.loads,
                                                ".yaml": _parse_yaml, ".yml": _parse_yaml}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ConfigError("space", str(path), "must be a .toml, .json, .yaml or .yml file")
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("space", str(path), f"cannot be read: {e.strerror or e}") from e
    try:
        data = reader(text)
    except ConfigError:
        raise
    except ValueError as e:  # tomllib's, json's and PyYAML's parse errors (PyYAML's is wrapped)
        raise ConfigError("space", str(path), f"is not valid {path.suffix[1:].upper()}: {e}") from e
    return {} if data is None else data  # an empty YAML file is None


def _parse_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, as a package
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("space", "TOML", "needs Python 3.11 or the tomli package; "
                                               "or write the space as JSON") from None
    return tomllib.loads(text)


def _parse_yaml(text: str) -> Any:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError("space", "YAML", "needs PyYAML (pip install pyyaml); or write the space as "
                                           "TOML or JSON") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(" ".join(str(e).split())) from e


# -- the default space --------------------------------------------------------------------------
def _own_max_batch_size(config: Mapping[str, Any]) -> int:
    return int(config.get("max_batch_size") or 0)


def _own_preferred(config: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(s) for s in (config.get("dynamic_batching") or {}).get("preferred_batch_size") or ())


def _other_scheduler(config: Mapping[str, Any]) -> str | None:
    return next((key for key in OTHER_SCHEDULERS if config.get(key) is not None), None)


def default_max_batch_sizes(own: int, floor: int = 1) -> tuple[int, ...]:
    """Powers of two from ``floor`` up to ``own`` and ``own`` itself, thinned to
    :data:`DEFAULT_MAX_BATCH_SIZE_COUNT` values spread evenly (the ends kept).

    >>> default_max_batch_sizes(64), default_max_batch_sizes(48), default_max_batch_sizes(64, floor=32)
    ((1, 4, 16, 64), (1, 4, 16, 48), (32, 64))
    """
    sizes = [2 ** k for k in range(own.bit_length()) if floor <= 2 ** k < own] + [own]
    if len(sizes) <= DEFAULT_MAX_BATCH_SIZE_COUNT:
        return tuple(sizes)
    last = len(sizes) - 1
    steps = DEFAULT_MAX_BATCH_SIZE_COUNT - 1
    return tuple(sizes[round(i * last / steps)] for i in range(DEFAULT_MAX_BATCH_SIZE_COUNT))


def default_space(config: Mapping[str, Any]) -> Space:
    """The space searched when the user gives none (the module's docstring says why these).

    >>> default_space({"max_batch_size": 0}).to_dict()
    {'instances': [1, 2, 3, 4]}
    >>> default_space({"max_batch_size": 64}).to_dict()["max_batch_size"]
    [1, 4, 16, 64]
    """
    if config.get("platform") == "ensemble" or config.get("ensemble_scheduling") is not None:
        return Space()  # an ensemble has no instances or batcher of its own: its steps' models do
    own_max = _own_max_batch_size(config)
    if own_max == 0:
        return Space(instances=DEFAULT_INSTANCES)
    # the model's own preferred sizes are kept, so no max batch size below them
    floor = max(_own_preferred(config), default=1)
    batching = None if _other_scheduler(config) else DynamicBatching(delays_us=DEFAULT_DELAYS_US)
    return Space(instances=DEFAULT_INSTANCES, max_batch_size=default_max_batch_sizes(own_max, floor),
                 dynamic_batching=batching)


# -- checks against the model and the machine ------------------------------------------------------
def check_space(space: Space, config: Mapping[str, Any], *, gpu_count: int) -> None:
    """Refuse what the model or the machine cannot take, naming the field and the value.
    :func:`variants` calls it; call it alone to check a space before a plan starts."""
    count("gpu_count", gpu_count)
    _check_batching(space, config)
    _check_preferred(space, config)
    _check_kinds(space, config, gpu_count)
    for path, values in space.fields.items():
        _check_field_path(path, list(values), space, config)
        for value in values:
            _check_field_value(path, value)


def _check_batching(space: Space, config: Mapping[str, Any]) -> None:
    batching = space.dynamic_batching
    name = config.get("name", "the model")
    if _own_max_batch_size(config) == 0:
        why = (f"model {name!r} does not batch (its max_batch_size is 0, so its inputs have no batch "
               "dimension); leave this key out of the space")
        if isinstance(batching, DynamicBatching) and batching.preferred_batch_size not in (None, ((),)):
            raise ConfigError("dynamic_batching.preferred_batch_size", batching.to_dict()["preferred_batch_size"], why)
        if isinstance(batching, DynamicBatching):
            raise ConfigError("dynamic_batching", batching.to_dict(), why)
        if space.max_batch_size:
            raise ConfigError("max_batch_size", list(space.max_batch_size), why)
    scheduler = _other_scheduler(config)
    if isinstance(batching, DynamicBatching) and scheduler:
        raise ConfigError("dynamic_batching", batching.to_dict(),
                          f"model {name!r} uses {scheduler}, and Triton takes one scheduler per model")


def _check_preferred(space: Space, config: Mapping[str, Any]) -> None:
    batching = space.dynamic_batching
    if batching is False or _own_max_batch_size(config) == 0:
        return
    if isinstance(batching, DynamicBatching) and batching.preferred_batch_size is not None:
        lists, whose = batching.preferred_batch_size, ""
    else:
        lists, whose = (_own_preferred(config),), (" (the model's own, which this space keeps: set "
                                                   "dynamic_batching.preferred_batch_size, [[]] for none)")
    where = "which variants of this space have" if space.max_batch_size else "the model's own"
    for max_batch in space.max_batch_size or (_own_max_batch_size(config),):
        for sizes in lists:
            above = [s for s in sizes if s > max_batch]
            if above:
                raise ConfigError("dynamic_batching.preferred_batch_size", list(sizes),
                                  f"{above[0]} is above max_batch_size {max_batch}, {where}; a preferred batch "
                                  f"size must be at most the max batch size{whose}")


def _check_kinds(space: Space, config: Mapping[str, Any], gpu_count: int) -> None:
    if gpu_count > 0:
        return
    own = [group.get("kind", "KIND_AUTO") for group in config.get("instance_group") or ()]
    if "KIND_GPU" in (space.kind or own):
        whose = "" if space.kind else ("; it is the model's own instance kind, which this space keeps: set kind "
                                       "to KIND_CPU in the space")
        raise ConfigError("kind", "KIND_GPU", f"this machine has no GPU (gpu_count=0){whose}")


def _check_field_path(path: str, values: list[Any], space: Space, config: Mapping[str, Any]) -> None:
    """Refuse a path that is clearly wrong for this config: through a value that is not a
    section, onto a section, or into dynamic batching where some variants have it off."""
    parts = path.split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            break  # not in the config from here on: sections are made as needed
        node = node[part]
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if not last and not isinstance(node, Mapping):
            what = "a list" if isinstance(node, list) else repr(node)
            raise ConfigError(path, values, f"{here} in the model's config is {what}, not a section: "
                                            "a path goes through sections only")
        if last and isinstance(node, Mapping) and not all(isinstance(v, Mapping) for v in values):
            raise ConfigError(path, values, f"{here} is a section of the model's config: name a field inside it")
    if parts[0] == "dynamic_batching" and _some_off(space, config):
        raise ConfigError(path, values, "some variants of this space have dynamic batching off (include_off, "
                                        "dynamic_batching = false, or the model's own is off and the space keeps "
                                        "it), and there this field has nowhere to go")


def _some_off(space: Space, config: Mapping[str, Any]) -> bool:
    batching = space.dynamic_batching
    if batching is None:
        return config.get("dynamic_batching") is None
    return batching.include_off if isinstance(batching, DynamicBatching) else batching is False


# -- the variants ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Choice:
    label: str  # the name's part: no "_", which joins the parts
    apply: Callable[[dict[str, Any]], None]


def _set_instances(count: int | None, kind: str | None, config: dict[str, Any]) -> None:
    groups = [dict(group) for group in config.get("instance_group") or [{}]]
    for group in groups:
        if count is not None:
            group["count"] = count
        if kind is not None and group.get("kind") != kind:
            group["kind"] = kind
            if kind != "KIND_GPU":
                group.pop("gpus", None)  # Triton refuses device ids on a group that is not on a GPU
    config["instance_group"] = groups


def _set_max_batch_size(value: int, config: dict[str, Any]) -> None:
    config["max_batch_size"] = value


def _set_batching(choice: _Batching | None, config: dict[str, Any]) -> None:
    if choice is None:
        config.pop("dynamic_batching", None)
        return
    batching = dict(config.get("dynamic_batching") or {})
    batching["max_queue_delay_microseconds"] = choice.delay_us
    if choice.preferred:
        batching["preferred_batch_size"] = list(choice.preferred)
    elif choice.preferred is not None:
        batching.pop("preferred_batch_size", None)
    config["dynamic_batching"] = batching


def _set_field(path: str, value: Any, config: dict[str, Any]) -> None:
    *sections, leaf = path.split(".")
    node = config
    for part in sections:
        node = node.setdefault(part, {})  # _check_field_path made sure an existing one is a section
    node[leaf] = copy.deepcopy(value)


def _label_text(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "", text)


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _field_choices(path: str, values: tuple[Any, ...]) -> list[_Choice]:
    parts = path.split(".")
    # parameters.NAME.string_value: the parameter's name says more than string_value
    stem = _label_text(parts[-2] if parts[-1] == "string_value" and len(parts) > 1 else parts[-1])
    texts = [_label_text(_value_text(v)) for v in values]
    if len(set(texts)) < len(texts) or any(not t or len(t) > 16 for t in texts):
        texts = [f"v{i}" for i in range(len(values))]  # unique where the values' own text would not be
    return [_Choice(f"{stem}-{text}", functools.partial(_set_field, path, value)) for text, value in zip(texts, values, strict=True)]


def _batching_label(choice: _Batching | None) -> str:
    if choice is None:
        return "nodb"
    preferred = f"p{'-'.join(map(str, choice.preferred))}" if choice.preferred else ""
    return f"d{choice.delay_us}{preferred}"


def _dimensions(space: Space) -> list[list[_Choice]]:
    """One list of choices per key the space sets, in the order of the names' parts."""
    dims: list[list[_Choice]] = []
    if space.instances or space.kind:
        dims.append([_Choice((f"i{n}" if n else "") + (k.removeprefix("KIND_").lower() if k else ""),
                             functools.partial(_set_instances, n, k))
                     for n in space.instances or (None,) for k in space.kind or (None,)])
    if space.max_batch_size:
        dims.append([_Choice(f"b{n}", functools.partial(_set_max_batch_size, n)) for n in space.max_batch_size])
    batching = space.dynamic_batching
    if batching is not None:
        choices = batching.choices() if isinstance(batching, DynamicBatching) else (None,)
        dims.append([_Choice(_batching_label(c), functools.partial(_set_batching, c)) for c in choices])
    dims += [_field_choices(path, values) for path, values in space.fields.items()]
    return dims


def _read_path(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _settings_of(config: Mapping[str, Any], space: Space) -> dict[str, Any]:
    """The value of each key the space sets, as ``config`` has it: a variant's plan.csv columns."""
    out: dict[str, Any] = {}
    first_group = (config.get("instance_group") or [{}])[0]
    if space.instances:
        out["instance_group.count"] = int(first_group.get("count", 1))  # Triton's default count
    if space.kind:
        out["instance_group.kind"] = first_group.get("kind", "KIND_AUTO")
    if space.max_batch_size:
        out["max_batch_size"] = _own_max_batch_size(config)
    if space.dynamic_batching is not None:
        batching = config.get("dynamic_batching")
        out["dynamic_batching"] = batching is not None
        if isinstance(space.dynamic_batching, DynamicBatching):
            delay = None if batching is None else int(batching.get("max_queue_delay_microseconds") or 0)
            out["dynamic_batching.max_queue_delay_microseconds"] = delay
            if space.dynamic_batching.preferred_batch_size is not None:
                out["dynamic_batching.preferred_batch_size"] = None if batching is None else _own_preferred(config)
    for path in space.fields:
        out[path] = _read_path(config, path)
    return out


def variants(space: Space, config: Mapping[str, Any], *, gpu_count: int) -> tuple[Variant, ...]:
    """Every variant of ``space`` for the model whose config is ``config``, checked first
    (:func:`check_space`). ``config`` is not changed: each variant holds its own deep copy.
    ``gpu_count``: the GPUs of the machine the server runs on."""
    check_space(space, config, gpu_count=gpu_count)
    dims = _dimensions(space)
    grid: list[Variant] = []
    for combination in itertools.product(*dims) if dims else ():
        changed = copy.deepcopy(dict(config))
        for choice in combination:
            choice.apply(changed)
        grid.append(Variant("_".join(c.label for c in combination), _settings_of(changed, space), changed))
    same = next((i for i, v in enumerate(grid) if not config_diff(config, v.config)), None)
    if same is not None:
        grid[same] = replace(grid[same], original=True)
        return tuple(grid)
    own = copy.deepcopy(dict(config))
    return (Variant(ORIGINAL, _settings_of(own, space), own, original=True), *grid)


# -- for people and for the repository ------------------------------------------------------------
def _message(config: Mapping[str, Any], strict: bool) -> Any:
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    try:
        return json_format.ParseDict(dict(config), model_config_pb2.ModelConfig(), ignore_unknown_fields=not strict)
    except json_format.ParseError as e:
        raise ConfigError("config", config.get("name", ""), "is not a model config that Triton's schema takes: "
                                                            f"{' '.join(str(e).split())}") from e


def _canonical(config: Mapping[str, Any], defaults: bool) -> dict[str, Any]:
    """The config as the protobuf schema reads it: so 100 and "100" (JSON's int64) are one
    value. ``defaults``: every plain field printed, so an absent field equals its default."""
    from google.protobuf import json_format

    message = _message(config, strict=False)
    if not defaults:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # protobuf before 5.26 names the option differently
        return json_format.MessageToDict(message, preserving_proto_field_name=True,  # type: ignore[call-arg,unused-ignore]
                                         including_default_value_fields=True)


def _shown(value: Any, path: str) -> str:
    if value is _ABSENT:
        return "off" if path == "dynamic_batching" else "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(v, k)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v, path) for v in value) + "]"
    return json.dumps(value)


def _child(tree: Any, key: str | int) -> Any:
    if isinstance(tree, Mapping):
        return tree.get(key, _ABSENT)
    if isinstance(tree, list) and isinstance(key, int) and key < len(tree):
        return tree[key]
    return _ABSENT


def _diff(old: Any, new: Any, old_set: Any, new_set: Any, path: str) -> Iterator[str]:
    """Lines for what differs between ``old`` and ``new`` (every field printed: compared);
    ``old_set`` and ``new_set`` are the same with only the fields set: what a section added
    or removed shows, rather than all its defaults."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            yield from _diff(old.get(key, _ABSENT), new.get(key, _ABSENT), _child(old_set, key),
                             _child(new_set, key), f"{path}.{key}" if path else key)
    elif (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
          and all(isinstance(v, Mapping) for v in [*old, *new])):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):  # instance groups, inputs: field by field
            yield from _diff(a, b, _child(old_set, i), _child(new_set, i), f"{path}[{i}]")
    elif old != new:
        if old is _ABSENT or new is _ABSENT:
            old, new = old_set, new_set
        yield f"{path}: {_shown(old, path)} -> {_shown(new, path)}"


def config_diff(original: Mapping[str, Any], changed: Mapping[str, Any]) -> list[str]:
    """What ``changed`` sets differently from ``original``, one line per field, for people.
    Fields the client's protobuf schema does not know are left out of the comparison.

    >>> config_diff({"max_batch_size": 64}, {"max_batch_size": 16, "dynamic_batching": {}})
    ['max_batch_size: 64 -> 16', 'dynamic_batching: off -> {}']
    """
    return list(_diff(_canonical(original, defaults=True), _canonical(changed, defaults=True),
                      _canonical(original, defaults=False), _canonical(changed, defaults=False), ""))


def to_pbtxt(config: Mapping[str, Any], comment: str = "") -> str:
    """``config`` as a config.pbtxt (protobuf text format), every field kept; a field the
    schema does not know is a ConfigError rather than dropped. ``comment``: lines put on top.

    >>> print(to_pbtxt({"name": "m", "max_batch_size": 16}, comment="variant b16"), end="")
    # variant b16
    name: "m"
    max_batch_size: 16
    """
    from google.protobuf import text_format

    text = text_format.MessageToString(_message(config, strict=True))
    return "".join(f"# {line}\n" for line in comment.splitlines()) + text
