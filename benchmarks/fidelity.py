"""Our figures side by side with perf_analyzer's, on one server, point by point (issue 6).

    python benchmarks/fidelity.py [--model torch_mlp] [--batch-sizes 1,8] [--concurrency 1,4,16]
                                  [--window-ms 500] [--rounds 2] [--interleave [--sweep-window-ms 500]]
                                  [--protocol grpc|http] [--pin] [--out DIR]
    python benchmarks/fidelity.py --summarize fidelity-interleaved.csv [more.csv ...]

Starts the embedded Triton server once with the example repository (the models' Python:
--backend-python, else $ANALYZER_WIDGETS_BACKEND_PYTHON, else this interpreter), then runs
  - our sweep in remote mode against that server, the model not loaded: its wall time
    covers the baseline, the model load, every point and the unload;
  - perf_analyzer (gRPC, concurrency mode) at every point, the model loaded, with the same
    window length and stability rule (--measurement-interval, --stability-percentage,
    --max-trials; perf_analyzer always wants 3 stable windows, as we do by default);
alternately, ours first and last (O P O for one round). Each perf_analyzer pass is
compared with the mean of the sweeps on either side, so a drift of the host cancels; the
two sweeps' ratio (ours a/b) shows how much the host moved meanwhile. Prints each sweep
(with our client count against the server's), then per pass the table of throughput, p99
and average latency of both and the ratios.

With --interleave the comparison is made point by point instead, the model loaded once:
at each point, --rounds pairs of one measurement of ours (a one-point sweep in remote
mode, which measures the loaded model as it is) and one of perf_analyzer, the order
alternating (O P, P O, ...), so the two tools' figures of a pair are seconds apart rather
than a whole grid apart. Prints each pair's ratios and, per point, the median ratio and
how far each tool moved between its own rounds (max/min), and at the end all points in one
table. Writes fidelity-interleaved.csv as it goes, a row per pair. The table also gives each
tool's time per request outside the server's queue and compute, and the server-equal ratio:
the throughput ratio had the server spent the same time on both tools' requests (see
outside_server). --summarize prints that table again from such CSVs, any number of runs
pooled, and how much a pair's ratio scatters within a run (so how many pairs a point needs
for a 3% median); it needs neither a server nor perf_analyzer.

With --interleave --sweep-window-ms N it first times one whole sweep of ours (baseline,
model load, the grid, unload) with N ms windows, so one run gives the speed figure and the
comparison. For a comparison, --window-ms 2000: a p99 over three 500 ms windows rests on a few dozen
requests and moves 1.3-3x between rounds on the GPU host (docs/benchmarks.md).

--pin splits the host's CPUs in two: the server and its model processes on the first half,
this script, our client processes and perf_analyzer on the second. Where the scheduler
puts each tool's client beside the server's threads is then the same for both tools (a
control for the comparison, not how the tool runs for a user).

--protocol http makes both tools send their inferences over HTTP instead of gRPC.
--pa-channel-share N sets TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT for perf_analyzer: how
many of its concurrent contexts share one gRPC channel (one connection). Ours gives each
request slot its own connection; 1 makes perf_analyzer do the same.
perf_analyzer must be on PATH (its wheel needs glibc 2.38: the GPU host, not the CPU
machines).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine_line

import analyzer_widgets as aw
from analyzer_widgets.config import positive_int_list
from analyzer_widgets.events import ModelLoaded
from analyzer_widgets.server.control import TritonControl
from analyzer_widgets.server.local import LocalServer


def gpu_line() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        return f"GPU 0: {name if isinstance(name, str) else name.decode()}, driver {pynvml.nvmlSystemGetDriverVersion()}"
    except Exception as e:  # noqa: BLE001
        return f"no GPU seen ({e})"


def perf_analyzer_point(url: str, model: str, batch: int, concurrency: int, workdir: Path, *,
                        window_ms: int, stability_pct: float = 10.0, max_trials: int = 10,
                        protocol: str = "grpc", channel_share: int | None = None) -> dict[str, float]:
    """One perf_analyzer run at one point: throughput, p99 and mean latency in ms,
    its wall time, and whether it failed to reach its stability rule (figures NaN then)."""
    report = workdir / f"pa-b{batch}-c{concurrency}.csv"
    report.unlink(missing_ok=True)  # never read an earlier run's figures
    cmd = ["perf_analyzer", "-m", model, "-u", url, "-i", protocol, "-b", str(batch),
           "--concurrency-range", f"{concurrency}:{concurrency}",
           "--measurement-interval", str(window_ms), "--stability-percentage", f"{stability_pct:g}",
           "--max-trials", str(max_trials), "-f", str(report)]
    started = time.monotonic()
    env = dict(os.environ)
    if channel_share is not None:
        env["TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT"] = str(channel_share)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    elapsed = time.monotonic() - started
    if "Failed to obtain stable measurement" in proc.stdout + proc.stderr:
        # it reports nothing then; the point stays in the table as not stable
        nan = float("nan")
        return {"throughput": nan, "p99_ms": nan, "avg_ms": nan, "server_ms": nan, "server_total_ms": nan,
                "server_batch": nan, "wall_s": elapsed, "unstable": True}
    if proc.returncode != 0 or not report.exists():
        raise SystemExit(f"perf_analyzer failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    row = next(csv.DictReader(io.StringIO(report.read_text())))
    # the CSV (2.60) has percentiles but no average; the printed summary has it, and the
    # server's own mean time per request over the same windows (queue and compute)
    avg = re.search(r"Avg latency: (\d+) usec", proc.stdout)
    server = re.search(r"Avg request latency: (\d+) usec \(overhead \d+ usec \+ queue (\d+) usec \+ "
                       r"compute input (\d+) usec \+ compute infer (\d+) usec \+ compute output (\d+) usec", proc.stdout)
    # the server's inferences per model execution: how large the dynamic batches were
    counts = re.search(r"Server:\s+Inference count: (\d+)\s+Execution count: (\d+)", proc.stdout)
    return {
        "throughput": float(row["Inferences/Second"]),
        "p99_ms": float(row["p99 latency"]) / 1000.0,
        "avg_ms": int(avg.group(1)) / 1000.0 if avg else float("nan"),
        "server_ms": sum(int(g) for g in server.groups()[1:]) / 1000.0 if server else float("nan"),
        "server_total_ms": int(server.group(1)) / 1000.0 if server else float("nan"),
        "server_batch": int(counts.group(1)) / int(counts.group(2)) if counts and int(counts.group(2)) else float("nan"),
        "wall_s": elapsed,
        "unstable": False,
    }


def cpu_halves() -> tuple[set[int], set[int]]:
    """The CPUs this process may use, split in two: (the server's, the clients')."""
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def pin_server(server: LocalServer, cpus: set[int]) -> int:
    """Every thread of the server's process tree onto ``cpus`` (threads and processes it
    starts later inherit it); returns how many threads were pinned."""
    import psutil

    pinned = 0
    root = psutil.Process(server.pid)
    for proc in [root, *root.children(recursive=True)]:
        for thread in proc.threads():
            try:
                os.sched_setaffinity(thread.id, cpus)  # per thread: a pid's affinity is its main thread's
                pinned += 1
            except (ProcessLookupError, PermissionError):
                pass  # a thread that ended meanwhile
    return pinned


def endpoint(server: LocalServer, args: argparse.Namespace) -> str:
    """The address both tools send their inferences to, by --protocol."""
    return server.endpoints.grpc if args.protocol == "grpc" else server.endpoints.http


def profile_remote(server: LocalServer, args: argparse.Namespace, **settings: object) -> object:
    """Our sweep of --model in remote mode against ``server``, with the command line's
    protocol, measurement rule and monitors; ``settings`` add to or override them."""
    monitors = args.monitors == "on"
    return aw.profile(**{
        "models": [args.model], "launch_mode": "remote", "url": endpoint(server, args),
        "protocol": args.protocol, "batch_sizes": args.batch_sizes,
        "concurrency": args.concurrency, "window_ms": args.window_ms, "stability_pct": args.stability_pct,
        "max_trials": args.max_trials, "baseline_s": args.baseline_s,
        "stop_rule": args.stop_rule, "precision_pct": args.precision,
        "nvml": monitors, "process_sampling": monitors, "triton_metrics": monitors, **settings,
    })


def pa_point(server: LocalServer, args: argparse.Namespace, batch: int, concurrency: int, out: Path) -> dict[str, float]:
    """perf_analyzer at one point against ``server``, with the command line's protocol,
    window, stability rule and channel sharing."""
    return perf_analyzer_point(endpoint(server, args), args.model, batch, concurrency, out, window_ms=args.window_ms,
                               stability_pct=args.stability_pct, max_trials=args.max_trials, protocol=args.protocol,
                               channel_share=args.pa_channel_share)


def our_sweep(server: LocalServer, args: argparse.Namespace, out: Path, **settings: object) -> tuple[object, float, float]:
    """Our whole sweep of the grid, timed: (result, wall seconds, model load seconds)."""
    loads: list[float] = []
    started = time.monotonic()
    result = profile_remote(server, args, export_path=out, overwrite=True,
                            on_event=lambda e: loads.append(e.load_s) if isinstance(e, ModelLoaded) else None,
                            **settings)
    return result, time.monotonic() - started, loads[0] if loads else float("nan")


def server_ms(row: object) -> float:
    """The server's own mean time per request in one of our rows: queue and compute."""
    return float(row.server_queue_ms + row.server_compute_input_ms + row.server_compute_infer_ms
                 + row.server_compute_output_ms)


def server_batch(row: object) -> float:
    """The server's inferences per model execution in one of our rows: its mean dynamic batch."""
    executions = int(row.server_execution_count)
    return float(row.server_inference_count / executions) if executions else float("nan")


def interleaved(server: LocalServer, control: TritonControl, args: argparse.Namespace, out: Path) -> None:
    """Point by point: ours and perf_analyzer alternately, --rounds times each."""
    control.load(args.model)
    if args.pin:  # the model's stub process and its threads, started by the load
        cpus = os.sched_getaffinity(server.pid)  # where main() pinned the server
        print(f"pinned the server's {pin_server(server, cpus)} threads, the model's included", flush=True)
    table_path = out / "fidelity-interleaved.csv"
    table_path.unlink(missing_ok=True)
    summary: list[str] = []
    print(f"\n{'batch':>5} {'conc':>4} {'round':>5} {'order':>5} | {'ours inf/s':>10} {'pa inf/s':>10} {'ratio':>6} | "
          f"{'ours p99':>8} {'pa p99':>8} {'ratio':>6} | {'ours avg':>8} {'srv':>6} {'total':>6} {'pa avg':>8} {'srv':>6} "
          f"{'total':>6} | {'batch':>5} {'pa':>5} | {'client/server':>13}", flush=True)
    print("(avg: each tool's mean latency in ms; srv: the server's own queue + compute time per request over the "
          "same windows, so avg - srv is what the client and the connection added; total: the server's whole time "
          "per request, arrival to response, so avg - total is what happened outside the server; batch: the server's "
          "inferences per model execution under each tool's load, the mean dynamic batch)")
    for b in args.batch_sizes:
        for c in args.concurrency:
            pairs = []
            for rnd in range(args.rounds):
                order = "OP" if rnd % 2 == 0 else "PO"
                got: dict[str, object] = {}
                for who in order:
                    if who == "O":
                        result = profile_remote(server, args, batch_sizes=[b], concurrency=[c], baseline_s=0)
                        got["O"] = result.to_frame().iloc[0]
                    else:
                        got["P"] = pa_point(server, args, b, c, out)
                o, p = got["O"], got["P"]
                row = dict(batch_size=b, concurrency=c, round=rnd + 1, order=order,
                           ours_throughput=o.throughput_infer_per_s, pa_throughput=p["throughput"],
                           throughput_ratio=o.throughput_infer_per_s / p["throughput"],
                           ours_p99_ms=o.latency_p99_ms, pa_p99_ms=p["p99_ms"], p99_ratio=o.latency_p99_ms / p["p99_ms"],
                           ours_avg_ms=o.latency_avg_ms, pa_avg_ms=p["avg_ms"],
                           ours_server_ms=server_ms(o), pa_server_ms=p["server_ms"],
                           ours_server_total_ms=o.server_request_ms, pa_server_total_ms=p["server_total_ms"],
                           ours_server_batch=server_batch(o), pa_server_batch=p["server_batch"],
                           ours_status=o.status,
                           pa_stable=not p["unstable"],
                           client_server=o.client_inference_count / o.server_inference_count,
                           ours_throughput_ci_low=o.throughput_ci_low_infer_per_s,
                           ours_throughput_ci_high=o.throughput_ci_high_infer_per_s,
                           ours_p99_ci_low_ms=o.latency_p99_ci_low_ms, ours_p99_ci_high_ms=o.latency_p99_ci_high_ms,
                           # is perf_analyzer's figure inside our 95% interval of the same point?
                           pa_throughput_in_ours=o.throughput_ci_low_infer_per_s <= p["throughput"]
                           <= o.throughput_ci_high_infer_per_s,
                           pa_p99_in_ours=o.latency_p99_ci_low_ms <= p["p99_ms"] <= o.latency_p99_ci_high_ms)
                row.update(outside_server(row))
                append_csv(table_path, row)  # pair by pair: a run cut short keeps what it measured
                pairs.append(row)
                print(f"{b:5d} {c:4d} {rnd + 1:5d} {order:>5} | {row['ours_throughput']:10.0f} {p['throughput']:10.0f} "
                      f"{row['throughput_ratio']:6.3f} | {o.latency_p99_ms:8.3f} {p['p99_ms']:8.3f} {row['p99_ratio']:6.3f} | "
                      f"{o.latency_avg_ms:8.3f} {row['ours_server_ms']:6.3f} {o.server_request_ms:6.3f} "
                      f"{p['avg_ms']:8.3f} {p['server_ms']:6.3f} {p['server_total_ms']:6.3f} | "
                      f"{row['ours_server_batch']:5.2f} {p['server_batch']:5.2f} | "
                      f"{row['client_server']:13.4f}"
                      + ("" if o.status == "ok" else f"  (ours: {o.status})")
                      + ("  (perf_analyzer: not stable)" if p["unstable"] else ""), flush=True)
            line = point_summary(b, c, pairs)
            summary.append(line)
            print(line, flush=True)
    control.unload(args.model)
    print_summary(summary)
    print(f"\ntable: {table_path}")


def outside_server(row: dict[str, object]) -> dict[str, float]:
    """What each tool's requests spent outside the server's queue and compute, and the
    throughput ratio the pair would have had had the server spent the same time on both.

    In a closed loop each of the C request slots cycles through the server's queue and
    compute (the server's own time, from its statistics) and everything else (the client,
    the connection, the protocol front end, the turn to the next request), so a request's
    mean cycle is C x batch / throughput and the rest is that cycle less the server's
    time. The server-equal ratio puts perf_analyzer's server time into our cycle:
    perf_analyzer's cycle over (our outside time + its server time). It compares the two
    load generators where the server's own time moves between measurements (on the GPU
    host by up to 14% within seconds, whichever tool loads it); where the server queues
    (the higher concurrencies) the outside time is partly waiting for a slot and the raw
    ratio is the one to read."""
    b, c = int(row["batch_size"]), int(row["concurrency"])
    ours_cycle = c * b * 1e3 / float(row["ours_throughput"])
    pa_cycle = c * b * 1e3 / float(row["pa_throughput"])
    ours_outside = ours_cycle - float(row["ours_server_ms"])
    pa_outside = pa_cycle - float(row["pa_server_ms"])
    return dict(ours_outside_ms=ours_outside, pa_outside_ms=pa_outside,
                server_equal_ratio=pa_cycle / (ours_outside + float(row["pa_server_ms"])))


