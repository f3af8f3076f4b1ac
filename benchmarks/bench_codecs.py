"""Storage benchmark: the codecs and chunk shapes of stored affinities and segmentations.

Each candidate is one JSON line on stdout; the last line compares the pipeline's choices
with what it wrote before:

1. ``affinities``: writing a store of the three nearest-neighbour channels, and reading them
   block by block as the CC decode block jobs do (decode blocks of the schema default):
   the pipeline's :data:`~pipeline_lib.io.volumes.FAST_ZSTD` (zstd level 1) with predict's
   default chunks; LZ4 (blosc) with the same chunks; zarr's default codec (zstd level 3)
   with the same chunks and with 32x64x64 chunks (what predict wrote before).
2. ``affinities_6ch``: six channels (the demo model's nearest-neighbour and long-range
   offsets, synthetic) in chunks of all six channels (the pipeline's choice) or of three:
   writing, reading the three nearest-neighbour channels block by block (what connected
   components, seeded watershed and waterz read) and reading all six (mutex watershed).
3. ``segmentation``: writing it block by block as the relabel jobs do: uint32, zstd level 1,
   one chunk per decode block (the pipeline's choice); the same with bit-shuffled LZ4; the
   same with 32x64x64 chunks; and what it wrote before: uint64, zstd level 1, 32x64x64 chunks.

Every candidate reports seconds (best of ``--repeat``) and its compressed size. The
affinities are ``bench_decode.py``'s (synthetic cells with noise, ``decode_timing.py``), or, with
``--affinities STORE``, a stored prediction (e.g. ``results/predictions/gala/gala_test.zarr``;
its nearest-neighbour channels). The segmentation is their connected components,
relabelled consecutively. Run: ``.venv/bin/python benchmarks/bench_codecs.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import zarr
from decode_timing import DECODE, LONG_RANGE_OFFSETS, OFFSETS, best_of, synthetic_affinities  # beside this script
from zarr.codecs import BloscCodec

from pipeline_lib.config.schema import schema_defaults
from pipeline_lib.decoding.connected_components import connected_components
from pipeline_lib.decoding.partial_store import decode_grid
from pipeline_lib.io.affinities import as_float
from pipeline_lib.io.volumes import AFFINITIES, FAST_ZSTD, open_array
from pipeline_lib.offsets import nearest_neighbour_channels

BEFORE_CHUNK = (32, 64, 64)  # predict's and decode's default chunk shape before


def megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def store(path: Path, data: np.ndarray, chunks: tuple[int, ...], codec: Any) -> zarr.Array:
    with zarr.config.set({"array.write_empty_chunks": True}):
        array = zarr.create_array(
            str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, compressors=codec, fill_value=0
        )
        array[...] = data
    return array


def read_blocks(array: zarr.Array, blocks: list[tuple[slice, ...]], channels: slice = slice(None)) -> float:
    start = time.perf_counter()
    for block in blocks:
        np.asarray(array[(channels, *block)])
    return time.perf_counter() - start


def write_blocks(
    path: Path, data: np.ndarray, blocks: list[tuple[slice, ...]], chunks: tuple[int, ...], codec: Any
) -> float:
    """Seconds to write ``data`` block by block into a new array (chunks written whole, as relabel does)."""
    shutil.rmtree(path, ignore_errors=True)
    with zarr.config.set({"array.write_empty_chunks": True}):
        array = zarr.create_array(
            str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, compressors=codec, fill_value=0
        )
        start = time.perf_counter()
        for block in blocks:
            array[block] = data[block]
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[250, 500, 500])
    parser.add_argument("--affinities", type=Path, help="a stored prediction instead of synthetic affinities")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.affinities:
        stored = open_array(args.affinities, AFFINITIES)
        offsets = [list(o) for o in stored.attrs["offsets"]]
        affs = np.stack([np.asarray(stored[c]) for c in nearest_neighbour_channels(offsets)])
        source = str(args.affinities)
    else:
        affs = synthetic_affinities(tuple(args.shape), 125, 0.15, seed=0)  # type: ignore[arg-type]
        source = "synthetic"
    grid = decode_grid(affs.shape[1:], DECODE)
    blocks = [grid.block(i).slices for i in range(len(grid))]
    ours_chunk = tuple(schema_defaults("predict")["chunk_shape"])
    lz4 = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    work = Path(tempfile.mkdtemp(prefix="bench_codecs_"))
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, chunks, codec in [
            ("ours_zstd1", ours_chunk, FAST_ZSTD),
            ("lz4", ours_chunk, lz4),
            ("zstd3", ours_chunk, "auto"),
            ("before_zstd3", BEFORE_CHUNK, "auto"),
        ]:
            path = work / f"{label}.zarr"
            start = time.perf_counter()
            array = store(path, affs, (3, *chunks), codec)
            written = time.perf_counter() - start
            results[f"affinities_{label}"] = {
                "source": source,
                "chunks": list(chunks),
                "seconds_write": round(written, 3),
                "seconds_read": round(best_of(args.repeat, partial(read_blocks, array, blocks)), 3),
                "mb_stored": round(megabytes(path), 1),
                "mb_raw": round(affs.nbytes / 1e6, 1),
            }
            shutil.rmtree(path)
            print(json.dumps({"name": f"affinities_{label}", **results[f"affinities_{label}"]}), flush=True)

        if not args.affinities:
            six = synthetic_affinities(tuple(args.shape), 125, 0.15, 0, LONG_RANGE_OFFSETS)  # type: ignore[arg-type]
            for label, group in [("ours_chunks_of_6", 6), ("chunks_of_3", 3)]:
                path = work / f"six_{label}.zarr"
                start = time.perf_counter()
                array = store(path, six, (group, *ours_chunk), FAST_ZSTD)
                written = time.perf_counter() - start
                nearest = best_of(args.repeat, partial(read_blocks, array, blocks, slice(0, 3)))
                line = {
                    "channel_chunk": group,
                    "seconds_write": round(written, 3),
                    "seconds_read_nearest": round(nearest, 3),
                    "seconds_read_all": round(best_of(args.repeat, partial(read_blocks, array, blocks)), 3),
                    "mb_stored": round(megabytes(path), 1),
                }
                shutil.rmtree(path)
                print(json.dumps({"name": f"affinities_6ch_{label}", **line}), flush=True)
            del six

        labels, _ = fastremap.renumber(connected_components(as_float(affs), OFFSETS, 0.5), in_place=True)
        del affs
        block_chunk = tuple(DECODE.chunk_shape)
        for label, dtype, chunks, codec in [
            ("ours_uint32_zstd1", np.uint32, block_chunk, FAST_ZSTD),
            ("uint32_lz4_bitshuffle", np.uint32, block_chunk, BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")),
            ("uint32_zstd1_small_chunks", np.uint32, BEFORE_CHUNK, FAST_ZSTD),
            ("before_uint64_zstd1", np.uint64, BEFORE_CHUNK, FAST_ZSTD),
        ]:
            path = work / f"{label}.zarr"
            seg = labels.astype(dtype)
            seconds = best_of(args.repeat, partial(write_blocks, path, seg, blocks, chunks, codec))
            results[f"segmentation_{label}"] = {
                "chunks": list(chunks),
                "seconds_write": round(seconds, 3),
                "mb_stored": round(megabytes(path), 1),
                "n_objects": int(labels.max()),
            }
            del seg
            shutil.rmtree(path)
            print(json.dumps({"name": f"segmentation_{label}", **results[f"segmentation_{label}"]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours = results["affinities_ours_zstd1"]["seconds_read"]
    ours += results["segmentation_ours_uint32_zstd1"]["seconds_write"]
    before = results["affinities_before_zstd3"]["seconds_read"]
    before += results["segmentation_before_uint64_zstd1"]["seconds_write"]
    summary = {
        "name": "bench_codecs",
        "what": "CC decoding's storage I/O: read the affinities + write the segmentation, blockwise",
        "seconds_ours": round(ours, 3),
        "seconds_baseline": round(before, 3),
        "ratio": round(ours / before, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
