"""Timing the pipeline's blockwise decoding on synthetic affinity stores (shared by the decoding benchmarks).

- :func:`synthetic_affinities`: uint8 affinities of tiled synthetic cells with uniform noise;
  :func:`write_store` stores them as predict does (default chunk shape and codec);
- :func:`pipeline_seconds`: one serial ``decode_volume``; :func:`step_seconds`: each of its
  blockwise steps; :func:`parallel_pipeline_seconds`: the block jobs on N processes, as
  ``snakemake --cores N`` runs them;
- :func:`timed`, :func:`best_of`: wall-clock helpers.

Used by ``bench_decode.py`` and ``bench_codecs.py``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pipeline_lib.blockstore import job_count, job_share
from pipeline_lib.config import DecodeSettings, build
from pipeline_lib.config.schema import schema_defaults
from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding import decode_blocks, decode_volume, prepare_decoding
from pipeline_lib.decoding.blockwise import decode_grid
from pipeline_lib.decoding.registry import decoder_settings
from pipeline_lib.decoding.relabel import finish_decoding, relabel_blocks, stitch_blocks
from pipeline_lib.io.affinities import AFFINITIES
from pipeline_lib.io.volumes import FAST_ZSTD, create_array, open_array, partial_path

OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LONG_RANGE_OFFSETS = [*OFFSETS, [-3, 0, 0], [0, -3, 0], [0, 0, -3]]  # config/config.yaml's model
DECODE = build(DecodeSettings, schema_defaults("decode"))
AFFINITY_CHUNK = tuple(schema_defaults("predict")["chunk_shape"])


def synthetic_affinities(
    shape: tuple[int, int, int], tile: int, noise: float, seed: int, offsets: list[list[int]] = OFFSETS
) -> np.ndarray:
    """uint8 (len(offsets), *shape) affinities of tiled synthetic cells, with noise (axis-aligned offsets)."""
    cells = generate((tile, tile, tile), seed=seed, cell_size=20).labels.astype(np.uint32)
    reps = [-(-s // tile) for s in shape]
    n = int(cells.max()) + 1
    labels = np.zeros([r * tile for r in reps], dtype=np.uint32)
    for i, index in enumerate(np.ndindex(*reps)):
        sl = tuple(slice(k * tile, (k + 1) * tile) for k in index)
        labels[sl] = np.where(cells > 0, cells + i * n, 0)
    labels = labels[tuple(slice(0, s) for s in shape)]
    rng = np.random.default_rng(seed)
    affs = np.zeros((len(offsets), *shape), dtype=np.uint8)
    amplitude = int(noise * 255)
    for channel, offset in enumerate(offsets):
        axis, distance = next((a, -d) for a, d in enumerate(offset) if d)
        here = [slice(None)] * 3
        there = [slice(None)] * 3
        here[axis], there[axis] = slice(distance, None), slice(None, -distance)
        a, b = labels[tuple(here)], labels[tuple(there)]
        same = ((a == b) & (a != 0)).astype(np.int16) * 255
        same += rng.integers(-amplitude, amplitude + 1, size=same.shape, dtype=np.int16)
        affs[(channel, *here)] = np.clip(same, 0, 255).astype(np.uint8)
    return affs


def write_store(path: Path, affs: np.ndarray, offsets: list[list[int]] = OFFSETS) -> Path:
    array = create_array(
        path,
        AFFINITIES,
        affs.shape,
        np.uint8,
        (len(offsets), *AFFINITY_CHUNK),
        (8.0, 8.0, 8.0),
        attrs={"offsets": offsets, "encoding": "uint8"},
        compressors=FAST_ZSTD,  # as predict writes them
    )
    array[...] = affs
    return path


def timed(function, *args, **kwargs) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def best_of(repeat: int, measure: Callable[[], float]) -> float:
    """The least of ``repeat`` measurements (seconds)."""
    return min(measure() for _ in range(repeat))


def pipeline_seconds(store: Path, out: Path, entry: dict) -> float:
    seconds, _ = timed(decode_volume, store, out, decoder_settings(entry), DECODE)
    shutil.rmtree(out)
    return seconds


def step_seconds(store: Path, out: Path, entry: dict) -> dict[str, float]:
    """Wall seconds of each blockwise step of one serial run (what ``decode_volume`` does)."""
    decoder = decoder_settings(entry)
    n_blocks = len(decode_grid(open_array(store, AFFINITIES).shape[1:], DECODE))
    partial = partial_path(out)
    steps = {
        "prepare": lambda: prepare_decoding(store, partial, decoder, DECODE),
        "decode_blocks": lambda: decode_blocks(store, partial, range(n_blocks), decoder),
        "stitch": lambda: stitch_blocks(partial, decoder),
        "relabel_blocks": lambda: relabel_blocks(partial, range(n_blocks)),
        "finish": lambda: finish_decoding(partial),
    }
    seconds = {name: timed(step)[0] for name, step in steps.items()}
    shutil.rmtree(out)
    return seconds


def _decode_job(store: Path, partial: Path, blocks: range, entry: dict) -> None:
    decode_blocks(store, partial, blocks, decoder_settings(entry))


def _relabel_job(partial: Path, blocks: range) -> None:
    relabel_blocks(partial, blocks)


def parallel_pipeline_seconds(store: Path, out: Path, entry: dict, workers: int) -> float:
    """Prepare, the decode block jobs on ``workers`` processes, the stitch, the relabel block
    jobs on ``workers`` processes, the finish; wall seconds."""
    decoder = decoder_settings(entry)
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:  # workers start inside the timed region
        partial = prepare_decoding(store, partial_path(out), decoder, DECODE)
        n_blocks = len(decode_grid(open_array(store, AFFINITIES).shape[1:], DECODE))
        n_jobs = job_count(n_blocks, DECODE.max_jobs)
        groups = [job_share(n_blocks, n_jobs, j) for j in range(n_jobs)]
        for job in [pool.submit(_decode_job, store, partial, blocks, entry) for blocks in groups]:
            job.result()
        stitch_blocks(partial, decoder)
        for job in [pool.submit(_relabel_job, partial, blocks) for blocks in groups]:
            job.result()
    finish_decoding(partial)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds
