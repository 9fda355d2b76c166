"""Does watching change what is measured? Throughput with every sampler on against
every sampler off, on one server, in alternating sweeps (off, on, off, on, ...).

    python benchmarks/monitor_overhead.py [--models torch_mlp] [--rounds 2] [--window-ms 1000]

Prints per point the throughput of each sweep and the ratio on/off (mean of the rounds).
The target (issue 4): 0.99 or better. Each sweep starts its own embedded server (local
mode), so "on" includes every sampler: NVML at 20 Hz, the host process tree, /metrics.
"""

from __future__ import annotations

import argparse
import statistics

from _machine import machine_line

import analyzer_widgets as aw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="torch_mlp")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window-ms", type=int, default=1000)
    args = parser.parse_args()
    print(machine_line())
    on: dict[str, bool] = {}
    off = {"nvml": False, "process_sampling": False, "triton_metrics": False}
    results: dict[str, list[dict[tuple, float]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for label, monitors in (("off", off), ("on", on)):
            result = aw.profile(
                models=args.models.split(","), model_repository=aw.EXAMPLE_REPOSITORY, batch_sizes=args.batch,
                concurrency=args.concurrency, window_ms=args.window_ms, baseline_s=0, **monitors,
            )
            results[label].append({(r["model"], r["batch_size"], r["concurrency"]): r["throughput_infer_per_s"]
                                   for r in result.rows})
    print(f"{'model':<12} {'batch':>5} {'conc':>5}  {'off (infer/s)':>28}  {'on (infer/s)':>28}  ratio on/off")
    ratios = []
    for key in results["off"][0]:
        offs = [r[key] for r in results["off"]]
        ons = [r[key] for r in results["on"]]
        ratio = statistics.mean(ons) / statistics.mean(offs)
        ratios.append(ratio)
        print(f"{key[0]:<12} {key[1]:>5} {key[2]:>5}  {', '.join(f'{v:8.1f}' for v in offs):>28}  "
              f"{', '.join(f'{v:8.1f}' for v in ons):>28}  {ratio:.3f}")
    print(f"ratio on/off: mean {statistics.mean(ratios):.3f}, min {min(ratios):.3f} (target >= 0.99)")


if __name__ == "__main__":
    main()
