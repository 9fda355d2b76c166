"""Our planner against Triton Model Analyzer 1.58 on the same space (issue 18).

Target (issue 18): on the GPU host, the same space searched by Model Analyzer's brute
search and by ours, one call: the wall time of each, and whether both pick the same best
variant; ours in at most a third of Model Analyzer's time.

On one machine, one after the other (ours first by default: its time is the more
predictable, and Model Analyzer then has all the time left), the same model, space,
batch size, p99 budget, throughput objective and measurement windows:

- ours: `analyzer_widgets.plan(..., strategy="brute", space=<the space>)`, each variant
  loaded through the config override on one embedded server and searched for its highest
  concurrency within the budget (1 to --max-concurrency), in windows of --window-ms (3
  within --stability-pct, at most --max-trials: perf_analyzer's rule);
- Model Analyzer: `model-analyzer profile` with `run_config_search_mode: brute` and the
  space as `model_config_parameters`, `triton_launch_mode: local` on the same embedded
  tritonserver binary, backend directory, models' Python and server environment that our
  local mode uses (it restarts the server for every variant and loads it with the same
  config override); perf_analyzer measures each variant at concurrency 1, 2, 4, ... up to
  --max-concurrency in `time_windows` of the same length and rule (Model Analyzer stops
  a sweep early once throughput stops growing, and measures an unstable point again with
  a window 1 s longer, up to 10 times), then it binary-searches the concurrency of its top
  3 configs and the default one (its reports' "concurrency sweep"). Its detailed reports
  are skipped (reporting, not search); the summary report, which writes the results CSV,
  is kept.

Each tool runs as a child process, timed from its start to its exit (wall), under a time
limit that keeps the whole run within --timeout; a tool past its limit is interrupted
(SIGINT: Model Analyzer then saves its checkpoint after the current measurement, and its
figures are read from there, marked partial), and whatever it left running is stopped.
Printed: per tool the variants measured, the points (perf_analyzer measurements / our
rows), the wall (and for Model Analyzer when its brute phase ended and when it said the
profile was complete), the best variant within the budget with its throughput, p99 and
concurrency, whether both chose the same config (both tools' configs read as instance kind
and count, max batch size, batching delay), ours / Model Analyzer's wall; then each
variant as each tool measured it. Written under --out: summary.csv, variants.csv,
runs.json, settings.json, config.yaml (Model Analyzer's), ma/ (its log stamped with
seconds, export/ with results/metrics-model-inference.csv and the summary report,
checkpoints/, the variants' configs it wrote, the server's log, perf_analyzer's output)
and ours/ (the child's log, export/ with plan.csv, plan.json, metrics-*.csv, the server's
log).

Model Analyzer finds GPUs through DCGM (libdcgm.so.4), which the GPU host may lack, and
without GPUs it would hide them from the server (CUDA_VISIBLE_DEVICES=""). Where
libdcgm.so.4 is missing (--ma-gpu-discovery auto) it runs through this script's
`--_ma-nvml` mode: its `GPUDeviceFactory` gets the GPUs (UUID, PCI bus id) from NVML
instead; nothing else of it changes.

    # the GPU host, after `source benchmarks/gpu/setup_ma.sh .gpuma` (docs/gpu-host.md)
    python3 benchmarks/plan_vs_model_analyzer.py --out /tmp/cmp --timeout 520
    # a CPU smoke run: mlp_numpy, KIND_CPU, batch 1 (Model Analyzer 1.58 and perf_analyzer needed;
    # perf_analyzer needs glibc 2.38)
    python benchmarks/plan_vs_model_analyzer.py --cpu --out /tmp/cmp-cpu --instances 1,2 \\
        --max-batch-sizes 16 --delays-us 0 --max-concurrency 4 --ma-python /tmp/ma-venv/bin/python \\
        --perf-analyzer PATH
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: seconds kept after each tool's limit: its interrupt (SIGINT, then SIGTERM, then SIGKILL) and clean-up
MARGIN_S = 30.0
#: what the row of each tool in summary.csv holds
SUMMARY_FIELDS = ["tool", "finished", "exit", "variants_measured", "points", "wall_s", "brute_phase_s", "search_wall_s",
                  "best_variant", "best_config", "best_throughput_infer_per_s", "best_p99_ms", "best_concurrency",
                  "same_best", "wall_ratio_ours_over_ma", "note"]


# -- the space, as each tool declares it ------------------------------------------------------
def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas") from e
    if not values:
        raise argparse.ArgumentTypeError("give at least one value")
    return values


def our_space(args: argparse.Namespace) -> dict[str, Any]:
    """The space in our keys (docs/planning.md)."""
    return {"instances": args.instances, "kind": args.kind, "max_batch_size": args.max_batch_sizes,
            "dynamic_batching": {"delays_us": args.delays_us}}


def ma_config(args: argparse.Namespace, paths: Mapping[str, Path], server: Mapping[str, Any],
              ports: Sequence[int]) -> dict[str, Any]:
    """Model Analyzer's profile config for the same space, budget, objective and windows.

    Written as JSON, which YAML reads as it is."""
    config: dict[str, Any] = {
        "model_repository": str(Path(args.model_repository).resolve()),
        "profile_models": {args.model: {"model_config_parameters": {
            "instance_group": [{"kind": args.kind, "count": args.instances}],
            "max_batch_size": args.max_batch_sizes,
            "dynamic_batching": {"max_queue_delay_microseconds": args.delays_us},
        }}},
        "run_config_search_mode": "brute",
        "run_config_search_min_concurrency": 1,
        "run_config_search_max_concurrency": args.max_concurrency,
        "batch_sizes": [args.batch],
        "constraints": {"perf_latency_p99": {"max": args.latency_budget_ms}},
        "objectives": ["perf_throughput"],
        "triton_launch_mode": "local",
        "triton_server_path": str(server["binary"]),
        # the flags and environment our local mode gives the same binary (server/local.py, _embedded.py)
        "triton_server_flags": {"backend-directory": str(server["backend_dir"]), "exit-timeout-secs": 5},
        "triton_server_environment": dict(server["env"]),
        "triton_output_path": str(paths["ma"] / "tritonserver.log"),
        "triton_http_endpoint": f"localhost:{ports[0]}",
        "triton_grpc_endpoint": f"localhost:{ports[1]}",
        "triton_metrics_url": f"http://localhost:{ports[2]}/metrics",
        "perf_analyzer_path": str(args.perf_analyzer),
        # perf_analyzer's own stability rule (3 windows within 10%, at most 10) in windows of our length
        "perf_analyzer_flags": {"measurement-mode": "time_windows", "measurement-interval": args.window_ms,
                                "max-trials": args.max_trials, "stability-percentage": args.stability_pct},
        "perf_output": True,
        "perf_output_path": str(paths["ma"] / "perf_analyzer_output.log"),
        "output_model_repository_path": str(paths["ma"] / "output_model_repository"),
        "override_output_model_repository": True,
        "export_path": str(paths["ma_export"]),
        "checkpoint_directory": str(paths["ma"] / "checkpoints"),
        "skip_detailed_reports": True,
    }
    if args.ma_max_auto_adjusts is not None:
        # after an unstable point Model Analyzer runs it again with a window 1 s longer, up to
        # this many times (10 by default)
        config["perf_analyzer_max_auto_adjusts"] = args.ma_max_auto_adjusts
    return config


# -- one variant's config, read the same way for both tools ------------------------------------
def config_key(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields the space sets, as (kinds, instance count, max batch size, delay in µs or
    None without dynamic batching), from a config as Triton's JSON (protobuf field names)."""
    groups = list(config.get("instance_group") or [{}])
    kinds = "+".join(sorted({str(g.get("kind", "KIND_AUTO")) for g in groups}))
    count = sum(int(g.get("count", 1)) for g in groups)
    batching = config.get("dynamic_batching")
    delay = None if batching is None else int(batching.get("max_queue_delay_microseconds", 0) or 0)
    return (kinds, count, int(config.get("max_batch_size", 0) or 0), delay)