def both_measured(pair: dict[str, object]) -> bool:
    """perf_analyzer reached its stability rule and ours did not fail (live or read back from a CSV)."""
    return str(pair["pa_stable"]) == "True" and pair["ours_status"] in ("ok", "unstable")


def point_summary(batch: int, concurrency: int, pairs: list[dict[str, object]]) -> str:
    """One line of the summary table for one point, over the pairs in which both tools
    measured (perf_analyzer reached its stability rule, ours did not fail)."""
    good = [r for r in pairs if both_measured(r)]
    if not good:
        return f"{batch:5d} {concurrency:4d} {0:5d} | perf_analyzer reached its stability rule in none of the pairs"
    (thr, thr_lo, thr_hi), (p99, p99_lo, p99_hi) = spread(good, "throughput_ratio"), spread(good, "p99_ratio")
    equal, equal_lo, equal_hi = spread(good, "server_equal_ratio")
    _, ours_lo, ours_hi = spread(good, "ours_throughput")
    _, pa_lo, pa_hi = spread(good, "pa_throughput")
    return (f"{batch:5d} {concurrency:4d} {len(good):5d} | {thr:10.3f} [{thr_lo:.2f}-{thr_hi:.2f}] | "
            f"{p99:9.3f} [{p99_lo:.2f}-{p99_hi:.2f}] | {ours_hi / ours_lo:6.3f}x {pa_hi / pa_lo:6.3f}x | "
            f"{spread(good, 'ours_server_batch')[0]:5.2f} {spread(good, 'pa_server_batch')[0]:5.2f} | "
            f"{spread(good, 'ours_outside_ms')[0]:7.3f} {spread(good, 'pa_outside_ms')[0]:7.3f} | "
            f"{equal:10.3f} [{equal_lo:.2f}-{equal_hi:.2f}] | {_inside(good, 'pa_throughput_in_ours')} "
            f"{_inside(good, 'pa_p99_in_ours')}")


