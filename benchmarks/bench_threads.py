"""CPU time and wall time of a training step on a busy machine: thread limits against the old default.

A training job of ``--threads`` threads runs while ``--load`` other processes keep cores busy
(a shared node, or this 2-core machine with other jobs). Both sides run the same training steps
(forward, backward, Adam step) of ``models.<--model>`` of ``--config`` (default: the demo) on a
fixed batch, each in its own subprocess, alternating for ``--repeat`` rounds:

- baseline: the job environment Snakemake sets (``OMP_NUM_THREADS`` and the BLAS variables =
  threads), OpenMP's default wait policy (idle threads spin) and torch's default pools: what a
  train job got before :mod:`pipeline_lib.threads`;
- ours: the same plus ``OMP_WAIT_POLICY=PASSIVE`` (set for every job by
  ``workflow/rules/common.smk``) and :func:`pipeline_lib.threads.limit_threads`.

Per step: wall seconds and CPU seconds of the job process (all its threads), the median over
rounds. Usage: ``python benchmarks/bench_threads.py [--threads 2] [--load 2] [--steps 10]``.
The last stdout line is one JSON object: name, seconds_ours, seconds_baseline (wall per step),
cpu_seconds_ours, cpu_seconds_baseline, ratio (wall, ours / baseline), cpu_ratio, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("baseline", "ours")


def side_environment(side: str, threads: int) -> dict[str, str]:
    """The job environment of one side (the parent's, minus any wait policy it has)."""
    from pipeline_lib.threads import THREAD_VARIABLES

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))  # what Snakemake exports for a job
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if side == "ours":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def child(args: argparse.Namespace) -> None:
    """Time training steps in this process; print one JSON line."""
    import resource
    import time

    import torch
    import yaml

    from pipeline_lib.config import load_config
    from pipeline_lib.threads import limit_threads
    from pipeline_lib.training.train import build_module

    if args.child == "ours":
        limit_threads(args.threads)
    config = yaml.safe_load((ROOT / args.config).read_text())
    config["datasets_file"] = str(ROOT / config["datasets_file"])
    settings = load_config(config, check_files=False).models[args.model]
    torch.manual_seed(0)
    module = build_module(settings)
    patch = tuple(args.patch) if args.patch else settings.patch_shape
    image = torch.rand(settings.batch_size, 1, *patch)
    target = (torch.rand(settings.batch_size, len(module.channel_names), *patch) > 0.5).float()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(module(image), target).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    peak = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    record = {
        "side": args.child,
        "wall_per_step": wall / args.steps,
        "cpu_per_step": cpu / args.steps,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": int(peak.split()[1]) / 1024,
    }
    print(json.dumps(record))


def run_side(side: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--threads", str(args.threads), "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--config", args.config, "--model", args.model]
    command += ["--patch", *map(str, args.patch)] if args.patch else []
    result = subprocess.run(
        command, env=side_environment(side, args.threads), capture_output=True, text=True, check=True
    )
    record: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the job's threads")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes beside the job")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="rounds (each side once per round)")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--patch", type=int, nargs=3, help="patch shape (default: the model's)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        records: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        for _ in range(args.repeat):
            for side in SIDES:
                record = run_side(side, args)
                records[side].append(record)
                print(json.dumps(record))
    finally:
        for process in load:
            process.kill()
            process.wait()
    wall = {side: statistics.median(r["wall_per_step"] for r in records[side]) for side in SIDES}
    cpu = {side: statistics.median(r["cpu_per_step"] for r in records[side]) for side in SIDES}
    summary = {
        "name": "bench_threads",
        "threads": args.threads,
        "load": args.load,
        "steps": args.steps,
        "seconds_ours": round(wall["ours"], 4),
        "seconds_baseline": round(wall["baseline"], 4),
        "cpu_seconds_ours": round(cpu["ours"], 4),
        "cpu_seconds_baseline": round(cpu["baseline"], 4),
        "ratio": round(wall["ours"] / wall["baseline"], 3),
        "cpu_ratio": round(cpu["ours"] / cpu["baseline"], 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for side in SIDES for r in records[side]), 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