def key_text(key: Sequence[Any] | None) -> str:
    if not key:
        return "-"
    kinds, count, mbs, delay = key
    batching = "no dynamic batching" if delay is None else f"delay {delay} us"
    return f"{kinds} x{count}, max batch {mbs}, {batching}"


def read_pbtxt(path: Path) -> dict[str, Any]:
    """A config.pbtxt as Triton's JSON (as our planner holds configs)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# -- running a tool as a child, timed, within a time limit ---------------------------------------
class Child:
    """A child process whose output goes, each line stamped with the seconds since its start,
    to a log file and (shortened) to stderr; its descendants are tracked, so that what it
    leaves running (a tritonserver in a session of its own, perf_analyzer) can be stopped."""

    def __init__(self, label: str, cmd: Sequence[str], log: Path, cwd: Path, env: Mapping[str, str],
                 echo: bool = True) -> None:
        self.label = label
        self.log_path = log
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self.marks: dict[str, float] = {}  # first time (s) a line held each watched text
        self.watch: tuple[str, ...] = ()
        self.echo = echo
        self.descendants: dict[int, tuple[float, str]] = {}
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                     errors="replace", start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._track, daemon=True)
        self._watcher.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                now = time.monotonic() - self.t0
                line = line.rstrip("\n")
                log.write(f"[{now:7.1f} s] {line}\n")
                log.flush()
                self.tail.append(line)
                for text in self.watch:
                    if text in line and text not in self.marks:
                        self.marks[text] = now
                if self.echo:
                    print(f"  [{self.label} {now:5.0f} s] {line[:160]}", file=sys.stderr, flush=True)

    def _track(self) -> None:
        import psutil

        while not self._stop_watch.is_set():
            try:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    try:
                        self.descendants.setdefault(p.pid, (p.create_time(), p.name()))
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self._stop_watch.wait(0.5)

    def wait(self, deadline: float) -> tuple[int | None, bool]:
        """Wait until the child exits or ``deadline`` (monotonic) passes; past it, SIGINT (a
        tool's own way to stop after the current measurement), then SIGTERM, then SIGKILL.
        Returns (exit status, whether the time limit stopped it)."""
        timed_out = False
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            print(f"{self.label}: over its time limit, interrupting it", file=sys.stderr, flush=True)
            # Model Analyzer saves its checkpoint after every measurement: a short grace loses
            # at most the one in flight
            for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 3.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.wall = time.monotonic() - self.t0
        self._stop_watch.set()
        self._watcher.join(timeout=2)
        self._reader.join(timeout=5)
        self.stop_leftovers()
        return self.proc.poll(), timed_out

    def stop_leftovers(self) -> None:
        """Stop the descendants still running (each by its pid, checked by its start time):
        a tritonserver with its model stubs (its own process group), perf_analyzer."""
        import psutil

        alive: list[psutil.Process] = []
        for pid, (created, name) in self.descendants.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() != created or not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            print(f"{self.label}: stopping what it left running: {name} (pid {pid})", file=sys.stderr, flush=True)
            try:
                if name == "tritonserver" and os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGTERM)  # the server and the model stubs of its group
                else:
                    p.terminate()
                alive.append(p)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        _, still = psutil.wait_procs(alive, timeout=10)
        for p in still:
            try:
                p.kill()
            except psutil.Error:
                pass


def free_ports(count: int) -> list[int]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# -- Model Analyzer ------------------------------------------------------------------------------
def dcgm_present() -> bool:
    """Where Model Analyzer 1.58 looks for DCGM (monitor/dcgm/dcgm_structs.py)."""
    import platform

    return any(Path(p).is_file() for p in (f"/usr/lib/{platform.machine()}-linux-gnu/libdcgm.so.4",
                                           "/usr/lib64/libdcgm.so.4"))


def find_perf_analyzer() -> Path | None:
    """The perf_analyzer binary itself: the wheel's `perf_analyzer` command is a Python
    wrapper that always exits 0, which would hide a failed run from Model Analyzer."""
    import importlib.util

    spec = importlib.util.find_spec("perf_analyzer")
    for root in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(root) / "bin" / "perf_analyzer"
        if binary.is_file():
            return binary
    found = shutil.which("perf_analyzer")
    return Path(found) if found else None


def run_model_analyzer(args: argparse.Namespace, paths: Mapping[str, Path], server: Mapping[str, Any],
                       deadline: float) -> dict[str, Any]:
    ports = free_ports(3)
    config = ma_config(args, paths, server, ports)
    config_path = paths["out"] / "config.yaml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    paths["ma_export"].mkdir(parents=True, exist_ok=True)
    discovery = args.ma_gpu_discovery
    if discovery == "auto":
        discovery = "dcgm" if (args.cpu or dcgm_present()) else "nvml"
    ma_args = ["profile", "-f", str(config_path)]
    if discovery == "nvml":
        cmd = [args.ma_python, str(Path(__file__).resolve()), "--_ma-nvml", *ma_args]
    else:
        cmd = [args.ma_python, "-m", "model_analyzer.entrypoint", *ma_args]
    print(f"Model Analyzer: {' '.join(cmd)} (GPU lookup: {discovery}; ports {ports})", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.ma_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (args.ma_pythonpath, env.get("PYTHONPATH")) if p)
    child = Child("MA", cmd, paths["ma"] / "model-analyzer.log", paths["ma"], env, echo=not args.quiet)
    # its brute phase ends, then it binary-searches the concurrency of its top configs (for its
    # reports, which can move its best), then the profile is complete and the results written
    child.watch = ("Done with brute mode search", "Profile complete")
    status, timed_out = child.wait(deadline)
    out: dict[str, Any] = {"tool": "Model Analyzer 1.58", "wall_s": child.wall, "exit": status,
                           "timed_out": timed_out, "gpu_lookup": discovery,
                           "brute_phase_s": child.marks.get("Done with brute mode search", math.nan),
                           "search_wall_s": child.marks.get("Profile complete", math.nan)}
    rows = read_ma_results(paths, args.model, args.latency_budget_ms)
    out.update(rows)
    out["finished"] = status == 0 and not timed_out and bool(rows.get("variants"))
    if not out["finished"]:
        out["log_tail"] = "\n".join(child.tail)
        server_log = paths["ma"] / "tritonserver.log"
        if server_log.is_file():
            out["server_log_tail"] = "\n".join(server_log.read_text(errors="replace").splitlines()[-25:])
        errors = paths["ma_export"] / "perf_analyzer_error.log"
        if errors.is_file():
            out["perf_analyzer_errors"] = "\n".join(errors.read_text(errors="replace").splitlines()[:40])
    return out


def read_ma_results(paths: Mapping[str, Path], model: str, budget_ms: float) -> dict[str, Any]:
    """Model Analyzer's measurements, each variant's config and its best variant: the
    highest throughput among the measurements that satisfy the constraints (what it ranks
    by).

    From results/metrics-model-inference.csv (one row per perf_analyzer measurement, every
    variant, passing and failing), with each variant's config from the output model
    repository it wrote. A run stopped before its end writes no CSV; then from its
    checkpoint (saved after each measurement), the constraint applied here (p99 within
    the budget), marked `partial`."""
    found = paths["ma_export"] / "results" / "metrics-model-inference.csv"
    variants: dict[str, dict[str, Any]] = {}
    source = "csv"
    if found.is_file():
        with open(found, newline="") as f:
            table = [dict(row) for row in csv.DictReader(f)]
        columns = list(table[0]) if table else []

        def column(*words: str) -> str:
            for name in columns:
                if all(w.lower() in name.lower() for w in words):
                    return name
            raise KeyError(f"no column with {words} in {found}: {columns}")

        if table:
            c_variant, c_ok = column("model config"), column("satisfies")
            c_tput, c_p99, c_conc = column("throughput"), column("p99"), column("concurrency")
        for row in table:
            entry = variants.setdefault(row[c_variant].strip(), {"points": 0, "best": None})
            entry["points"] += 1
            if row[c_ok].strip().lower() == "yes":
                _keep_best(entry, float(row[c_tput]), float(row[c_p99]), row[c_conc].strip())
        for name, entry in variants.items():
            pbtxt = paths["ma"] / "output_model_repository" / name / "config.pbtxt"
            try:
                entry["key"] = list(config_key(read_pbtxt(pbtxt)))
            except Exception as e:  # noqa: BLE001 - said in the output; the row stays
                entry["key"], entry["key_error"] = None, f"{type(e).__name__}: {e}"
    else:
        source = "checkpoint (partial)"
        variants = read_ma_checkpoint(paths["ma"] / "checkpoints", model, budget_ms)
    if not variants:
        return {}
    passing = [(entry["best"]["throughput"], name) for name, entry in variants.items() if entry["best"]]
    output = paths["ma"] / "perf_analyzer_output.log"
    launches = output.read_text(errors="replace").count("Perf Analyzer Launched") if output.is_file() else 0
    return {"variants": variants, "points": sum(e["points"] for e in variants.values()),
            "perf_analyzer_launches": launches, "best": max(passing)[1] if passing else None,
            "results_from": source}


def _keep_best(entry: dict[str, Any], throughput: float, p99_ms: float, concurrency: str) -> None:
    if entry["best"] is None or throughput > entry["best"]["throughput"]:
        entry["best"] = {"throughput": throughput, "p99_ms": p99_ms, "concurrency": concurrency}


def read_ma_checkpoint(folder: Path, model: str, budget_ms: float) -> dict[str, dict[str, Any]]:
    """The measurements in Model Analyzer's latest checkpoint (its own JSON layout in 1.58:
    ResultManager.results -> model -> variant -> [run config, {perf_analyzer command:
    measurement}])."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    checkpoints = sorted(folder.glob("*.ckpt"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not checkpoints:
        return {}
    state = json.loads(checkpoints[-1].read_text())
    out: dict[str, dict[str, Any]] = {}
    for name, (run_config, measurements) in state["ResultManager.results"]["_results"].get(model, {}).items():
        entry: dict[str, Any] = {"points": 0, "best": None, "key": None}
        try:
            config = run_config["_model_run_configs"][0]["_model_config_variant"]["model_config"]
            message = json_format.ParseDict(config, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)
            entry["key"] = list(config_key(json_format.MessageToDict(message, preserving_proto_field_name=True)))
        except Exception as e:  # noqa: BLE001 - said in the output; the measurements stay
            entry["key_error"] = f"{type(e).__name__}: {e}"
        for measurement in measurements.values():
            for per_model in measurement.get("_model_config_measurements", []):
                figures = {tag: value.get("_value") for tag, value in per_model.get("_non_gpu_data", [])}
                entry["points"] += 1
                throughput, p99 = figures.get("perf_throughput"), figures.get("perf_latency_p99")
                if throughput is not None and p99 is not None and float(p99) <= budget_ms:
                    concurrency = per_model.get("_model_specific_pa_params", {}).get("concurrency-range", "")
                    _keep_best(entry, float(throughput), float(p99), str(concurrency))
        out[name] = entry
    return out


