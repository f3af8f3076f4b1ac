"""Assembly benchmark: a PNG tile grid (pattern tile JSON) into zarr, against a plain copy.

Sides, each timed in a fresh subprocess (time excludes interpreter start and imports):

- ``ours``: :func:`pipeline_lib.data.assemble.assemble_dataset` from the tile JSON into an
  OME-Zarr store (``--chunk`` chunks, the default codec of
  :func:`pipeline_lib.io.volumes.create_array`), atomic rename and attributes included.
- ``baseline``: a plain copy of the same bytes: a loop over the tile files that decodes each
  with the same decoder (:func:`pipeline_lib.io.sources.read_file`) into one numpy array of
  the whole volume, then one write of that array into a zarr array with the same chunks and
  codec. It needs the whole volume in memory; ours must not.
- ``large``: ours on a volume ``--scale`` times larger in y and x (same depth; by default
  4x the voxels), to show that peak memory does not grow with the volume. Its tiles are
  symbolic links repeating the first volume's tiles (see :func:`write_tiles`).

Peak memory is the child's ``VmHWM`` from ``/proc/self/status`` (Linux ``ru_maxrss`` would
carry the parent's peak across fork + exec; it is reported too). ``import_floor_mb`` is the
VmHWM of a child that only imports the library. Sides alternate ``--repeats`` times; the
median time counts (the machine is shared and noisy). Outputs are checked equal.

The volume is deterministic (``--seed``): a smooth pattern plus noise, so that PNG
compresses it about as poorly as EM data. Default: 64 sections of 2048 x 2048 uint8 voxels
(256 MiB) as 512 x 512 PNG tiles (1024 files), chunks 32 x 128 x 128 (the config default).

Run: ``.venv/bin/python benchmarks/bench_assemble.py`` (``--work DIR`` keeps the tiles for
a rerun; ``--size 1024`` for a quick look). Every line on stdout is JSON; the last one
summarises.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PATTERN = "z{z:03d}/r{row}_c{column}.png"


def peak_memory_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"vmhwm_mb": round(hwm, 1), "ru_maxrss_mb": round(maxrss, 1)}


def tile_pixels(seed: int, z: int, row: int, column: int, tile: int) -> np.ndarray:
    """The deterministic content of one tile: smooth stripes plus uniform noise."""
    rng = np.random.default_rng([seed, z, row, column])
    y = (np.arange(tile) + row * tile)[:, None]
    x = (np.arange(tile) + column * tile)[None, :]
    smooth = 100 + 60 * np.sin(x / 37.0 + z / 5.0) * np.cos(y / 23.0)
    noise = rng.integers(0, 40, (tile, tile))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def write_tiles(folder: Path, depth: int, size: int, tile: int, seed: int, repeat: Path | None = None) -> Path:
    """Write the tile grid and its pattern tile JSON under ``folder`` (kept if already done).

    With ``repeat`` (a folder written by this function), tile (z, r, c) is a symbolic link
    to that grid's tile (z, r mod n, c mod n): a larger volume at no generation cost, whose
    tiles decode and compress exactly like distinct ones.
    """
    from PIL import Image

    json_path = folder / "tiles.json"
    if json_path.is_file():
        return json_path
    n = size // tile
    n_repeat = json.loads((repeat / "tiles.json").read_text())["n_rows"] if repeat else 0
    for z in range(depth):
        (folder / f"z{z:03d}").mkdir(parents=True, exist_ok=True)
        for r in range(n):
            for c in range(n):
                path = folder / PATTERN.format(z=z, row=r, column=c)
                if repeat:
                    path.symlink_to(repeat / PATTERN.format(z=z, row=r % n_repeat, column=c % n_repeat))
                else:
                    Image.fromarray(tile_pixels(seed, z, r, c, tile)).save(path)
    doc = {
        "image": [PATTERN.replace("{z:03d}", f"{z:03d}") for z in range(depth)],
        "depth": depth, "height": size, "width": size, "tile_size": tile,
        "n_rows": n, "n_columns": n, "dtype": "uint8", "ndim": 1,
    }  # fmt: skip
    json_path.write_text(json.dumps(doc))
    return json_path


def child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process; prints one JSON line."""
    from pipeline_lib.config import DatasetSpec
    from pipeline_lib.data.assemble import assemble_dataset
    from pipeline_lib.io.files import read_file
    from pipeline_lib.io.volumes import create_array

    work = Path(args.work)
    tiles = work / ("large" if args.child == "large" else "volume")
    out = work / f"{args.child}.zarr"
    start = time.perf_counter()
    if args.child == "baseline":
        doc = json.loads((tiles / "tiles.json").read_text())
        t = doc["tile_size"]
        volume = np.empty((doc["depth"], doc["height"], doc["width"]), np.uint8)
        for z in range(doc["depth"]):
            for r in range(doc["n_rows"]):
                for c in range(doc["n_columns"]):
                    pixels = read_file(tiles / doc["image"][z].format(row=r, column=c))
                    volume[z, r * t : (r + 1) * t, c * t : (c + 1) * t] = pixels[0]
        target = create_array(out, "image", volume.shape, np.uint8, args.chunk, (40.0, 4.0, 4.0))
        target[...] = volume
    elif args.child != "imports":
        spec = DatasetSpec(
            "bench", (40.0, 4.0, 4.0), ("train",), {"format": "tiles", "path": str(tiles / "tiles.json")},
            None, None, None, None,
        )  # fmt: skip
        assemble_dataset(spec, out, args.chunk)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": round(seconds, 3), **peak_memory_mb()}), flush=True)


