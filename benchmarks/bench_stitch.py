"""Stitch benchmark: the connected-components stitch at 10³, 10⁴ and 10⁵ blocks, streamed against in memory.

Block records are synthetic, of the size the decode block jobs write with the default block
shape (64 x 128 x 128): ``counts`` of ``--objects`` local ids, and for every axis the labels
on the first and last planes (128 x 128 along z, 64 x 128 along y and x, uint16) and the
crossing edges of the first plane (90 % on). Planes are cells of 16 x 16 voxels with random
local ids among the first ``--face-share`` of the block's ids (default 0.25: most objects of
a connected-components block are small fragments inside it; 1.0 puts every object on a
face); a pool of 16 such records is generated once (no voxel is decoded) and block ``i`` gets
record ``i * 7919 mod 16``, served from memory, so the figures exclude disk reads.

Sides, each in a fresh subprocess (time excludes the interpreter start, imports and record
generation; peak memory is the child's ``VmHWM``):

- ``ours``: :func:`pipeline_lib.decoding.face_stitch.stream_cc_table` (union–find over the
  objects that cross faces; the final table written through a memory map);
- ``baseline``: the in-memory stitch (``relabel._final_table``, then ``np.save``), which
  holds the id, count, component and final tables of every object of the volume.

Both write the same table (checked). Every line on stdout is JSON: one per block count, the
last a summary of the largest (``seconds_ours``, ``seconds_baseline``, ``ratio`` = baseline /
ours seconds, ``peak_rss_mb`` ours and ``peak_rss_mb_baseline``).

Run: ``.venv/bin/python benchmarks/bench_stitch.py`` (``--blocks 1000`` for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_lib.geometry import BlockGrid  # noqa: E402

BLOCK = (64, 128, 128)
CELL = 16
POOL = 16


def grid_for(n_blocks: int) -> BlockGrid:
    """A grid of about ``n_blocks`` blocks: 10 along z, a square in y and x."""
    side = max(1, round(math.sqrt(n_blocks / 10)))
    shape = (10 * BLOCK[0], side * BLOCK[1], side * BLOCK[2])
    return BlockGrid(shape, BLOCK)


def plane(rng: np.random.Generator, shape: tuple[int, int], n_on_faces: int) -> np.ndarray:
    cells = rng.integers(1, n_on_faces + 1, (-(-shape[0] // CELL), -(-shape[1] // CELL)), dtype=np.uint16)
    return np.kron(cells, np.ones((CELL, CELL), np.uint16))[: shape[0], : shape[1]]


def record(seed: int, n_objects: int, face_share: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {"counts": rng.integers(1, 20000, n_objects)}
    n_on_faces = max(1, round(n_objects * face_share))
    for axis in range(3):
        face = tuple(s for a, s in enumerate(BLOCK) if a != axis)
        out[f"first{axis}"] = plane(rng, face, n_on_faces)  # type: ignore[arg-type]
        out[f"last{axis}"] = plane(rng, face, n_on_faces)  # type: ignore[arg-type]
        out[f"crossing{axis}"] = rng.random(face) < 0.9
    return out


def run_side(side: str, n_blocks: int, n_objects: int, face_share: float, folder: Path) -> dict[str, Any]:
    """In this process: generate the pool, stitch, report seconds, VmHWM and the table's hash."""
    from pipeline_lib.decoding.face_stitch import stream_cc_table
    from pipeline_lib.decoding.registry import decoder_settings
    from pipeline_lib.decoding.relabel import _final_table

    grid = grid_for(n_blocks)
    pool = [record(seed, n_objects, face_share) for seed in range(POOL)]

    def open_record(block_id: int) -> contextlib.nullcontext[dict[str, np.ndarray]]:
        return contextlib.nullcontext(pool[block_id * 7919 % POOL])

    start = time.perf_counter()
    if side == "ours":
        stream_cc_table(grid, open_record, 0, folder)
    else:
        decoder = decoder_settings({"method": "connected_components"})
        final, starts = _final_table(folder, grid, decoder, open_record)
        np.save(folder / "final.npy", final)
        np.save(folder / "starts.npy", starts)
        del final
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    digest = hashlib.sha256(np.load(folder / "final.npy", mmap_mode="r").tobytes()).hexdigest()
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(hwm, 1), "blocks": len(grid), "sha256": digest}


def measure(side: str, n_blocks: int, n_objects: int, face_share: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, __file__, "--child", side, "--blocks", str(n_blocks)]
        command += ["--objects", str(n_objects), "--face-share", str(face_share), "--folder", folder]
        result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return dict(json.loads(result.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--objects", type=int, default=100, help="local ids per block")
    parser.add_argument("--face-share", type=float, default=0.25, help="share of a block's ids on its faces")
    parser.add_argument("--child", choices=["ours", "baseline"], default=None)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_side(args.child, args.blocks[0], args.objects, args.face_share, args.folder)))
        return
    line: dict[str, Any] = {}
    for n_blocks in args.blocks:
        ours = measure("ours", n_blocks, args.objects, args.face_share)
        baseline = measure("baseline", n_blocks, args.objects, args.face_share)
        if ours.pop("sha256") != baseline.pop("sha256"):
            raise RuntimeError(f"{n_blocks} blocks: the two stitches wrote different tables")
        line = {
            "name": f"stitch_{ours['blocks']}_blocks",
            "blocks": ours["blocks"],
            "objects": ours["blocks"] * args.objects,
            "face_share": args.face_share,
            "seconds_ours": ours["seconds"],
            "seconds_baseline": baseline["seconds"],
            "ratio": round(baseline["seconds"] / max(ours["seconds"], 1e-3), 2),
            "peak_rss_mb": ours["peak_rss_mb"],
            "peak_rss_mb_baseline": baseline["peak_rss_mb"],
        }
        print(json.dumps(line), flush=True)
    print(json.dumps({**line, "name": "stitch"}))


if __name__ == "__main__":
    main()