def ma_with_nvml_devices(ma_argv: Sequence[str]) -> None:
    """Model Analyzer's entry point, its GPU lookup answered from NVML (patch_ma_gpu_lookup)."""
    patch_ma_gpu_lookup()
    from model_analyzer.entrypoint import main

    sys.argv = ["model-analyzer", *ma_argv]
    main()


def patch_ma_gpu_lookup() -> None:
    """Model Analyzer's GPU lookup answered from NVML instead of DCGM.

    Model Analyzer 1.58 lists GPUs through DCGM (libdcgm.so.4) and, without it, cannot run
    in local launch mode (its `dcgm_disable` needs remote mode). Here `GPUDeviceFactory`
    takes the GPUs, their UUIDs and PCI bus ids from NVML; the GPUs it then hands the
    server (CUDA_VISIBLE_DEVICES) and its metrics (read from the server's /metrics) are the
    same ones."""
    from model_analyzer.device import gpu_device_factory
    from model_analyzer.device.gpu_device import GPUDevice

    def text(value: str | bytes) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def init_all_devices(self: Any, dcgmPath: str | None = None) -> None:  # noqa: N803 - its signature
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - no NVML: no GPUs, as without DCGM
            print(f"[plan_vs_model_analyzer] NVML unavailable ({e}): no GPUs", flush=True)
            return
        try:
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                device = GPUDevice(text(pynvml.nvmlDeviceGetName(handle)), index,
                                   text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                                   text(pynvml.nvmlDeviceGetUUID(handle)))
                self._devices.append(device)
                self._devices_by_bus_id[device.pci_bus_id()] = device
                self._devices_by_uuid[device.device_uuid()] = device
                print(f"[plan_vs_model_analyzer] GPU from NVML: {index} {device.device_name()} "
                      f"{device.device_uuid()}", flush=True)
        finally:
            pynvml.nvmlShutdown()

    def visible(self: Any) -> list[Any]:
        setting = os.environ.get("CUDA_VISIBLE_DEVICES")
        if setting is None:
            return list(self._devices)
        chosen = []
        for entry in (e.strip() for e in setting.split(",") if e.strip()):
            if entry.isdigit():
                if int(entry) < len(self._devices):
                    chosen.append(self._devices[int(entry)])
            else:
                chosen += [d for d in self._devices if d.device_uuid().startswith(entry)]
        return chosen

    def by_cuda_index(self: Any, index: int) -> Any:
        devices = visible(self)
        if index >= len(devices):
            raise IndexError(index)
        return devices[index]

    factory = gpu_device_factory.GPUDeviceFactory
    factory.init_all_devices = init_all_devices  # type: ignore[method-assign]
    name_devices_in_bytes()
    factory.get_cuda_visible_gpus = visible  # type: ignore[method-assign]
    factory.get_device_by_cuda_index = by_cuda_index  # type: ignore[method-assign]