def _inside(pairs: list[dict[str, object]], key: str) -> str:
    """How many pairs had perf_analyzer's figure inside our 95% interval ("3/4"; "-" for
    CSVs from before the intervals)."""
    known = [str(r[key]) in ("True", "False") for r in pairs if key in r]
    return f"{sum(str(r[key]) == 'True' for r in pairs if key in r)}/{len(known)}" if known else "-"


def print_summary(lines: list[str]) -> None:
    print("\nper point, over the pairs where both tools measured: medians [range] of ours/perf_analyzer; how far "
          "each tool's own rounds moved (max/min); the server's mean batch under each; each tool's time per request "
          "outside the server's queue and compute (ms); the throughput ratio had the server spent the same time on "
          "both (fidelity.py's outside_server); in how many pairs perf_analyzer's throughput and p99 fell inside "
          "our 95% interval of the same point\n"
          f"{'batch':>5} {'conc':>4} {'pairs':>5} | {'throughput':>10} {'':11} | {'p99':>9} {'':11} | "
          f"{'ours':>7} {'pa':>7} | {'batch':>5} {'pa':>5} | {'outside':>7} {'pa':>7} | {'srv-equal':>10} {'':11} | "
          f"in ours: thr p99")
    print("\n".join(lines))


def summarize(paths: list[str]) -> None:
    """The summary table of --interleave runs from their CSVs, pairs of all files pooled;
    then how much a pair's ratio scatters, and so how many pairs a run would need."""
    runs: list[list[dict[str, object]]] = []
    for path in paths:
        with open(path, newline="") as f:
            runs.append(list(csv.DictReader(f)))
    rows = [row for run in runs for row in run]
    for row in rows:
        row.update(outside_server(row))  # CSVs of runs before these columns existed
    points = sorted({(int(r["batch_size"]), int(r["concurrency"])) for r in rows})
    print(f"{len(rows)} pairs from {len(paths)} file(s)")
    print_summary([point_summary(b, c, [r for r in rows if (int(r["batch_size"]), int(r["concurrency"])) == (b, c)])
                   for b, c in points])
    print("\nhow a pair's throughput ratio scatters within a run (each run's mean taken out, the runs pooled): "
          "the standard deviation of ln(ours/pa) over the pairs, and over ours and perf_analyzer of neighbouring "
          "pairs (17-35 s apart instead of seconds: if pairing seconds apart took out the host's drift, the first "
          "would be the smaller); and the pairs one run would need at a point for its median to be within 3% at two "
          "standard errors (a median's is 1.2533 sd / sqrt(n))")
    print(f"{'batch':>5} {'conc':>4} {'pairs':>5} {'runs':>4} | {'sd pairs':>8} {'sd apart':>8} | {'pairs needed':>12}")
    for b, c in points:
        measured = [[r for r in run if (int(r["batch_size"]), int(r["concurrency"])) == (b, c) and both_measured(r)]
                    for run in runs]
        paired = [[math.log(float(r["ours_throughput"]) / float(r["pa_throughput"])) for r in run] for run in measured]
        apart = [[math.log(float(x["ours_throughput"]) / float(y["pa_throughput"]))
                  for one, two in itertools.pairwise(run) for x, y in ((one, two), (two, one))]
                 for run in measured]
        sd, sd_apart = within_run_sd(paired), within_run_sd(apart)
        if math.isnan(sd):
            continue
        print(f"{b:5d} {c:4d} {sum(map(len, paired)):5d} {sum(1 for p in paired if len(p) > 1):4d} | {sd:8.3f} "
              f"{sd_apart:8.3f} | {math.ceil((2 * 1.2533 * sd / math.log(1 / 0.97)) ** 2):12d}")


def within_run_sd(groups: list[list[float]]) -> float:
    """The pooled standard deviation of values about their own group's mean (groups of
    one value carry none); NaN without two values in a group."""
    groups = [g for g in groups if len(g) > 1]
    freedom = sum(len(g) - 1 for g in groups)
    if not freedom:
        return math.nan
    return math.sqrt(sum((v - statistics.fmean(g)) ** 2 for g in groups for v in g) / freedom)


