"""Planning benchmark: ``snakemake -n`` on test volumes of 10⁹ to 10¹² voxels, ours against one job per block group.

Each size declares a test dataset whose image and labels are zarr arrays created with
metadata only (no chunk written, so nothing but headers exists), beside the demo's small
synthetic train and validation datasets, the demo's model and its two decoders, and the
schema's default block shapes (prediction 128 x 512 x 512, decoding 64 x 128 x 128). Sides,
each a fresh ``snakemake -n`` process (interpreter start and imports included):

- ``ours``: the default ``predict.max_jobs`` and ``decode.max_jobs`` (256): the job count
  stays fixed as the volume grows;
- ``baseline``: the job counts of the previous release (one prediction job per block, one
  decode and one relabel job per 4 blocks), set through ``max_jobs``; it is run only while
  the previous size finished within ``--baseline-limit`` seconds (the previous release also
  rebuilt every job list in every input function, so it was slower still: 12 minutes and
  7 GB without finishing at 6.9 x 10¹⁰ voxels).

Peak memory is the ``ru_maxrss`` of that one child and its CPU seconds (user + system) are
its ``ru_utime + ru_stime`` (``os.wait4``): on a shared machine the wall seconds also count
the time other processes held the cores, the CPU seconds do not. Every line on stdout is
JSON, one per size and side, then a table on stderr, then the summary on the last line
(the largest size: ``seconds_ours``, ``seconds_baseline`` of the largest size the baseline
ran, their ``ratio`` per job, ``peak_rss_mb``).

Run: ``.venv/bin/python benchmarks/bench_plan.py`` (``--sizes 1e9 1e10`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
import zarr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_lib.config.schema import schema_defaults  # noqa: E402

Z = 1024  # sections of every test volume; y = x grows with the size


def volume_shape(voxels: float) -> tuple[int, int, int]:
    """A 1024-section volume of about ``voxels`` voxels, y = x a multiple of 512."""
    side = max(512, round(math.sqrt(voxels / Z) / 512) * 512)
    return (Z, side, side)


def header_only_store(path: Path, shape: tuple[int, int, int], dtype: str) -> Path:
    """A zarr v3 array of ``shape`` with its metadata only: no chunk exists."""
    zarr.create_array(str(path), shape=shape, chunks=(64, 512, 512), dtype=dtype, overwrite=True)
    return path


def write_run(work: Path, shape: tuple[int, int, int], max_jobs: dict[str, int] | None) -> Path:
    """The datasets file and config of one run; returns the config path."""
    work.mkdir(parents=True, exist_ok=True)
    image = header_only_store(work / "image.zarr", shape, "uint8")
    labels = header_only_store(work / "labels.zarr", shape, "uint32")
    demo = yaml.safe_load((ROOT / "config/datasets.yaml").read_text())["datasets"]
    datasets = {
        "demo_train": demo["demo_train"],
        "demo_val": demo["demo_val"],
        "big_test": {
            "image": {"format": "zarr", "path": str(image)},
            "labels": {"format": "zarr", "path": str(labels)},
            "voxel_size": [8, 8, 8],
            "roles": ["test"],
        },
    }
    (work / "datasets.yaml").write_text(yaml.safe_dump({"datasets": datasets}, sort_keys=False))
    demo_config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config: dict[str, Any] = {
        "datasets_file": str(work / "datasets.yaml"),
        "datasets": list(datasets),
        "models": demo_config["models"],
        "decoders": demo_config["decoders"],
    }
    if max_jobs:
        config["predict"] = {"max_jobs": max_jobs["predict"]}
        config["decode"] = {"max_jobs": max_jobs["decode"]}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def previous_job_counts(shape: tuple[int, int, int]) -> dict[str, int]:
    """The previous release's job counts: 1 prediction block per job, 4 decoding blocks per job."""
    predict, decode = schema_defaults("predict")["block_shape"], schema_defaults("decode")["block_shape"]
    n_predict = math.prod(-(-s // b) for s, b in zip(shape, predict, strict=True))
    n_decode = math.prod(-(-s // b) for s, b in zip(shape, decode, strict=True))
    return {"predict": n_predict, "decode": -(-n_decode // 4)}


def dry_run(work: Path, config: Path, timeout: float) -> dict[str, Any]:
    """Seconds, peak RSS (MB) and planned job count of one ``snakemake -n``; None seconds on timeout."""
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work)]
    command += [f"--configfile={config}", "-n", "--cores", "1", "--quiet", "rules"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env, text=True)
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        timer.cancel()
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    finished = child.returncode == 0
    if child.returncode not in (0, -9):
        raise RuntimeError(f"snakemake -n failed:\n{text[-3000:]}")
    return {
        "seconds": round(seconds, 2) if finished else None,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "jobs": planned_jobs(text) if finished else None,
    }


def planned_jobs(output: str) -> int:
    """The total of Snakemake's 'Job stats' table."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            return int(parts[1])
    raise RuntimeError(f"no job stats in:\n{output[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e9, 1e10, 1e11, 1e12])
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a dry run is stopped")
    parser.add_argument("--baseline-limit", type=float, default=120, help="stop the baseline after a size this slow")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    rows = []
    run_baseline = True
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        for voxels in args.sizes:
            shape = volume_shape(voxels)
            row: dict[str, Any] = {"voxels": math.prod(shape), "shape": list(shape)}
            work = root / f"{voxels:.0e}"
            row["ours"] = dry_run(work / "ours", write_run(work / "ours", shape, None), args.timeout)
            row["baseline"] = None
            if run_baseline:
                counts = previous_job_counts(shape)
                config = write_run(work / "baseline", shape, counts)
                row["baseline"] = dry_run(work / "baseline", config, args.timeout)
                baseline_seconds = row["baseline"]["seconds"]
                run_baseline = baseline_seconds is not None and baseline_seconds <= args.baseline_limit
            print(json.dumps({"name": f"plan_{voxels:.0e}", **row}), flush=True)
            rows.append(row)
    head = f"{'voxels':>10} {'jobs':>6} {'s':>7} {'cpu s':>6} {'MB':>6} | {'jobs':>6} {'s':>7} {'cpu s':>6} {'MB':>6}"
    print(f"{'':>10} {'ours':^28} | {'baseline':^29}\n{head}", file=sys.stderr)
    for row in rows:
        cells = [f"{row['voxels']:>10.2e}"]
        for side in (row["ours"], row["baseline"] or {}):
            cells.append(
                f"{side.get('jobs')!s:>6} {side.get('seconds')!s:>7} {side.get('cpu_seconds')!s:>6} "
                f"{side.get('peak_rss_mb')!s:>6}"
            )
        print(cells[0], " | ".join(cells[1:]), file=sys.stderr)
    largest = rows[-1]
    ran = [row for row in rows if row["baseline"] and row["baseline"]["seconds"]]
    base = ran[-1] if ran else None
    summary = {
        "name": "plan",
        "voxels": largest["voxels"],
        "seconds_ours": largest["ours"]["seconds"],
        "cpu_seconds_ours": largest["ours"]["cpu_seconds"],
        "peak_rss_mb": largest["ours"]["peak_rss_mb"],
        "jobs_ours": largest["ours"]["jobs"],
        "baseline_voxels": base["voxels"] if base else None,
        "seconds_baseline": base["baseline"]["seconds"] if base else None,
        "cpu_seconds_baseline": base["baseline"]["cpu_seconds"] if base else None,
        "jobs_baseline": base["baseline"]["jobs"] if base else None,
        "peak_rss_mb_baseline": base["baseline"]["peak_rss_mb"] if base else None,
        # at the largest size both sides ran: baseline seconds over ours
        "ratio": round(base["baseline"]["seconds"] / base["ours"]["seconds"], 2) if base else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