def name_devices_in_bytes() -> None:
    """numba.cuda's devices named in bytes, as Model Analyzer 1.58 reads them.

    Its MetricsManager decodes ``numba.cuda.list_devices()[i].name`` as bytes; the numba on
    the GPU host (0.60+) gives a str, and the decoding raised TypeError before the first
    measurement (seen on the H200, 2026-12-03). A device is wrapped so its ``name`` is
    bytes and everything else (its context manager included) is the device's own."""
    import numba.cuda

    class BytesNamed:
        def __init__(self, device: Any) -> None:
            self._device = device

        @property
        def name(self) -> bytes:
            name = self._device.name
            return name.encode() if isinstance(name, str) else name

        def __getattr__(self, attribute: str) -> Any:
            return getattr(self._device, attribute)

        def __enter__(self) -> Any:
            return self._device.__enter__()

        def __exit__(self, *exc: object) -> Any:
            return self._device.__exit__(*exc)

    listed = numba.cuda.list_devices
    numba.cuda.list_devices = lambda: [BytesNamed(d) for d in listed()]


# -- ours ----------------------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, paths: Mapping[str, Path], deadline: float) -> dict[str, Any]:
    settings = {
        "model": args.model, "model_repository": str(Path(args.model_repository).resolve()),
        "space": our_space(args), "strategy": args.ours_strategy, "objective": "throughput",
        "latency_budget_ms": args.latency_budget_ms, "latency_statistic": "p99", "batch_sizes": [args.batch],
        "concurrency": [1, args.max_concurrency], "window_ms": args.window_ms, "stable_windows": 3,
        "stability_pct": args.stability_pct,
        "max_trials": args.max_trials, "export_path": str(paths["ours_export"]),
        "log_path": str(paths["ours"] / "tritonserver.log"),
    }
    settings_path, summary_path = paths["ours"] / "settings.json", paths["ours"] / "summary.json"
    settings_path.write_text(json.dumps(settings, indent=2) + "\n")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_ours", str(settings_path), str(summary_path)]
    print(f"ours: {' '.join(cmd)}", file=sys.stderr, flush=True)
    child = Child("ours", cmd, paths["ours"] / "plan.log", HERE, {**os.environ, "PYTHONUNBUFFERED": "1"},
                  echo=not args.quiet)
    status, timed_out = child.wait(deadline)
    out: dict[str, Any] = {"tool": f"ours (plan, {args.ours_strategy})", "wall_s": child.wall, "exit": status,
                           "timed_out": timed_out}
    if summary_path.is_file():
        out.update(json.loads(summary_path.read_text()))
    out["finished"] = status == 0 and not timed_out and bool(out.get("variants"))
    if not out["finished"]:
        out["log_tail"] = "\n".join(child.tail)
    return out


