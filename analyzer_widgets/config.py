"""What to measure and how: every setting declared once, frozen and validated.

Each setting is one dataclass field declared with :func:`setting`: its type and default
(the field), its check, its help text, its command-line flags, whether it shapes the
measured figures (the resume fingerprint) and its label in the panel. The CLI's flags and
help (:mod:`analyzer_widgets.cli`), the panel's settings fields (:mod:`analyzer_widgets.ui`),
the resume fingerprint (:func:`fingerprint`) and README's flag table are all derived from
these declarations: a new setting is one field here.

A bad value raises :class:`~analyzer_widgets.errors.ConfigError` naming the field and the
value, before any process starts.

Example::

    spec = SweepSpec(
        models=("mlp_numpy",),
        model_repository="examples/model_repository",
        batch_sizes=(1, 8),
        concurrency=(1, 4),
    )
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import operator
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer_widgets import machine
from analyzer_widgets.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
MAX_CLIENT_PROCESSES = 32


class LaunchMode(str, enum.Enum):
    """How the runner gets a Triton server."""

    LOCAL = "local"  # start the embedded (or a given) tritonserver binary here
    DOCKER = "docker"  # start a Triton container through the docker SDK
    REMOTE = "remote"  # attach to a server that is already running


class Protocol(str, enum.Enum):
    GRPC = "grpc"
    HTTP = "http"


class Arrival(str, enum.Enum):
    """How a request-rate point spaces its sends (loadgen/_worker.py: ``Schedule``)."""

    CONSTANT = "constant"  # evenly, one every 1/rate seconds
    POISSON = "poisson"  # exponential gaps of mean 1/rate: independent arrivals, as many users make


@dataclass(frozen=True, order=True)
class Load:
    """One point's load: requests kept in flight (closed loop: a request is sent when one
    returns), or requests sent per second on a schedule (open loop: sends do not wait)."""

    concurrency: int = 0
    rate_per_s: float = 0.0

    @property
    def open_loop(self) -> bool:
        return self.rate_per_s > 0

    def __str__(self) -> str:
        return f"{self.rate_per_s:,g} req/s" if self.open_loop else f"concurrency {self.concurrency}"


class Statistic(str, enum.Enum):
    """The latency statistic a budget applies to; each one is a result column."""

    AVG = "avg"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"

    @property
    def column(self) -> str:
        return f"latency_{self.value}_ms"

    @property
    def label(self) -> str:
        """As a sentence says it: p99, or mean for avg."""
        return "mean" if self is Statistic.AVG else self.value


class OnServerFailure(str, enum.Enum):
    """What a sweep does when the server dies or hangs (RELIABILITY row 24)."""

    STOP = "stop"  # end the sweep, keeping the rows measured
    RESTART = "restart"  # start the server again, reload the model, measure the point again once


class Parallel(str, enum.Enum):
    """How a sweep's units (one model's points each, analyzer_widgets/distributed) are run (docs/scale-out.md)."""

    OFF = "off"  # one server measures every model in turn, as always
    GPUS = "gpus"  # one server per GPU slot of this host, units side by side


class StopRule(str, enum.Enum):
    """When a point has been measured enough (loadgen/stats.py: ``ended``)."""

    STABLE = "stable"  # perf_analyzer's: the last windows agree within a percentage
    PRECISION = "precision"  # the 95% intervals are narrow enough and no trend shows


# -- the declaration of a setting ----------------------------------------------------------------
#: a check takes the field's name and the value given (a text where it came from the command
#: line or the panel) and returns the value to keep, or raises ConfigError naming the field
Check = Callable[[str, Any], Any]
#: "not given" (a declaration without a command-line or demo default; an empty panel field)
UNSET: Any = object()


@dataclass(frozen=True)
class Setting:
    """What a settings field is beyond its type and default; declared with :func:`setting`."""

    help: str
    #: command-line option strings; none: set from Python only
    flags: tuple[str, ...] = ()
    check: Check | None = None
    #: command-line (and panel) text to the value the check takes, where that is not the text
    #: itself; for a repeatable flag it takes the list of texts
    parse: Callable[[Any], Any] | None = None
    repeat: bool = False
    metavar: str | None = None
    #: it shapes the measured figures: part of the resume fingerprint (a callable turns the
    #: value into what is recorded, as a file into its digest)
    fingerprint: bool | Callable[[Any], Any] = False
    #: the label of its field in the panel's settings; "": not in the panel
    panel: str = ""
    #: the default as the docs say it, where the value alone would not tell
    default_text: str = ""
    #: the command line's own default where it differs from Python's (the export folder)
    cli_default: Any = UNSET
    #: the demo's default (``analyzer-widgets demo``: short windows, a small grid)
    demo_default: Any = UNSET


def setting(default: Any = dataclasses.MISSING, *, help: str, flags: tuple[str, ...] = (),  # noqa: A002
            check: Check | None = None, parse: Callable[[Any], Any] | None = None, repeat: bool = False,
            metavar: str | None = None, fingerprint: bool | Callable[[Any], Any] = False, panel: str = "",
            default_text: str = "", cli_default: Any = UNSET, demo_default: Any = UNSET,
            default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is a setting: everything about it in one place."""
    meta = {"setting": Setting(help, flags, check, parse, repeat, metavar, fingerprint, panel, default_text,
                               cli_default, demo_default)}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def declared(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """The settings fields of a settings class, in declaration order, with their declarations."""
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            yield f, f.metadata["setting"]


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def shown_default(f: dataclasses.Field[Any], s: Setting, demo: bool = False) -> str:
    """A setting's default as the help, the docs and the panel say it."""
    if demo and s.demo_default is not UNSET:
        value = s.demo_default
    elif s.default_text:
        return s.default_text
    else:
        value = s.cli_default if s.cli_default is not UNSET else default_of(f)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == {}:
        return "none"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class Checked:
    """Runs every field's declared check, then the checks that involve several fields."""

    def __post_init__(self) -> None:
        for f, s in declared(type(self)):
            if s.check is not None:
                object.__setattr__(self, f.name, s.check(f.name, getattr(self, f.name)))
        self._check_together()

    def _check_together(self) -> None:
        """Checks across fields; each field's own check has run."""


# -- checks --------------------------------------------------------------------------------------
def _whole(name: str, value: object, minimum: int, reason: str) -> int:
    # bool is an int subclass; True as a batch size is a mistake, not 1
    if isinstance(value, bool):
        raise ConfigError(name, value, reason)
    if isinstance(value, float | np.floating):
        if not float(value).is_integer():
            raise ConfigError(name, value, reason)
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(name, value, reason) from None
    try:
        number = operator.index(value)  # type: ignore[arg-type]  # int, numpy integers, anything integral
    except TypeError:
        raise ConfigError(name, value, reason) from None
    if number < minimum:
        raise ConfigError(name, value, reason if minimum == 0 else "must be 1 or more")
    return number


def positive_int(name: str, value: object) -> int:
    return _whole(name, value, 1, "must be a positive whole number")


def count(name: str, value: object) -> int:
    """0 or a positive whole number."""
    return _whole(name, value, 0, "must be 0 or a positive whole number")


def finite_number(name: str, value: object, reason: str) -> float:
    """A finite number (text such as "2.5" is read), or a ConfigError with ``reason``."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(name, value, reason) from None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(name, value, reason)
    if not math.isfinite(value):
        raise ConfigError(name, value, reason)
    return float(value) if isinstance(value, float | np.floating) else int(value)


def seconds(name: str, value: object) -> float:
    """A positive number of seconds."""
    number = finite_number(name, value, "must be a positive number of seconds")
    if number <= 0:
        raise ConfigError(name, value, "must be a positive number of seconds")
    return number


def seconds_or_zero(name: str, value: object) -> float:
    number = finite_number(name, value, "must be 0 or a positive number of seconds")
    if number < 0:
        raise ConfigError(name, value, "must be 0 or a positive number of seconds")
    return number


def sampling_interval(name: str, value: object) -> float:
    reason = "must be a number of seconds between 0.001 and 60"
    number = finite_number(name, value, reason)
    if not 0.001 <= number <= 60:
        raise ConfigError(name, value, reason)
    return number


def percentage(name: str, value: object) -> float:
    """Above 0 and below 100."""
    reason = "must be a percentage above 0 and below 100"
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(name, value, reason)
    number = finite_number(name, value, reason)
    if not 0 < number < 100:
        raise ConfigError(name, value, reason)
    return number


def flag(name: str, value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ConfigError(name, value, "must be True or False")


def port(name: str, value: object) -> int | None:
    if value is None or value == "":
        return None
    number = positive_int(name, value)
    if number > 65535:
        raise ConfigError(name, number, "must be a TCP port between 1 and 65535")
    return number


def optional_path(name: str, value: object) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(name, value, "must be a path")
    return Path(value).expanduser()


def existing_file(name: str, value: object) -> Path | None:
    """A path to a file that exists (none: not given)."""
    path = optional_path(name, value)
    if path is not None and not path.is_file():
        raise ConfigError(name, value, "must be an existing file" + (" (it is a folder)" if path.is_dir() else ""))
    return path


def optional_text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(name, value, "must be text")
    return value.strip() or None


#: what a --ray unit's task asks Ray for unless --ray-unit-resources says otherwise
RAY_UNIT_RESOURCES: Mapping[str, float] = {"GPU": 1.0}


def ray_address(name: str, value: object) -> str:
    """A Ray cluster's address: "" (no Ray), ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if value is None:
        return ""
    reason = "must be `auto` or a Ray cluster's address (HOST:PORT or ray://HOST:PORT)"
    if not isinstance(value, str):
        raise ConfigError(name, value, reason)
    text = value.strip()
    if text in ("", "auto"):
        return text
    host, sep, number = text.removeprefix("ray://").rpartition(":")
    if not sep or not host or not number.isdigit() or not 0 < int(number) < 65536:
        raise ConfigError(name, value, reason)
    return text


def ray_resources(name: str, value: object) -> dict[str, float]:
    """What a Ray task asks for: a mapping, or text ``NAME=AMOUNT`` (or ``NAME:AMOUNT``)
    items separated by commas; each amount a positive number.

    >>> ray_resources("ray_unit_resources", "gpu_slot=1, CPU:2")
    {'gpu_slot': 1.0, 'CPU': 2.0}
    """
    items: list[tuple[str, object]]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            key, sep, amount = part.replace(":", "=", 1).partition("=")
            if not sep or not key.strip():
                raise ConfigError(name, value, f"{part!r} is not NAME=AMOUNT (e.g. GPU=1)")
            items.append((key.strip(), amount))
    else:
        raise ConfigError(name, value, "must be NAME=AMOUNT items separated by commas (e.g. GPU=1)")
    if not items:
        raise ConfigError(name, value, "names no resource: a unit must ask for one (e.g. GPU=1)")
    resources = {}
    for resource, given in items:
        number = finite_number(name, given, f"{resource}: the amount must be a positive number")
        if number <= 0:
            raise ConfigError(name, value, f"{resource}: the amount must be a positive number")
        resources[str(resource)] = float(number)
    return resources


def ray_resources_text(resources: Mapping[str, float]) -> str:
    """``{"GPU": 1.0}`` as ``GPU=1``: how the flag takes it."""
    return ",".join(f"{k}={v:g}" for k, v in resources.items())


def one_of(kind: type[enum.Enum]) -> Check:
    def check(name: str, value: object) -> enum.Enum:
        try:
            return kind(value.strip().lower() if isinstance(value, str) else value)
        except ValueError:
            raise ConfigError(name, value, f"must be one of {', '.join(m.value for m in kind)}") from None
    return check


def positive_int_list(field_name: str, values: object) -> tuple[int, ...]:
    """Validate a list of positive integers; a string is read as a comma-separated list.

    >>> positive_int_list("batch_sizes", "1, 8,8")
    (1, 8)
    """
    if isinstance(values, str):
        items: list[object] = [v for v in values.replace(" ", "").split(",")]
        if items == [""]:
            items = []
        if any(v == "" for v in items):
            raise ConfigError(field_name, values, "has an empty item; write values like 1,2,4")
    elif isinstance(values, int | float | np.integer) and not isinstance(values, bool):
        items = [values]
    elif isinstance(values, Iterable):
        items = list(values)
    else:
        raise ConfigError(field_name, values, "must be a list of positive whole numbers")
    if not items:
        raise ConfigError(field_name, values, "must name at least one value")
    return distinct(field_name, values, items, positive_int)


def distinct(field_name: str, values: object, items: Iterable[object], check: Callable[[str, object], int]
             ) -> tuple[int, ...]:
    """Each of ``items`` (the list ``values`` was read into) through ``check``, repeats left
    out, in order; an item the check refuses is an error naming the whole value and the item."""
    out: list[int] = []
    for item in items:
        try:
            number = check(field_name, item)
        except ConfigError as e:
            raise ConfigError(field_name, values, f"item {item!r} {e.reason}") from None
        if number not in out:
            out.append(number)
    return tuple(out)


def rate_list(field_name: str, values: object) -> tuple[float, ...]:
    """Request rates in requests/s, each above 0; a string is read as a comma-separated list;
    empty: no rates (the sweep varies the concurrency).

    >>> rate_list("request_rate", "100, 250.5,100")
    (100.0, 250.5)
    """
    if isinstance(values, str):
        items: list[object] = [v for v in values.replace(" ", "").split(",")]
        if items == [""]:
            return ()
        if any(v == "" for v in items):
            raise ConfigError(field_name, values, "has an empty item; write rates like 100,200,400")
    elif isinstance(values, int | float | np.integer | np.floating) and not isinstance(values, bool):
        items = [values]
    elif isinstance(values, Iterable):
        items = list(values)
    else:
        raise ConfigError(field_name, values, "must be a list of request rates (requests/s)")
    out: list[float] = []
    for item in items:
        reason = f"item {item!r} must be a number of requests per second above 0"
        number = float(finite_number(field_name, item, reason)) if not isinstance(item, bool) else -1.0
        if not number > 0:
            raise ConfigError(field_name, values, reason)
        if number not in out:
            out.append(number)
    return tuple(out)


def latency_budget(name: str, value: object) -> float:
    """A positive, finite number of milliseconds; text such as "20" or "2.5" is read."""
    reason = "must be a positive number of milliseconds, as 20 or 2.5"
    milliseconds = float(finite_number(name, value, reason))
    if milliseconds <= 0:
        raise ConfigError(name, value, reason)
    return milliseconds


def optional_latency_budget(name: str, value: object) -> float | None:
    """None or empty text: no budget; else as :func:`latency_budget`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return latency_budget(name, value)


def latency_statistic(name: str, value: object) -> Statistic:
    """avg, p50, p90, p95 or p99; a percentile may be given as its number (99, "95")."""
    text = str(value).strip().lower() if not isinstance(value, Statistic) else value.value
    if text.isdigit():
        text = f"p{text}"
    try:
        return Statistic(text)
    except ValueError:
        raise ConfigError(name, value, "must be avg, p50, p90, p95 or p99 (or 50, 90, 95, 99)") from None


def model_names(name: str, value: object) -> tuple[str, ...]:
    models = value
    if isinstance(models, str):
        models = tuple(m for m in models.replace(" ", "").split(",") if m)
    if not isinstance(models, Iterable):
        raise ConfigError(name, value, "must be model names")
    models = tuple(models)
    if not models:
        raise ConfigError(name, value, "must name at least one model")
    for m in models:
        if not isinstance(m, str) or not m.strip():
            raise ConfigError(name, value, f"item {m!r} is not a model name")
    return tuple(dict.fromkeys(models))


def parse_shape(field_name: str, text: str) -> tuple[str, tuple[int, ...]]:
    """Parse perf_analyzer's ``NAME:D1,D2,...`` shape syntax.

    >>> parse_shape("shapes", "SEQUENCE:128,32")
    ('SEQUENCE', (128, 32))
    """
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise ConfigError(field_name, text, "must look like INPUT_NAME:D1,D2 (for example SEQUENCE:128,32)")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise ConfigError(field_name, text, "dimensions must be whole numbers separated by commas") from None
    if any(d <= 0 for d in shape):
        raise ConfigError(field_name, text, "every dimension must be 1 or more")
    return name, shape


def parse_header(field_name: str, text: str) -> tuple[str, str]:
    """Parse one ``NAME:VALUE`` access header (the value may hold colons).

    >>> parse_header("--header", "admin-key: s3cret")
    ('admin-key', 's3cret')
    """
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ConfigError(field_name, text, "must look like NAME:VALUE")
    return name.strip(), value.strip()


def input_shapes(name: str, value: object) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "must map input names to shapes, like {'SEQUENCE': (128, 32)}")
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in dict(value).items():
        dims = tuple(shape)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int | np.integer) or d <= 0 for d in dims):
            raise ConfigError(name, {key: shape}, "dimensions must be whole numbers of 1 or more")
        shapes[key] = tuple(int(d) for d in dims)
    return shapes


def input_data(name: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value in ("random", "zero"):
        return str(value)
    if isinstance(value, str):
        path = Path(value).expanduser()
        if path.suffix == ".npz" and path.is_file():
            return value
    raise ConfigError(name, value, "must be 'random', 'zero' or an existing .npz file")


def headers(name: str, value: object) -> dict[str, str]:
    """Access headers as every request and control call sends them: a name is a token (no
    spaces, colons or line breaks), a value holds no line break (it would end the header)."""
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, "must map header names to values")
    checked = {}
    for key, text in dict(value).items():
        key, text = str(key).strip(), str(text).strip()
        if not key or any(c in key for c in " \t:\r\n") or not key.isascii():
            raise ConfigError(name, {key: text}, f"{key!r} is not a header name")
        if "\r" in text or "\n" in text:
            raise ConfigError(name, {key: text}, f"the value of {key} holds a line break")
        checked[key] = text
    return checked


GPU_KEYWORDS = ("auto", "all", "none")


def gpu_selection(name: str, value: object) -> str:
    """``gpus`` as Docker's device request takes it: auto, all, none, or a comma-separated
    list of GPU indexes or UUIDs (``GPU-...``, ``MIG-...``), each once."""
    reason = ("must be auto, all, none, or GPU indexes or UUIDs separated by commas, like 0,1 or GPU-5b7c... "
              "(a MIG instance by its MIG- UUID)")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, value, reason)
    text = value.strip()
    if text.lower() in GPU_KEYWORDS:
        return text.lower()
    ids = [part.strip() for part in text.split(",")]
    for gpu in ids:
        if not (gpu.isascii() and gpu.isdigit() or gpu.startswith(("GPU-", "MIG-")) and len(gpu) > 4):
            raise ConfigError(name, value, f"{gpu!r} is not a GPU index or UUID: {reason}")
    if len(set(ids)) != len(ids):
        raise ConfigError(name, value, "names a GPU twice")
    return ",".join(ids)


def texts(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(name, value, "must be a list of texts")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(name, value, "must be a list of texts")
    return items


def _milliseconds_to_seconds(text: Any) -> Any:
    try:
        return float(text) / 1000.0
    except ValueError:
        return text  # the check refuses it, naming the field and the value


def _shapes_from_flags(items: list[str]) -> dict[str, tuple[int, ...]]:
    return dict(parse_shape("--shape", item) for item in items)


def _headers_from_flags(items: list[str]) -> dict[str, str]:
    return dict(parse_header("--header", item) for item in items)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _input_data_fingerprint(value: str) -> str:
    return value if value in ("random", "zero") else f"npz:{file_digest(Path(value).expanduser())}"


#: a remote URL's scheme -> (the protocol it speaks, whether it asks for TLS)
URL_SCHEMES: dict[str, tuple[Protocol, bool]] = {
    "grpc": (Protocol.GRPC, False), "grpcs": (Protocol.GRPC, True),
    "http": (Protocol.HTTP, False), "https": (Protocol.HTTP, True),
}


def split_url(url: str) -> tuple[str | None, str]:
    """A remote URL's scheme (None where it has none) and its ``host:port``.

    >>> split_url("grpcs://triton.example.com:8001/")
    ('grpcs', 'triton.example.com:8001')
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None, url.rstrip("/")
    return scheme.lower(), rest.rstrip("/")


def remote_url(name: str, value: object) -> str | None:
    """``host:port``, or a URL whose scheme says the protocol and whether to use TLS."""
    url = optional_text(name, value)
    if url is not None:
        scheme, address = split_url(url)
        if scheme is not None and scheme not in URL_SCHEMES:
            raise ConfigError(name, value, "must be host:port or a URL of grpc://, grpcs://, http:// or https://")
        if not address:
            raise ConfigError(name, value, "names no host:port")
    return url


@dataclass(frozen=True)
class Tls:
    """What a client needs for a verified TLS connection to a remote server: plain paths,
    so a load generator's job (pickled to its client processes) carries it, and each
    process makes its own :class:`ssl.SSLContext` from it."""

    ca: Path | None = None  # the CA bundle the server's certificate is checked against; none: the system's
    cert: Path | None = None  # the client's certificate (chain), for mutual TLS
    key: Path | None = None  # its private key

    def context(self, alpn: str, create: Callable[..., ssl.SSLContext] = ssl.create_default_context) -> ssl.SSLContext:
        """A client context that verifies the server's certificate and host name and offers
        ``alpn`` ("h2": gRPC servers refuse a TLS connection that does not offer it);
        ``create`` makes the context (gevent's, for tritonclient's HTTP client)."""
        context = create(cafile=str(self.ca) if self.ca else None)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if self.cert is not None:
            # a key with a passphrase is refused rather than asked for on the terminal
            context.load_cert_chain(self.cert, self.key, password=_no_passphrase)
        context.set_alpn_protocols([alpn])
        return context


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted: give an unencrypted key (gRPC takes no other)")


# -- the settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasurementSettings(Checked):
    """How each point is measured; defaults follow perf_analyzer's stability rule.

    A point is measured in windows of ``window_ms``. Under the ``stable`` rule it is stable
    when the last ``stable_windows`` windows each lie within ``stability_pct`` percent of
    their mean on throughput and on average latency. Under the ``precision`` rule it is
    done when the 95% intervals over all its windows are within ``precision_pct`` percent
    and no trend shows. After ``max_trials`` windows it is kept as unstable.
    """

    window_ms: int = setting(
        1000, check=positive_int, flags=("--window-ms", "--measurement-interval"), fingerprint=True,
        panel="Window (ms)", demo_default=500, help="measurement window length in ms")
    stability_pct: float = setting(
        10.0, check=percentage, flags=("--stability-pct", "--stability-percentage"), fingerprint=True,
        panel="Stability %", help="windows agree when each lies within this percentage of their mean")
    stable_windows: int = setting(
        3, check=positive_int, flags=("--stable-windows",), fingerprint=True, panel="Stable windows",
        help="how many last windows must agree for a point to be stable")
    max_trials: int = setting(
        10, check=positive_int, flags=("--max-trials",), fingerprint=True, panel="Max windows",
        help="windows at most; then the point is kept and marked unstable")
    stop_rule: StopRule = setting(
        StopRule.STABLE, check=one_of(StopRule), flags=("--stop-rule",), fingerprint=True, panel="Stop rule",
        help="`stable`: the last --stable-windows windows agree within --stability-pct (perf_analyzer's rule); "
             "`precision`: windows until the 95% intervals of throughput and mean latency are within "
             "--precision and neither drifts across the windows")
    precision_pct: float = setting(
        5.0, check=percentage, flags=("--precision",), fingerprint=True, panel="Precision %",
        help="the precision rule's target: the 95% intervals' half-width, as a percentage of the figure")
    protocol: Protocol = setting(
        Protocol.GRPC, check=one_of(Protocol), flags=("--protocol",), fingerprint=True, panel="Protocol",
        help="the protocol inferences are sent with")
    client_processes: int = setting(
        0, check=count, flags=("--client-processes",), default_text="0 (automatic)",
        help="client processes per point; 0 chooses from the concurrency and the usable CPUs")
    request_timeout_s: float = setting(
        30.0, check=seconds, flags=("--request-timeout",),
        help="seconds before a request (or a statistics call) counts as failed; after a failed point the "
             "server must also answer a health check within 5 s, or it counts as hung and is stopped")
    warmup_requests: int = setting(
        1, check=count, flags=("--warmup-requests",), fingerprint=True,
        help="requests each request slot sends before a point's windows start, not counted; 0 turns warm-up off")
    visits: int = setting(
        1, check=positive_int, flags=("--visits",), fingerprint=True, panel="Visits",
        help="measure each point in this many visits, round by round over the model's grid, so they lie apart in "
             "time: the row pools them and its 95% intervals take each visit as one batch, which covers the "
             "host's drift over the sweep (each visit runs the stop rule); 1: one stretch")
    max_in_flight: int = setting(
        64, check=positive_int, flags=("--max-in-flight",), fingerprint=True,
        help="request-rate points: requests in flight at most (request slots over all client processes); "
             "a send due while every slot is busy waits, and its wait counts as latency")

    def _check_together(self) -> None:
        if self.max_trials < self.stable_windows:
            raise ConfigError("max_trials", self.max_trials, f"must be at least stable_windows ({self.stable_windows})")

    def processes_for(self, concurrency: int) -> int:
        """Client processes for one point: never more than the requests in flight (the
        request slots, at a request-rate point)."""
        if self.client_processes:
            return min(self.client_processes, concurrency)
        # One request slot per process where the cores allow: threads of one process wait
        # for each other's GIL on every response (benchmarks/client_variants.py,
        # docs/benchmarks.md). Two cores are left to the server; on a 2-core machine
        # everything shares one process, since extra processes would only take CPU from it.
        spare = max(1, machine.usable_cpu_count() - 2)
        return max(1, min(concurrency, spare, MAX_CLIENT_PROCESSES))


@dataclass(frozen=True)
class ServerSettings(Checked):
    """Where the Triton server comes from and how to reach it."""

    launch_mode: LaunchMode = setting(
        LaunchMode.LOCAL, check=one_of(LaunchMode), flags=("--launch-mode",), fingerprint=True, panel="Launch",
        help="`local` (embedded server), `remote` (attach to `--url`), `docker` (a Triton container)")
    url: str | None = setting(
        None, check=remote_url, flags=("--url",), panel="URL",
        help="remote: the server's gRPC `host:port` (HTTP with `--protocol http`); `grpcs://host:port` "
             "(`https://host:port` with `--protocol http`) for TLS")
    ssl_ca: Path | None = setting(
        None, check=existing_file, flags=("--ssl-ca",), metavar="PATH", panel="TLS CA file",
        default_text="the system's CAs",
        help="remote over TLS: the CA bundle (PEM) that the server's certificate is checked against")
    ssl_cert: Path | None = setting(
        None, check=existing_file, flags=("--ssl-cert",), metavar="PATH", panel="TLS client cert",
        help="remote over TLS: this client's certificate (PEM), for a server that asks for one (mutual TLS)")
    ssl_key: Path | None = setting(
        None, check=existing_file, flags=("--ssl-key",), metavar="PATH", panel="TLS client key",
        help="remote over TLS: the private key (PEM) of `--ssl-cert`")
    headers: Mapping[str, str] = setting(
        check=headers, flags=("-H", "--header"), repeat=True, parse=_headers_from_flags, metavar="NAME:VALUE",
        panel="Headers", default_factory=dict,
        help="a header sent with every request and control call (for example the key of a server started with "
             "`--grpc-restricted-protocol` / `--http-restricted-api`); repeatable")
    triton_version: str | None = setting(
        None, check=optional_text, flags=("--triton-version",), fingerprint=True, panel="Triton version",
        help="docker: run `nvcr.io/nvidia/tritonserver:<version>-py3`")
    triton_image: str | None = setting(
        None, check=optional_text, flags=("--triton-image",), fingerprint=True, panel="Triton image",
        help="docker: run this image instead (tritonserver on its PATH)")
    gpus: str = setting(
        "auto", check=gpu_selection, flags=("--gpus",), panel="GPUs (docker)",
        help="docker: `auto` (all GPUs where NVML sees any), `all`, `none`, or GPU indexes or UUIDs, "
             "`0,1` or `GPU-5b7c...`")
    tritonserver_path: Path | None = setting(
        None, check=optional_path, flags=("--tritonserver",), metavar="PATH", default_text="embedded",
        help="local: run this tritonserver binary instead of the embedded one")
    backend_python: Path | None = setting(
        None, check=optional_path, flags=("--backend-python",), metavar="PATH", default_text="this Python",
        help="local: the Python whose packages the models import (also `$ANALYZER_WIDGETS_BACKEND_PYTHON`)")
    host: str = setting(DEFAULT_HOST, check=optional_text, flags=("--host",), help="the address a local server binds")
    http_port: int | None = setting(None, check=port, flags=("--http-port",), panel="HTTP port",
                                    default_text="a free port", help="where a local server serves HTTP")
    grpc_port: int | None = setting(None, check=port, flags=("--grpc-port",), panel="gRPC port",
                                    default_text="a free port", help="where a local server serves gRPC")
    metrics_port: int | None = setting(None, check=port, flags=("--metrics-port",), panel="Metrics port",
                                       default_text="a free port", help="where a local server serves /metrics")
    startup_timeout_s: float = setting(120.0, check=seconds, flags=("--startup-timeout",),
                                       help="seconds to wait for the server to be ready")
    # a model load (a TensorRT engine build can take minutes) may take this long before the
    # server is taken to be hung; every other call has the measurement's request timeout
    model_load_timeout_s: float = setting(600.0, check=seconds, flags=("--model-load-timeout",),
                                          help="seconds a model load may take before the server counts as hung")
    on_server_failure: OnServerFailure = setting(
        OnServerFailure.STOP, check=one_of(OnServerFailure), flags=("--on-server-failure",), panel="On server failure",
        help="when the server dies or hangs: `stop` the sweep, or `restart` it (local and docker), reload the model "
             "and measure the failed point again once, then go on")
    extra_args: tuple[str, ...] = setting((), check=texts, help="more tritonserver arguments (local and docker)")
    log_path: Path | None = setting(
        None, check=optional_path,
        help="where the server's whole log is kept (the CLI puts it beside the CSV files); "
             "none: a temporary file, removed on stop")

    def _check_together(self) -> None:
        ports = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if len(ports) != len(set(ports)):
            raise ConfigError("ports", tuple(ports), "HTTP, gRPC and metrics ports must differ")
        if self.launch_mode is LaunchMode.DOCKER and not (self.triton_image or self.triton_version):
            raise ConfigError("triton_image", self.triton_image,
                              "docker launch mode needs --triton-image or --triton-version (for example 24.08)")
        if self.launch_mode is LaunchMode.REMOTE and not self.url:
            raise ConfigError("url", self.url, "remote launch mode needs the server's URL (for example localhost:8001)")
        if self.launch_mode is LaunchMode.REMOTE and self.on_server_failure is OnServerFailure.RESTART:
            raise ConfigError("on_server_failure", self.on_server_failure.value,
                              "restart needs a server the analyzer starts (local or docker); a remote one is "
                              "someone else's to restart")
        if self.host is None:
            raise ConfigError("host", self.host, "must be an address, like 127.0.0.1")
        if (self.ssl_cert is None) != (self.ssl_key is None):
            given, missing = ("ssl_cert", "ssl_key") if self.ssl_key is None else ("ssl_key", "ssl_cert")
            raise ConfigError(given, getattr(self, given), f"needs {missing} too: mutual TLS takes a certificate "
                                                           "and its private key (--ssl-cert and --ssl-key)")
        if self.launch_mode is LaunchMode.REMOTE and not self.uses_tls:
            for name in ("ssl_ca", "ssl_cert", "ssl_key"):
                if getattr(self, name) is not None:
                    # refused, not ignored: whoever gave a CA expects TLS, and would get clear text
                    raise ConfigError(name, getattr(self, name), f"applies only to a TLS URL, and {self.url} asks for "
                                                                 "none: write grpcs://host:port or https://host:port")
        if self.ssl_cert is not None and self.ssl_key is not None:
            try:
                ssl.create_default_context().load_cert_chain(self.ssl_cert, self.ssl_key, password=_no_passphrase)
            except ValueError as e:  # from _no_passphrase
                raise ConfigError("ssl_key", self.ssl_key, str(e)) from None
            except (ssl.SSLError, OSError) as e:
                raise ConfigError("ssl_key", self.ssl_key, f"does not go with ssl_cert {self.ssl_cert} "
                                                           f"(or one of them is not PEM): {e}") from None

    @property
    def uses_tls(self) -> bool:
        """Whether the remote URL asks for TLS (``grpcs://``, ``https://``)."""
        scheme = split_url(self.url)[0] if self.url else None
        return scheme is not None and URL_SCHEMES[scheme][1]

    @property
    def address(self) -> str | None:
        """The remote server's ``host:port``: the URL without its scheme."""
        return split_url(self.url)[1] if self.url else None

    @property
    def tls(self) -> Tls | None:
        """What every client of a remote server over TLS needs; None where there is no TLS
        (a local or docker server, or a plain-text URL)."""
        if self.launch_mode is not LaunchMode.REMOTE or not self.uses_tls:
            return None
        return Tls(self.ssl_ca, self.ssl_cert, self.ssl_key)


@dataclass(frozen=True)
class MonitorSettings(Checked):
    """Which samplers run and how often. ``nvml`` may be turned off; it is off by itself
    (columns NaN, one notice) where NVML is absent."""

    nvml: bool = setting(True, check=flag, flags=("--nvml",), default_text="on where NVML is present",
                         help="sample the GPUs through NVML")
    nvml_interval_s: float = setting(
        0.05, check=sampling_interval, flags=("--nvml-interval-ms",), parse=_milliseconds_to_seconds,
        default_text="50 (20 Hz)", help="GPU sampling interval (ms on the command line)")
    process_sampling: bool = setting(True, check=flag,
                                     help="sample the CPU and memory of the server and its model stubs (psutil)")
    process_interval_s: float = setting(0.1, check=sampling_interval, help="process sampling interval")
    triton_metrics: bool = setting(True, check=flag, help="sample the server's own /metrics")
    triton_metrics_interval_s: float = setting(0.5, check=sampling_interval, help="/metrics sampling interval")


@dataclass(frozen=True)
class SweepSpec(Checked):
    """One sweep: which models, over which batch sizes and concurrency values, and how.

    ``input_shapes`` gives the shape (without the batch dimension) of inputs whose
    configuration has variable (-1) dimensions, keyed by input name, as perf_analyzer's
    ``--shape`` does. ``input_data`` chooses synthetic data: ``"random"`` or ``"zero"``,
    or a path to a ``.npz`` file whose arrays are keyed by input name.
    """

    models: tuple[str, ...] = setting(check=model_names, flags=("-m", "--model-names"), fingerprint=True,
                                      default_text="required", help="comma-separated models to profile")
    model_repository: Path | None = setting(
        None, check=optional_path, flags=("--model-folder", "--model-repository"), default_text="required for `local`",
        help="the model repository")
    batch_sizes: tuple[int, ...] = setting(
        (1,), check=positive_int_list, flags=("-b", "--batch"), fingerprint=True, demo_default="1,8",
        help="comma-separated batch sizes")
    concurrency: tuple[int, ...] = setting(
        (1,), check=positive_int_list, flags=("-c", "--concurrency"), fingerprint=True, demo_default="1,2",
        help="comma-separated concurrency values (requests kept in flight)")
    request_rate: tuple[float, ...] = setting(
        (), check=rate_list, flags=("--request-rate",), fingerprint=True, panel="Request rates (req/s)",
        default_text="none (concurrency)",
        help="comma-separated request rates (requests/s): open-loop load on a schedule instead of "
             "concurrency values")
    latency_budget_ms: float | None = setting(
        None, check=optional_latency_budget, flags=("--latency-budget-ms",), fingerprint=True,
        default_text="none (the grid)", panel="Budget search (ms)",
        help="search, per model and batch size, for the highest concurrency (or request rate) whose latency is "
             "within this many ms: galloping then bisection from the first load given to the last (to 256, or "
             "100x the rate, when one is given); every probe is a row, and the answer a row of its own")
    latency_statistic: Statistic = setting(
        Statistic.P99, check=latency_statistic, flags=("--latency-percentile", "--latency-statistic"),
        fingerprint=True, panel="Budget search statistic",
        help="the latency a budget applies to: 99 (p99), 95, 90, 50, or avg")
    arrival: Arrival = setting(
        Arrival.CONSTANT, check=one_of(Arrival), flags=("--arrival", "--request-distribution"), fingerprint=True,
        panel="Arrival", help="request-rate points: `constant` gaps, or `poisson` (exponential gaps of the same mean)")
    server: ServerSettings = field(default_factory=ServerSettings)
    measurement: MeasurementSettings = field(default_factory=MeasurementSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    input_shapes: Mapping[str, tuple[int, ...]] = setting(
        check=input_shapes, flags=("--shape",), repeat=True, parse=_shapes_from_flags, metavar="NAME:D1,D2",
        fingerprint=True, default_factory=dict,
        help="shape of an input with variable (-1) dims, no batch dim; repeatable")
    input_data: str = setting("random", check=input_data, flags=("--input-data",),
                              fingerprint=_input_data_fingerprint,
                              help="`random`, `zero`, or a `.npz` file of arrays by input name")
    baseline_s: float = setting(2.0, check=seconds_or_zero, flags=("--baseline-seconds",), demo_default=1.0,
                                help="how long to record the server with no models (up to 3 s longer while a "
                                     "sampler has given no sample in it)")
    check_environment: bool = setting(True, check=flag,
                                      help="check the models' Python (numpy 1.x) before a local sweep")
    parallel: Parallel = setting(
        Parallel.OFF, check=one_of(Parallel), flags=("--parallel",), panel="Parallel",
        help="`gpus`: split the sweep into units (one model's points each) run side by side, each on its own server "
             "on its own GPU (`CUDA_VISIBLE_DEVICES`); with one GPU or none, one unit at a time "
             "(docs/scale-out.md)")
    parallel_slots: int = setting(
        0, check=count, flags=("--parallel-slots",), default_text="one per visible GPU",
        help="with `--parallel gpus`: how many servers run side by side; GPUs are dealt to them in turn, none where "
             "the host has none (two servers on a CPU machine: how the tests run it)")

    ray: str = setting(
        "", check=ray_address, flags=("--ray",), panel="Ray cluster", metavar="ADDRESS", default_text="no Ray",
        help="run the sweep's units (one model's points each) as Ray tasks on a cluster: `auto` (the one this "
             "machine belongs to, or RAY_ADDRESS) or its address (`HOST:6379`, `ray://HOST:10001`); each unit starts "
             "its own server on the node Ray gives it (docs/scale-out.md)")
    ray_unit_resources: Mapping[str, float] = setting(
        check=ray_resources, flags=("--ray-unit-resources",), metavar="NAME=AMOUNT,...", panel="Ray unit resources",
        default_text=f"`{ray_resources_text(RAY_UNIT_RESOURCES)}`",
        default_factory=lambda: dict(RAY_UNIT_RESOURCES),
        help="with `--ray`: what each unit's task asks Ray for, e.g. `GPU=1` or a custom resource `gpu_slot=1`")

    def _check_together(self) -> None:
        if self.latency_budget_ms is not None and self.measurement.visits > 1:
            raise ConfigError("visits", self.measurement.visits, "applies to a grid: a --latency-budget-ms search "
                              "chooses each load from the one before, so it measures each once")
        if self.request_rate and self.concurrency != (1,):
            raise ConfigError("request_rate", ",".join(f"{r:g}" for r in self.request_rate),
                              f"and concurrency values ({','.join(map(str, self.concurrency))}) were both given: "
                              "a sweep varies one load, the request rate or the concurrency")
        if self.parallel is Parallel.GPUS and self.server.launch_mode is not LaunchMode.LOCAL:
            raise ConfigError("parallel", self.parallel.value, "starts a local server per unit (--launch-mode local); "
                              f"a {self.server.launch_mode.value} server is one server")
        if self.parallel_slots and self.parallel is Parallel.OFF:
            raise ConfigError("parallel_slots", self.parallel_slots, "only applies with --parallel gpus")
        if self.ray and self.parallel is not Parallel.OFF:
            raise ConfigError("ray", self.ray, "and --parallel gpus were both given: a sweep's units run either on "
                              "this host's GPUs or on a Ray cluster")
        if self.ray and self.server.launch_mode is not LaunchMode.LOCAL:
            raise ConfigError("ray", self.ray, "starts a local server per unit on its node (--launch-mode local); "
                              f"a {self.server.launch_mode.value} server is one server")
        if self.ray_unit_resources != RAY_UNIT_RESOURCES and not self.ray:
            raise ConfigError("ray_unit_resources", ray_resources_text(self.ray_unit_resources),
                              "only applies with --ray")
        if self.model_repository is None and self.server.launch_mode is not LaunchMode.REMOTE:
            raise ConfigError("model_repository", None, "local and docker launch modes need a model repository")
        scheme = split_url(self.server.url)[0] if self.server.url else None
        if self.server.launch_mode is LaunchMode.REMOTE and scheme is not None:
            speaks = URL_SCHEMES[scheme][0]
            if speaks is not self.measurement.protocol:
                mine = next(s for s, (p, tls) in URL_SCHEMES.items()
                            if p is self.measurement.protocol and tls == URL_SCHEMES[scheme][1])
                raise ConfigError("url", self.server.url,
                                  f"is a {speaks.value} URL, but the protocol is {self.measurement.protocol.value}: "
                                  f"use --protocol {speaks.value}, or a {mine}:// URL")

    @property
    def loads(self) -> tuple[Load, ...]:
        """The loads each batch size is measured at: the request rates where given, else the
        concurrency values."""
        if self.request_rate:
            return tuple(Load(rate_per_s=r) for r in self.request_rate)
        return tuple(Load(concurrency=c) for c in self.concurrency)

    @property
    def points_per_model(self) -> int:
        return len(self.batch_sizes) * len(self.loads)


@dataclass(frozen=True)
class ExportSettings(Checked):
    """Where a run's results go, and what happens to results already there."""

    export_path: Path | None = setting(
        None, check=optional_path, flags=("-e", "--export-path"), cli_default="results",
        default_text="`./results` (Python: none, rows kept in memory)", help="folder for the CSV files")
    write_files: bool = setting(True, check=flag, flags=("--export",), help="write the CSV files to the export folder")
    overwrite: bool = setting(False, check=flag, flags=("--overwrite",), demo_default=True,
                              default_text="off: refuses", help="replace results already in the export folder")
    resume: bool = setting(
        False, check=flag, flags=("--resume",),
        help="keep the points already measured in the export folder, measure the rest; refused (saying what "
             "changed) when the spec, the model files, the server version or the GPUs differ "
             "(docs/reliability.md)")
    keep_apart: bool = setting(
        False, check=flag, flags=("--keep-apart",),
        help="with `--resume`: on such a change, move the earlier results into `previous-<time>/` and start over")

    def _check_together(self) -> None:
        if self.resume and self.overwrite:
            raise ConfigError("resume", self.resume,
                              "and overwrite exclude each other: resume keeps the rows, overwrite drops them")
        if self.keep_apart and not self.resume:
            raise ConfigError("keep_apart", self.keep_apart, "only applies when resuming (resume=True, --resume)")

    @property
    def directory(self) -> Path | None:
        """The folder results are written to, or None when nothing is written."""
        return self.export_path if self.write_files else None


#: every settings class, in the order the docs list them; flat keyword settings are routed
#: to them by name (:func:`make_settings`)
SETTINGS_CLASSES: tuple[type, ...] = (SweepSpec, ServerSettings, MeasurementSettings, MonitorSettings, ExportSettings)


def _owners() -> dict[str, type]:
    owners: dict[str, type] = {}
    for cls in SETTINGS_CLASSES:
        for f, _ in declared(cls):
            if f.name in owners:
                # routing by name would send it to one class silently: refuse at import
                raise TypeError(f"setting {f.name!r} is declared in {owners[f.name].__name__} and {cls.__name__}")
            owners[f.name] = cls
    return owners


#: setting name -> the class that declares it
OWNERS: dict[str, type] = _owners()


def group_settings(settings: Mapping[str, Any]) -> dict[type, dict[str, Any]]:
    """Flat keyword settings grouped by the class that declares each; an unknown name is refused."""
    grouped: dict[type, dict[str, Any]] = {cls: {} for cls in SETTINGS_CLASSES}
    for name, value in settings.items():
        if name not in OWNERS:
            known = ", ".join(sorted(OWNERS))
            raise ConfigError(name, value, f"is not a setting; the settings are: {known}")
        grouped[OWNERS[name]][name] = value
    return grouped


def make_settings(**settings: Any) -> tuple[SweepSpec, ExportSettings]:
    """A :class:`SweepSpec` and :class:`ExportSettings` from flat keyword settings; each goes
    to the class that declares it.

    >>> make_settings(models="mlp_numpy", model_repository=".", window_ms=500)[0].measurement.window_ms
    500
    """
    grouped = group_settings(settings)
    for cls, group in grouped.items():
        for f, _ in declared(cls):
            if f.name not in group and default_of(f) is dataclasses.MISSING:
                raise ConfigError(f.name, None, "is required")
    spec = SweepSpec(server=ServerSettings(**grouped[ServerSettings]),
                     measurement=MeasurementSettings(**grouped[MeasurementSettings]),
                     monitor=MonitorSettings(**grouped[MonitorSettings]), **grouped[SweepSpec])
    return spec, ExportSettings(**grouped[ExportSettings])


def _recorded(value: Any) -> Any:
    """A setting's value as JSON records it."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _recorded(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [_recorded(v) for v in value]
    return value


def fingerprint(spec: SweepSpec) -> dict[str, Any]:
    """The settings that shape the measured figures (those declared with ``fingerprint``),
    by name: what a resumed sweep must share with the one it continues."""
    out: dict[str, Any] = {}
    for settings in (spec, spec.server, spec.measurement, spec.monitor):
        for f, s in declared(type(settings)):
            if s.fingerprint:
                value = getattr(settings, f.name)
                out[f.name] = s.fingerprint(value) if callable(s.fingerprint) else _recorded(value)
    return out