def spread(rows: list[dict[str, object]], key: str) -> tuple[float, float, float]:
    """Median, min and max of ``key`` over ``rows``."""
    values = [float(r[key]) for r in rows]
    return statistics.median(values), min(values), max(values)


def append_csv(path: Path, row: dict[str, object]) -> None:
    """Add ``row`` to the CSV at ``path``, with a header when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def report_sweep(index: int, result: object, wall: float, load_s: float, args: argparse.Namespace) -> None:
    frame = result.to_frame()
    print(f"\nour sweep {index}: {wall:.1f} s wall for {len(frame)} points (baseline {args.baseline_s:g} s, "
          f"model load {load_s:.1f} s, unload included)")
    print(f"{'batch':>5} {'conc':>4} {'inf/s':>9} {'p99 ms':>8} {'avg ms':>8} {'windows':>7} {'status':>8} "
          f"{'client/server':>13}")
    for row in frame.itertuples():
        print(f"{row.batch_size:5d} {row.concurrency:4d} {row.throughput_infer_per_s:9.0f} {row.latency_p99_ms:8.3f} "
              f"{row.latency_avg_ms:8.3f} {int(row.window_count):7d} {row.status:>8} "
              f"{row.client_inference_count / row.server_inference_count:13.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="torch_mlp")
    ap.add_argument("--model-folder", default=str(aw.EXAMPLE_REPOSITORY))
    ap.add_argument("--batch-sizes", type=lambda v: positive_int_list("--batch-sizes", v), default=(1, 8))
    ap.add_argument("--concurrency", type=lambda v: positive_int_list("--concurrency", v), default=(1, 4, 16))
    ap.add_argument("--window-ms", type=int, default=500)
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="both tools' protocol")
    ap.add_argument("--pa-channel-share", type=int, default=None,
                    help="perf_analyzer's contexts per gRPC channel (TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT)")
    ap.add_argument("--stability-pct", type=float, default=10.0)
    ap.add_argument("--max-trials", type=int, default=10)
    ap.add_argument("--stop-rule", choices=["stable", "precision"], default="stable",
                    help="our stop rule (perf_analyzer always uses its stable one)")
    ap.add_argument("--precision", type=float, default=5.0, help="our precision rule's target, %%")
    ap.add_argument("--baseline-s", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1,
                    help="perf_analyzer passes (our sweep runs once more), or with --interleave the pairs per point")
    ap.add_argument("--backend-python", default=None)
    ap.add_argument("--monitors", choices=["on", "off"], default="on",
                    help="off: our sweeps without the NVML, process and /metrics samplers")
    ap.add_argument("--sweep-window-ms", type=int, default=0,
                    help="with --interleave: first time one whole sweep of ours with windows this long")
    ap.add_argument("--interleave", action="store_true",
                    help="compare point by point, ours and perf_analyzer alternately (--rounds pairs per point)")
    ap.add_argument("--pin", action="store_true",
                    help="the server on one half of the CPUs, both load generators on the other")
    ap.add_argument("--summarize", nargs="+", metavar="CSV", default=None,
                    help="only print the summary table of earlier --interleave runs from their CSVs (pooled)")
    ap.add_argument("--out", default=None, help="where to keep our CSVs and perf_analyzer's (default: a temp dir)")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if args.rounds < 1:
        ap.error(f"--rounds must be 1 or more, not {args.rounds}")
    if shutil.which("perf_analyzer") is None:
        sys.exit("perf_analyzer is not on PATH: install the perf_analyzer wheel (needs glibc 2.38)")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fidelity-"))
    out.mkdir(parents=True, exist_ok=True)
    print(machine_line())
    print(gpu_line())
    print(f"model {args.model}; windows {args.window_ms} ms, stable: 3 windows within {args.stability_pct:g}%, "
          f"at most {args.max_trials} windows; {args.protocol}; {args.rounds} round(s); monitors {args.monitors}"
          + (f"; perf_analyzer contexts per channel {args.pa_channel_share}" if args.pa_channel_share else ""), flush=True)

    started = time.monotonic()
    server = LocalServer(args.model_folder, aw.ServerSettings(backend_python=args.backend_python))
    server.start()
    print(f"server {server.endpoints.grpc} ready in {time.monotonic() - started:.1f} s", flush=True)
    if args.pin:
        server_cpus, client_cpus = cpu_halves()
        os.sched_setaffinity(0, client_cpus)  # inherited by our client processes and perf_analyzer
        siblings = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
        print(f"pinned: the server's {pin_server(server, server_cpus)} threads to CPUs {sorted(server_cpus)}, the "
              f"clients to {sorted(client_cpus)} (cpu0's hardware threads: "
              f"{siblings.read_text().strip() if siblings.exists() else 'unknown'})", flush=True)
    control = TritonControl(server.endpoints.grpc)
    table: list[dict[str, object]] = []
    sweeps: list[tuple[object, float, float]] = []
    if args.interleave:
        try:
            if args.sweep_window_ms:
                # the speed figure first, the model not loaded yet: one whole sweep, timed
                window = args.sweep_window_ms
                print(f"\nour whole sweep, {window} ms windows (the same stability rule):", flush=True)
                report_sweep(0, *our_sweep(server, args, out / "ours-sweep", window_ms=window), args)
            interleaved(server, control, args, out)
        finally:
            control.close()
            server.stop()
        return
    try:
        # O P O P ... O: each perf_analyzer pass sits between two of our sweeps and is
        # compared with their mean, so drift of the host (clocks, heat) cancels out
        sweeps.append(our_sweep(server, args, out / "ours-0"))
        report_sweep(0, *sweeps[-1], args)
        for rnd in range(1, args.rounds + 1):
            t = time.monotonic()
            control.load(args.model)
            pa_load = time.monotonic() - t
            pa: dict[tuple[int, int], dict[str, float]] = {}
            t = time.monotonic()
            for b in args.batch_sizes:
                for c in args.concurrency:
                    pa[(b, c)] = pa_point(server, args, b, c, out)
            pa_wall = time.monotonic() - t
            control.unload(args.model)
            print(f"perf_analyzer pass {rnd}: {pa_wall:.1f} s for the points (model loaded beforehand in {pa_load:.1f} s)",
                  flush=True)
            sweeps.append(our_sweep(server, args, out / f"ours-{rnd}"))
            report_sweep(rnd, *sweeps[-1], args)
            before, after = (s[0].to_frame().set_index(["batch_size", "concurrency"]) for s in sweeps[-2:])
            print(f"\nperf_analyzer pass {rnd} against the mean of our sweeps {rnd - 1} and {rnd}")
            print(f"{'batch':>5} {'conc':>4} | {'ours inf/s':>10} {'pa inf/s':>10} {'ratio':>6} | "
                  f"{'ours p99':>8} {'pa p99':>8} {'ratio':>6} | {'ours avg':>8} {'pa avg':>8} | {'ours a/b':>8}")
            for b in args.batch_sizes:
                for c in args.concurrency:
                    x, y, p = before.loc[(b, c)], after.loc[(b, c)], pa[(b, c)]
                    thr = (x.throughput_infer_per_s + y.throughput_infer_per_s) / 2
                    p99 = (x.latency_p99_ms + y.latency_p99_ms) / 2
                    avg = (x.latency_avg_ms + y.latency_avg_ms) / 2
                    print(f"{b:5d} {c:4d} | {thr:10.0f} {p['throughput']:10.0f} {thr / p['throughput']:6.3f} | "
                          f"{p99:8.3f} {p['p99_ms']:8.3f} {p99 / p['p99_ms']:6.3f} | {avg:8.3f} {p['avg_ms']:8.3f} | "
                          f"{x.throughput_infer_per_s / y.throughput_infer_per_s:8.3f}"
                          + ("  (perf_analyzer: not stable)" if p["unstable"] else ""))
                    table.append(dict(pass_=rnd, batch_size=b, concurrency=c, ours_throughput=thr,
                                      pa_throughput=p["throughput"], throughput_ratio=thr / p["throughput"],
                                      ours_p99_ms=p99, pa_p99_ms=p["p99_ms"], p99_ratio=p99 / p["p99_ms"],
                                      ours_avg_ms=avg, pa_avg_ms=p["avg_ms"],
                                      ours_before_after=x.throughput_infer_per_s / y.throughput_infer_per_s,
                                      pa_wall_s=p["wall_s"]))
            print(flush=True)
    finally:
        control.close()
        server.stop()
    with open(out / "fidelity.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print(f"\ntable: {out / 'fidelity.csv'}")


if __name__ == "__main__":
    main()