def ours_child(settings_path: str, summary_path: str) -> None:
    """The child that runs our plan and writes what the comparison needs as JSON."""
    import analyzer_widgets as aw
    from analyzer_widgets import events as ev

    settings = json.loads(Path(settings_path).read_text())
    model = settings.pop("model")
    t0 = time.monotonic()

    def progress(event: object) -> None:
        if isinstance(event, ev.ModelLoading):
            print(f"loading {event.model} ({time.monotonic() - t0:.0f} s)", flush=True)
        elif isinstance(event, ev.Notice) and event.level is not ev.Level.PROGRESS:
            print(f"notice: {event.message}", flush=True)

    result = aw.plan(model, on_event=progress, **settings)
    column = result.constraints.statistic.column
    variants: dict[str, dict[str, Any]] = {}
    for judged in result.ranked:
        answer = judged.answer or {}
        rows = [r for r in result.sweep.rows if str(r.get("variant", "")) == judged.variant]
        config = result.configs.get(judged.variant)
        variants[judged.variant] = {
            "points": len(rows), "probes": sum(r.get("search") == "probe" for r in rows),
            "key": list(config_key(config)) if config is not None else None,
            "best": {"throughput": float(answer.get("throughput_infer_per_s", math.nan)),
                     "p99_ms": float(answer.get(column, math.nan)),
                     "concurrency": str(answer.get("concurrency", ""))} if judged.ranked and answer else None,
            "failed": judged.failed, "doubtful": list(judged.doubtful),
        }
    best = result.best
    summary = {"variants": variants, "points": len(result.sweep.rows),
               "probes": sum(r.get("search") == "probe" for r in result.sweep.rows),
               "best": best.variant if best is not None else None, "sentence": result.sentence}
    Path(summary_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(result.sentence, flush=True)


# -- the report ----------------------------------------------------------------------------------
def best_of(run: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    name = run.get("best")
    return name, (run.get("variants") or {}).get(name, {}) if name else {}


def number(value: Any, fmt: str) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    return format(x, fmt) if math.isfinite(x) else "-"


def rounded(value: Any, digits: int = 1) -> float | str:
    """A number for the CSV files ('' where there is none)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    return round(x, digits) if math.isfinite(x) else ""


def report(args: argparse.Namespace, paths: Mapping[str, Path], ma: Mapping[str, Any] | None,
           ours: Mapping[str, Any] | None) -> None:
    runs = [r for r in (ma, ours) if r is not None]
    _, ma_entry = best_of(ma or {})
    _, our_entry = best_of(ours or {})
    same: bool | None = None
    if ma_entry.get("key") and our_entry.get("key"):  # on MA's partial figures where it was stopped
        same = ma_entry.get("key") == our_entry.get("key")
    ratio = math.nan
    if ma and ours and ours.get("finished") and (ma.get("finished") or ma.get("timed_out")):
        ratio = float(ours["wall_s"]) / float(ma["wall_s"])  # a bound (<=) where MA was stopped by its limit
    rows = []
    print("\n| tool | finished | variants measured | points | wall (s) | brute phase done (s) | profile complete (s) "
          "| best variant | its config "
          "| throughput (infer/s) | p99 (ms) | at concurrency | same best | ours / MA wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        is_ma = run is ma
        name, entry = best_of(run)
        best = entry.get("best") or {}
        if is_ma:
            points = f"{run.get('points', 0)} perf_analyzer runs"
            if run.get("perf_analyzer_launches"):
                points += f" ({run['perf_analyzer_launches']} launched)"
        else:
            points = f"{run.get('points', 0)} rows ({run.get('probes', 0)} probes)"
        finished = "yes" if run.get("finished") else ("**stopped at its limit**" if run.get("timed_out")
                                                     else f"**no** (exit {run.get('exit')})")
        if run.get("results_from", "csv") != "csv":
            finished += f"; figures from its {run['results_from']}"
        shown_ratio = "" if is_ma else (("<= " if ma and ma.get("timed_out") else "") + number(ratio, ".2f"))
        print(f"| {run['tool']} | {finished} | {len(run.get('variants') or {})} | {points} | "
              f"{number(run['wall_s'], '.0f')} | {number(run.get('brute_phase_s'), '.0f')} | "
              f"{number(run.get('search_wall_s'), '.0f')} | {name or '-'} | "
              f"{key_text(entry.get('key'))} | {number(best.get('throughput'), ',.0f')} | "
              f"{number(best.get('p99_ms'), '.2f')} | {best.get('concurrency', '-')} | "
              f"{'' if same is None else ('yes' if same else '**no**')} | {shown_ratio} |")
        rows.append({
            "tool": run["tool"], "finished": bool(run.get("finished")), "exit": run.get("exit"),
            "variants_measured": len(run.get("variants") or {}), "points": run.get("points", 0),
            "wall_s": rounded(run["wall_s"]), "brute_phase_s": rounded(run.get("brute_phase_s")),
            "search_wall_s": rounded(run.get("search_wall_s")),
            "best_variant": name or "", "best_config": key_text(entry.get("key")),
            "best_throughput_infer_per_s": rounded(best.get("throughput")), "best_p99_ms": rounded(best.get("p99_ms"), 3),
            "best_concurrency": best.get("concurrency", ""), "same_best": "" if same is None else same,
            "wall_ratio_ours_over_ma": "" if is_ma or not math.isfinite(ratio) else round(ratio, 3),
            "note": "; ".join(n for n in (
                "stopped at its time limit" if run.get("timed_out") else "",
                f"results from its {run['results_from']}" if run.get("results_from") else "",
                f"GPU lookup {run['gpu_lookup']}" if run.get("gpu_lookup") else "") if n),
        })
    if math.isfinite(ratio):
        bound = bool(ma and ma.get("timed_out"))
        verdict = "met" if ratio <= 1 / 3 else ("not decided (Model Analyzer was stopped first)" if bound
                                                else "**not met**")
        print(f"\ntarget (ours in at most 1/3 of Model Analyzer's wall): {verdict} "
              f"(ours / MA {'<= ' if bound else ''}{ratio:.2f})")
        brute = float((ma or {}).get("brute_phase_s", math.nan))
        if math.isfinite(brute):
            print(f"against Model Analyzer's brute phase alone ({brute:.0f} s, before it searches its top "
                  f"configs' concurrency for its reports): {float(ours['wall_s']) / brute:.2f}")
    with open(paths["out"] / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    # every variant, as each tool measured it, matched by its config
    by_key: dict[str, dict[str, Any]] = {}
    for side, run in (("ma", ma), ("ours", ours)):
        for name, entry in ((run or {}).get("variants") or {}).items():
            key = key_text(entry.get("key")) if entry.get("key") else f"? {name}"
            by_key.setdefault(key, {})[side] = (name, entry)
    print("\neach variant (its best point within the budget; '-' where none was within it)\n")
    print("| config | MA variant | MA points | MA infer/s | MA p99 (ms) | MA conc. | our variant | our points | "
          "our infer/s | our p99 (ms) | our conc. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    variant_rows = []
    for key, sides in sorted(by_key.items()):
        cells: list[str] = [key]
        record: dict[str, Any] = {"config": key}
        for side in ("ma", "ours"):
            name, entry = sides.get(side, ("", {}))
            best = entry.get("best") or {}
            cells += [name or "", str(entry.get("points", "")), number(best.get("throughput"), ",.0f"),
                      number(best.get("p99_ms"), ".2f"), str(best.get("concurrency", "-")) if entry else ""]
            record.update({f"{side}_variant": name, f"{side}_points": entry.get("points", ""),
                           f"{side}_throughput_infer_per_s": rounded(best.get("throughput")),
                           f"{side}_p99_ms": rounded(best.get("p99_ms"), 3),
                           f"{side}_concurrency": best.get("concurrency", "")})
        print("| " + " | ".join(cells) + " |")
        variant_rows.append(record)
    if variant_rows:
        with open(paths["out"] / "variants.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(variant_rows[0]))
            writer.writeheader()
            writer.writerows(variant_rows)
    for run in runs:
        for part in ("log_tail", "server_log_tail", "perf_analyzer_errors"):
            if run.get(part):
                print(f"\n{run['tool']}: {part.replace('_', ' ')}:\n{run[part]}")
    if ours and ours.get("sentence"):
        print(f"\nours: {ours['sentence']}")
    (paths["out"] / "runs.json").write_text(json.dumps({"ma": ma, "ours": ours}, indent=2, default=str) + "\n")
    print(f"\nwritten to {paths['out']}/: summary.csv, variants.csv, runs.json, config.yaml, ma/, ours/")


# -- main ----------------------------------------------------------------------------------------
def server_setup() -> dict[str, Any]:
    """The binary, backend directory and environment our local mode starts the server with."""
    from analyzer_widgets.server import _embedded

    embedded = _embedded.find_embedded()
    python = _embedded.models_python()
    _embedded.check_models_environment(python)
    backend_dir = _embedded.prepare_backend_dir(embedded, python)
    env = _embedded.server_environment(embedded, python)
    return {"binary": embedded.binary, "backend_dir": backend_dir, "python": python,
            "env": {"LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"], "PATH": env["PATH"]}}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_ma-nvml":
        ma_with_nvml_devices(sys.argv[2:])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--_ours":
        ours_child(sys.argv[2], sys.argv[3])
        return
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the results (must be new or empty)")
    parser.add_argument("--cpu", action="store_true", help="mlp_numpy with KIND_CPU instances (no GPU needed)")
    parser.add_argument("--model", default=None, help="default: torch_mlp (mlp_numpy with --cpu)")
    parser.add_argument("--model-repository", default=None, help="default: the package's example repository")
    parser.add_argument("--kind", default=None, help="instance kind of every variant (default KIND_GPU; "
                                                     "KIND_CPU with --cpu)")
    parser.add_argument("--instances", type=int_list, default=[1, 2])
    parser.add_argument("--max-batch-sizes", type=int_list, default=[8, 32])
    parser.add_argument("--delays-us", type=int_list, default=[0, 100])
    parser.add_argument("--batch", type=int, default=None,
                        help="the batch size of every request, both tools (default 8; 1 with --cpu)")
    parser.add_argument("--latency-budget-ms", type=float, default=None, help="p99 budget (default 10; 20 with --cpu)")
    parser.add_argument("--window-ms", type=int, default=500, help="measurement window of both tools")
    parser.add_argument("--max-trials", type=int, default=10,
                        help="windows at most per point, both tools (perf_analyzer's default is 10)")
    parser.add_argument("--stability-pct", type=float, default=10.0,
                        help="both tools: the last 3 windows agree within this many percent (perf_analyzer's 10)")
    parser.add_argument("--max-concurrency", type=int, default=16,
                        help="Model Analyzer: 1, 2, 4, ... up to it; ours: searched from 1 to it")
    parser.add_argument("--timeout", type=float, default=530.0, help="the whole comparison ends within this (s)")
    parser.add_argument("--ma-timeout", type=float, default=None,
                        help="Model Analyzer's time at most (s); default: what is left")
    parser.add_argument("--ours-timeout", type=float, default=240.0, help="our time at most (s)")
    parser.add_argument("--order", choices=["ma-first", "ours-first"], default="ours-first",
                        help="ours first by default: its time is the more predictable, and Model Analyzer "
                             "then has all that is left")
    parser.add_argument("--skip-ma", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--ours-strategy", choices=["brute", "quick"], default="brute",
                        help="our plan's strategy: brute (the same job as Model Analyzer's) or quick (fewer variants)")
    parser.add_argument("--ma-python", default=sys.executable,
                        help="the Python that has Model Analyzer 1.58 and its packages")
    parser.add_argument("--ma-pythonpath", default=None,
                        help="put first on Model Analyzer's PYTHONPATH (its own protobuf 6: setup_ma.sh's /tmp/ma-extra)")
    parser.add_argument("--perf-analyzer", type=Path, default=None,
                        help="the perf_analyzer binary (default: the one in the perf_analyzer package)")
    parser.add_argument("--ma-gpu-discovery", choices=["auto", "dcgm", "nvml"], default="auto",
                        help="how Model Analyzer finds GPUs: DCGM (its own way), NVML (this script's shim), or "
                             "auto: DCGM where libdcgm.so.4 is installed, else NVML")
    parser.add_argument("--ma-max-auto-adjusts", type=int, default=None,
                        help="Model Analyzer's perf_analyzer_max_auto_adjusts (default: its own, 10): how many "
                             "times it measures an unstable point again with a window 1 s longer")
    parser.add_argument("--quiet", action="store_true", help="do not echo the tools' output")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from _machine import machine_line

    import analyzer_widgets as aw
    from analyzer_widgets.machine import visible_gpus

    args.model = args.model or ("mlp_numpy" if args.cpu else "torch_mlp")
    args.kind = args.kind or ("KIND_CPU" if args.cpu else "KIND_GPU")
    args.latency_budget_ms = args.latency_budget_ms or (20.0 if args.cpu else 10.0)
    args.batch = args.batch or (1 if args.cpu else 8)
    args.model_repository = args.model_repository or str(aw.EXAMPLE_REPOSITORY)
    args.perf_analyzer = args.perf_analyzer or find_perf_analyzer()
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty: give a new folder")
    paths = {"out": out, "ma": out / "ma", "ma_export": out / "ma" / "export", "ours": out / "ours",
             "ours_export": out / "ours" / "export"}
    for p in paths.values():
        p.mkdir(parents=True, exist_ok=True)

    print(machine_line())
    gpus = visible_gpus()
    print(f"GPUs: {', '.join(f'{g.index} {g.name}' for g in gpus) or 'none'}")
    server = server_setup()
    space = our_space(args)
    n_variants = len(args.instances) * len(args.max_batch_sizes) * len(args.delays_us)
    print(f"model {args.model}; space {json.dumps(space)} ({n_variants} variants, and the model's own config); "
          f"p99 budget {args.latency_budget_ms:g} ms; objective throughput; batch {args.batch}; concurrency up to "
          f"{args.max_concurrency}; windows {args.window_ms} ms (3 stable within {args.stability_pct:g}%, at most "
          f"{args.max_trials})")
    print(f"server: {server['binary']} --backend-directory={server['backend_dir']}; models' Python {server['python']}; "
          f"perf_analyzer {args.perf_analyzer}")
    (out / "settings.json").write_text(json.dumps({**vars(args), "out": str(out)}, indent=2, default=str) + "\n")

    # Each tool gets a time limit so that the whole run ends within --timeout: the first
    # its own limit (leaving the second at least its own, or 60 s), the second what is left.
    # MARGIN: a stopped tool's interrupt, grace and clean-up.
    end = started + args.timeout
    ma = ours = None
    order = ["ma", "ours"] if args.order == "ma-first" else ["ours", "ma"]
    order = [t for t in order if not getattr(args, f"skip_{t}")]
    own = {"ma": args.ma_timeout or math.inf, "ours": args.ours_timeout or math.inf}
    for i, tool in enumerate(order):
        left = end - time.monotonic() - MARGIN_S
        later = sum(min(own[t], 60.0) if math.isinf(own[t]) else own[t] for t in order[i + 1:])
        limit = max(30.0, min(own[tool], left - later))
        if tool == "ma":
            print(f"\nModel Analyzer: time limit {limit:.0f} s", file=sys.stderr, flush=True)
            if args.perf_analyzer is None:
                ma = {"tool": "Model Analyzer 1.58", "wall_s": math.nan, "finished": False,
                      "log_tail": "no perf_analyzer binary found (--perf-analyzer)"}
                continue
            try:
                ma = run_model_analyzer(args, paths, server, time.monotonic() + limit)
            except Exception as e:  # noqa: BLE001 - ours still runs
                ma = {"tool": "Model Analyzer 1.58", "wall_s": math.nan, "finished": False,
                      "log_tail": f"{type(e).__name__}: {e}"}
            print(f"Model Analyzer: {'done' if ma.get('finished') else 'FAILED or stopped'} in "
                  f"{ma['wall_s']:.0f} s", file=sys.stderr, flush=True)
        else:
            print(f"\nours: time limit {limit:.0f} s", file=sys.stderr, flush=True)
            ours = run_ours(args, paths, time.monotonic() + limit)
            print(f"ours: {'done' if ours.get('finished') else 'FAILED or stopped'} in {ours['wall_s']:.0f} s",
                  file=sys.stderr, flush=True)
    report(args, paths, ma, ours)


if __name__ == "__main__":
    main()