def run_child(kind: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--work", str(work)]
    command += ["--chunk", *map(str, args.chunk)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise RuntimeError(f"benchmark child '{kind}' failed")
    record: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps({"run": kind, **record}), file=sys.stderr, flush=True)
    return record


def check_equal(ours: Path, baseline: Path, chunk: list[int]) -> None:
    """Compare the two written arrays slab by slab (never the whole volume at once)."""
    from pipeline_lib.io.volumes import open_array

    a, b = open_array(ours, "image"), open_array(baseline, "image")
    assert a.shape == b.shape and a.dtype == b.dtype and a.chunks == b.chunks, (a, b)
    for z in range(0, a.shape[0], chunk[0]):
        if not np.array_equal(a[z : z + chunk[0]], b[z : z + chunk[0]]):
            raise AssertionError(f"assembled volume differs from the plain copy in sections {z}..")


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (lower median), with its own memory figures."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--size", type=int, default=2048, help="section height = width (a multiple of --tile)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--chunk", type=int, nargs=3, default=[32, 128, 128])
    parser.add_argument("--scale", type=int, default=2, help="the large run's y and x are this times larger")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, alternating; the median counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for tiles and outputs (kept); default: a temporary one")
    parser.add_argument("--child", choices=["ours", "baseline", "large", "imports"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_assemble_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        write_tiles(work / "volume", args.depth, args.size, args.tile, args.seed)
        write_tiles(work / "large", args.depth, args.size * args.scale, args.tile, args.seed, work / "volume")
        print(json.dumps({"tiles_written_s": round(time.perf_counter() - start, 1)}), file=sys.stderr)
        floor = run_child("imports", args, work)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
        for i in range(args.repeats):
            for kind in ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours"):
                runs[kind].append(run_child(kind, args, work))
            if i == 0:
                check_equal(work / "ours.zarr", work / "baseline.zarr", args.chunk)
        large = median_run([run_child("large", args, work) for _ in range(max(1, args.repeats // 2))])
        ours, baseline = median_run(runs["ours"]), median_run(runs["baseline"])
        mib = args.depth * args.size**2 / 2**20
        detail = {
            "name": "assemble_detail",
            "seconds_all_ours": [r["seconds"] for r in runs["ours"]],
            "seconds_all_baseline": [r["seconds"] for r in runs["baseline"]],
            "ru_maxrss_mb_ours": ours["ru_maxrss_mb"],
            "ru_maxrss_mb_baseline": baseline["ru_maxrss_mb"],
            "mib_per_s_ours": round(mib / ours["seconds"], 1),
            "mib_per_s_large": round(mib * args.scale**2 / large["seconds"], 1),
        }
        print(json.dumps(detail), flush=True)
    finally:
        for name in ("ours", "baseline", "large"):
            shutil.rmtree(work / f"{name}.zarr", ignore_errors=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "name": "bench_assemble",
        "shape": [args.depth, args.size, args.size],
        "tile": args.tile,
        "chunk": args.chunk,
        "repeats": args.repeats,
        "seconds_ours": ours["seconds"],
        "seconds_baseline": baseline["seconds"],
        "peak_mb_ours": ours["vmhwm_mb"],
        "peak_mb_baseline": baseline["vmhwm_mb"],
        "ratio": round(ours["seconds"] / baseline["seconds"], 3),
        "import_floor_mb": floor["vmhwm_mb"],
        "large_shape": [args.depth, args.size * args.scale, args.size * args.scale],
        "seconds_large": large["seconds"],
        "peak_mb_large": large["vmhwm_mb"],
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
