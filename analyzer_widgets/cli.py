"""``analyzer-widgets``: the sweep from a terminal, with the original tool's flags.

    analyzer-widgets profile -m mlp_numpy --model-folder ./models -b 1,8 -c 1,4
    analyzer-widgets demo
    analyzer-widgets models --model-folder ./models
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from analyzer_widgets import runner as events
from analyzer_widgets.api import make_spec, profile
from analyzer_widgets.config import LaunchMode, MeasurementSettings, Protocol, parse_header, parse_shape
from analyzer_widgets.errors import AnalyzerError, ConfigError, RepositoryError, ResumeError, SweepCancelled
from analyzer_widgets.repository import list_models
from analyzer_widgets.results import SweepResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXAMPLE_REPOSITORY = Path(__file__).parent / "examples" / "model_repository"
DEMO_SHAPES = {"SEQUENCE": (128, 32)}

TABLE_COLUMNS = [
    "model", "batch_size", "concurrency", "status", "throughput_infer_per_s",
    "latency_avg_ms", "latency_p99_ms", "server_compute_infer_ms", "error_count",
]


class Progress:
    """A one-line progress bar on a terminal; one line per point otherwise (CI logs)."""

    def __init__(self, stream: TextIO = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.point_started = self.started
        self.done = 0
        self.total = 0
        self.current = ""
        self.durations: list[float] = []

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, note: str = "") -> str:
        width = 24
        filled = int(width * self.done / self.total) if self.total else 0
        elapsed = time.monotonic() - self.started
        left = ""
        if self.durations and self.total:
            per_point = sum(self.durations) / len(self.durations)
            left = f", ~{per_point * (self.total - self.done):.0f}s left"
        return f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.current}{note} ({elapsed:.0f}s{left})"

    def __call__(self, event: object) -> None:
        if isinstance(event, events.SweepStarted):
            self.total = event.total_points
        elif isinstance(event, events.ServerReady):
            self._message(f"Triton {event.server_version} ready at {event.endpoint} ({event.launch_mode}, "
                          f"{event.startup_s:.1f}s)")
        elif isinstance(event, events.BaselineFinished):
            self._message(f"baseline recorded ({event.row['duration_s']:.1f}s, no models loaded)")
        elif isinstance(event, events.ModelLoading):
            self.current = f"loading {event.model}"
            self._line(self._bar())
        elif isinstance(event, events.ModelLoaded):
            self._message(f"loaded {event.model} in {event.load_s:.1f}s (max_batch_size {event.info.max_batch_size})")
        elif isinstance(event, events.PointStarted):
            self.point_started = time.monotonic()
            self.current = f"{event.model} batch={event.batch_size} concurrency={event.concurrency}"
            self._line(self._bar())
        elif isinstance(event, events.WindowMeasured):
            if self.live:
                self._line(self._bar(f" window {event.trial}: {event.throughput:.0f} infer/s"))
        elif isinstance(event, events.PointFinished):
            self.done = event.index + 1
            row = event.row
            if row["status"] != "skipped":
                self.durations.append(time.monotonic() - self.point_started)
            note = f" -> {row['status']}"
            if math.isfinite(row["throughput_infer_per_s"]):
                note += f", {row['throughput_infer_per_s']:.0f} infer/s, p99 {row['latency_p99_ms']:.2f} ms"
            if row["reason"]:
                note += f" ({row['reason']})"
            if self.live:
                self._line(self._bar())
            else:
                self._line(self._bar(note))
        elif isinstance(event, events.Notice):
            self._message(f"{event.level}: {event.message}")
        elif isinstance(event, events.SweepFinished):
            if self.live and not self.quiet:
                self.stream.write("\n")

    def _message(self, text: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K" + text + "\n")
            self.stream.flush()
        else:
            self._line(text)


def _comma_list(text: str) -> list[str]:
    return [part for part in text.replace(" ", "").split(",") if part]


def _add_sweep_flags(p: argparse.ArgumentParser, demo: bool) -> None:
    d = MeasurementSettings()
    if not demo:
        p.add_argument("-m", "--model-names", required=True, help="comma-separated model names")
        p.add_argument("--model-folder", "--model-repository", dest="model_folder",
                       help="the Triton model repository (needed for local launch mode)")
        p.add_argument("-b", "--batch", default="1", help="comma-separated batch sizes (default: 1)")
        p.add_argument("-c", "--concurrency", default="1", help="comma-separated concurrency values (default: 1)")
    else:
        p.add_argument("-b", "--batch", default="1,8", help="batch sizes (default: 1,8)")
        p.add_argument("-c", "--concurrency", default="1,2", help="concurrency values (default: 1,2)")
    p.add_argument("-e", "--export-path", default="results", help="folder for the CSV files (default: ./results)")
    p.add_argument("--export", action=argparse.BooleanOptionalAction, default=True,
                   help="write metrics-model.csv and metrics-server-only.csv (default: on)")
    p.add_argument("--overwrite", action="store_true", default=demo,
                   help="replace results already in the export folder" + (" (always on for the demo)" if demo else ""))
    if not demo:
        p.add_argument("--resume", action="store_true",
                       help="keep the points already measured in the export folder and measure the rest; "
                            "refused when the spec, the model files, the server version or the GPUs changed")
        p.add_argument("--keep-apart", action="store_true",
                       help="with --resume: when something changed, move the earlier results into "
                            "previous-<time>/ in the export folder and start over instead of refusing")
    g = p.add_argument_group("server")
    g.add_argument("--launch-mode", choices=[m.value for m in LaunchMode], default="local",
                   help="local: start the embedded tritonserver (default); remote: attach to --url; "
                        "docker: a Triton container (--triton-image or --triton-version)")
    g.add_argument("--url", help="remote mode: the server's gRPC (or, with --protocol http, HTTP) host:port")
    g.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                   help="remote mode: a header sent with every request (repeatable)")
    g.add_argument("--triton-version", help="docker mode: run nvcr.io/nvidia/tritonserver:<version>-py3")
    g.add_argument("--triton-image", help="docker mode: run this image instead (must have tritonserver on its PATH)")
    g.add_argument("--gpus", default="auto", help="docker mode: auto (default), all, none, or ids like 0,1")
    g.add_argument("--tritonserver", help="local mode: a tritonserver binary instead of the embedded one")
    g.add_argument("--backend-python", help="local mode: the Python whose packages the models import")
    g.add_argument("--host", default="127.0.0.1", help="address the local server binds (default: 127.0.0.1)")
    g.add_argument("--http-port", type=int, help="local mode: HTTP port (default: a free one)")
    g.add_argument("--grpc-port", type=int, help="local mode: gRPC port (default: a free one)")
    g.add_argument("--metrics-port", type=int, help="local mode: metrics port (default: a free one)")
    g.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the server (default: 120)")
    g.add_argument("--model-load-timeout", type=float, default=600.0,
                   help="seconds a model load may take before the server counts as hung (default: 600)")
    m = p.add_argument_group("measurement")
    m.add_argument("--protocol", choices=[x.value for x in Protocol], default="grpc", help="default: grpc")
    m.add_argument("--window-ms", "--measurement-interval", dest="window_ms", type=int,
                   default=500 if demo else d.window_ms, help=f"window length in ms (default: {500 if demo else d.window_ms})")
    m.add_argument("--stability-pct", "--stability-percentage", dest="stability_pct", type=float,
                   default=d.stability_pct, help=f"stability threshold in %% (default: {d.stability_pct:g})")
    m.add_argument("--stable-windows", type=int, default=d.stable_windows,
                   help=f"windows that must agree (default: {d.stable_windows})")
    m.add_argument("--max-trials", type=int, default=d.max_trials, help=f"windows at most (default: {d.max_trials})")
    m.add_argument("--client-processes", type=int, default=0, help="client processes per point (default: 0 = automatic)")
    m.add_argument("--request-timeout", type=float, default=d.request_timeout_s, help="seconds per request (default: 30)")
    m.add_argument("--shape", action="append", default=[], metavar="NAME:D1,D2",
                   help="shape of an input with variable dims, without the batch dimension (repeatable)")
    m.add_argument("--input-data", default="random", help="random (default), zero, or a .npz file of arrays by input name")
    m.add_argument("--baseline-seconds", type=float, default=1.0 if demo else 2.0,
                   help="how long to record the server with no models (default: %(default)s)")
    mon = p.add_argument_group("monitoring")
    mon.add_argument("--nvml", action=argparse.BooleanOptionalAction, default=True,
                     help="sample the GPUs through NVML (default: on where NVML is present)")
    mon.add_argument("--nvml-interval-ms", type=float, default=50.0, help="GPU sampling interval (default: 50 = 20 Hz)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analyzer-widgets",
        description="Measure throughput, latency and resource use of models on NVIDIA Triton Inference Server.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sweep_flags(sub.add_parser("profile", help="sweep models over batch sizes x concurrency values"), demo=False)
    _add_sweep_flags(sub.add_parser("demo", help="sweep the bundled example models on the embedded server"), demo=True)
    models = sub.add_parser("models", help="list the models of a repository")
    models.add_argument("--model-folder", "--model-repository", dest="model_folder", default=str(EXAMPLE_REPOSITORY))
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    shapes = dict(parse_shape("--shape", s) for s in args.shape)
    headers = dict(parse_header("--header", h) for h in args.header)
    return dict(
        batch_sizes=args.batch, concurrency=args.concurrency,
        launch_mode=args.launch_mode, url=args.url, headers=headers, triton_version=args.triton_version,
        triton_image=args.triton_image, gpus=args.gpus,
        tritonserver_path=args.tritonserver, backend_python=args.backend_python, host=args.host,
        http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        startup_timeout_s=args.startup_timeout, model_load_timeout_s=args.model_load_timeout,
        protocol=args.protocol, window_ms=args.window_ms,
        stability_pct=args.stability_pct, stable_windows=args.stable_windows, max_trials=args.max_trials,
        client_processes=args.client_processes, request_timeout_s=args.request_timeout,
        input_shapes=shapes, input_data=args.input_data, baseline_s=args.baseline_seconds,
        nvml=args.nvml, nvml_interval_s=args.nvml_interval_ms / 1000.0,
    )


def demo_models(out: TextIO) -> list[str]:
    """Every example model, less the torch one where torch is not installed (said why)."""
    models = sorted(list_models(EXAMPLE_REPOSITORY))
    if importlib.util.find_spec("torch") is None:
        models.remove("torch_mlp")
        out.write("note: torch_mlp skipped: torch is not installed in this environment. To include it: "
                  "pip install 'analyzer-widgets[torch]' (or make demo-torch)\n")
    return models


def print_table(result: SweepResult, out: TextIO) -> None:
    import pandas as pd

    df = result.to_frame()
    if df.empty:
        out.write("no points were measured\n")
        return
    columns = list(TABLE_COLUMNS)
    if df["gpu_memory_max_mb"].notna().any():
        columns[-1:-1] = ["gpu_memory_max_mb", "model_gpu_memory_max_mb", "gpu_util_max_pct"]
    else:
        columns[-1:-1] = ["server_cpu_util_max_pct"]
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        out.write(df[columns].to_string(index=False) + "\n")
    for what, why in result.unavailable.items():
        out.write(f"  NaN columns ({what}): {why}\n")
    for row in result.rows:
        if row["status"] != "ok" and row["reason"]:
            out.write(f"  {row['model']} batch={row['batch_size']} concurrency={row['concurrency']}: "
                      f"{row['status']}: {row['reason']}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stdout
    if args.command == "models":
        try:
            models = list_models(args.model_folder)
        except AnalyzerError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        for name, info in models.items():
            out.write(f"{name}\t{info.kind}\tmax_batch_size={info.max_batch_size}\n")
        return EXIT_OK
    try:
        settings = _settings(args)
        if args.command == "demo":
            settings.update(models=demo_models(out), model_repository=EXAMPLE_REPOSITORY)
            settings["input_shapes"] = {**DEMO_SHAPES, **settings["input_shapes"]}
        else:
            settings.update(models=_comma_list(args.model_names), model_repository=args.model_folder)
        spec = make_spec(**settings)
    except AnalyzerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    export = Path(args.export_path) if args.export else None
    progress = Progress(quiet=args.quiet)
    holder: dict[str, SweepResult] = {}
    try:
        result = profile(spec, export_path=export, overwrite=args.overwrite, on_event=progress,
                         resume=getattr(args, "resume", False), keep_apart=getattr(args, "keep_apart", False))
        holder["result"] = result
    except KeyboardInterrupt:
        print("\ninterrupted: the server and client processes were stopped; finished rows are in "
              f"{export or 'memory only'}" + (" (--resume measures the rest)" if export else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except SweepCancelled:
        return EXIT_INTERRUPTED
    except (ConfigError, RepositoryError, ResumeError) as e:
        # a bad model name, a missing or empty repository, results that cannot be resumed:
        # the user's input, refused before anything was measured, so a usage error like `models`
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except AnalyzerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print_table(result, out)
    if export is not None:
        out.write(f"results written to {export}/: metrics-model.csv, metrics-server-only.csv, metrics-samples.csv\n")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
