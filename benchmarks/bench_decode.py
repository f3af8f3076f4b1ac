"""Decoding benchmark: the pipeline's blockwise decoding against its floors.

Comparisons (each one JSON line on stdout; the last line summarises):

1. ``cc``: connected components of a ``--shape`` uint8 affinity volume (default 250x500x500 =
   62.5 Mvoxel) through the pipeline (:func:`pipeline_lib.decoding.decode_volume`: zarr in,
   blockwise decode with the default block/chunk shapes, stitch, relabel, zarr out) vs the
   floor: ``cc3d.color_connectivity_graph`` labelling the same thresholded graph in memory
   (graph construction not timed), laid out in Fortran order as cc3d works (the C-order time,
   which includes cc3d's copy to Fortran order, is printed beside it). Each side is the best
   of ``--repeat`` runs. ``cc_decode_steps``: the seconds of each step of the serial pipeline
   (prepare, decode blocks, stitch, relabel blocks, finish), the best of ``--repeat`` runs each.
   ``cc_<N>proc``: the same pipeline with the decode block jobs and the relabel block jobs
   (``decode.max_jobs`` shares of the blocks) run by N processes, as ``snakemake --cores N`` runs them,
   one line for each N of ``--workers`` (default 2); prepare, the (single-process) stitch and
   the finish are timed too. Reported next to the serial figure, not instead.
2. ``waterz``: the same volume through the pipeline with the waterz decoder (the graph
   decoder: fragments per block, one region graph, one agglomeration; default settings) vs
   ``waterz.agglomerate`` on the whole in-memory float32 affinities (one threshold);
   ``waterz_decode_steps``: its serial steps' seconds; ``waterz_decode_<N>proc``: with the
   block jobs on N processes (``--workers``), beside the serial figure;
   ``region_graph_size``: nodes, edges and bytes of the pipeline's graph, also per Gvoxel;
   ``waterz_sweep_10_thresholds``: the graph decoder on the whole in-memory volume at 10
   thresholds (one merge history cut 10 times) vs at one.
   ``fragment_step_one_block``: the seconds of each part of the fragment step on one block
   with its context, and of candidate flood algorithms (with the ARAND of their fragments
   to ours).
3. ``memory``: peak resident memory (``ru_maxrss`` of a fresh subprocess) of blockwise CC
   decoding of the full volume vs a quarter of it (the first quarter along z), i.e. 4x vs 1x.

Affinities come from synthetic cell labels (one generated tile repeated with new ids) with
uniform noise of ±``--noise`` (out of 1), stored as predict stores them (default chunk shape
and codec): the three nearest-neighbour channels, or with ``--long-range`` also the three
at distance 3 that the demo model predicts (the floors and the waterz baseline use the
nearest-neighbour channels either way). Run: ``.venv/bin/python benchmarks/bench_decode.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cc3d
import numpy as np
from decode_timing import (  # beside this script
    DECODE,
    LONG_RANGE_OFFSETS,
    OFFSETS,
    best_of,
    parallel_pipeline_seconds,
    pipeline_seconds,
    step_seconds,
    synthetic_affinities,
    timed,
    write_store,
)

from pipeline_lib.decoding import decode_blocks, prepare_decoding
from pipeline_lib.decoding.blockwise import decode_grid
from pipeline_lib.decoding.connected_components import affinity_graph
from pipeline_lib.decoding.graph_decode import build_graph, graph_segmentations
from pipeline_lib.decoding.partial_store import block_record
from pipeline_lib.decoding.registry import decoder_settings
from pipeline_lib.io.affinities import AFFINITIES, as_float
from pipeline_lib.io.volumes import open_array, partial_path


def cc3d_seconds(graph: np.ndarray) -> float:
    return timed(cc3d.color_connectivity_graph, graph, connectivity=6)[0]


def peak_rss_mb(store: Path, out: Path) -> float:
    """Peak RSS (MB, VmHWM) of a fresh process that decodes ``store`` blockwise with connected components."""
    # VmHWM of the child's own address space: ru_maxrss would carry over the parent's peak
    # across fork + exec on Linux.
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from benchmarks.decode_timing import DECODE\n"
        "from pipeline_lib.decoding import decode_volume\n"
        "from pipeline_lib.decoding.registry import decoder_settings\n"
        "settings = decoder_settings({'method': 'connected_components'})\n"
        "decode_volume(Path(sys.argv[1]), Path(sys.argv[2]), settings, DECODE)\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print(next(int(line.split()[1]) for line in status if line.startswith('VmHWM')) / 1024)\n"
    )
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-c", code, str(store), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root)
    shutil.rmtree(out)
    return float(result.stdout.strip().splitlines()[-1])


def _quiet_waterz(function: Callable[[], np.ndarray]) -> np.ndarray:
    """Run ``function`` with stdout (Python and C level) sent to /dev/null: waterz prints."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        return function()
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def graph_size(store: Path, out: Path, entry: dict) -> dict[str, float]:
    """Nodes, edges and bytes of the region graph the pipeline builds for ``store`` (blocks decoded again)."""
    decoder = decoder_settings(entry)
    grid = decode_grid(open_array(store, AFFINITIES).shape[1:], DECODE)
    partial = partial_path(out)
    prepare_decoding(store, partial, decoder, DECODE)
    decode_blocks(store, partial, range(len(grid)), decoder)
    counts = []
    for i in range(len(grid)):
        with np.load(block_record(partial, i)) as record:
            counts.append(record["counts"])
            offsets = record["offsets"].tolist()
    graph, _ = build_graph(grid, offsets, counts, lambda i: np.load(block_record(partial, i)))
    shutil.rmtree(partial)
    return {"nodes": graph.n_nodes, "edges": len(graph.nearest) + len(graph.long_range), "bytes": graph.nbytes}


def graph_comparison(store: Path, work: Path, float_affs: np.ndarray, mvox: float, workers: list[int]) -> list[dict]:
    """The waterz-style graph decoder through the pipeline vs ``waterz.agglomerate``; graph size; a sweep."""
    import waterz

    median = "OneMinus<HistogramQuantileAffinity<RegionGraphType, 50, ScoreValue, 256>>"

    def direct() -> np.ndarray:
        return next(waterz.agglomerate(float_affs, [0.5], scoring_function=median, discretize_queue=256)).copy()

    base, _ = timed(_quiet_waterz, direct)
    entry = {"method": "waterz"}
    ours = pipeline_seconds(store, work / "wz.zarr", entry)
    lines = [
        {
            "name": f"waterz_decode_{mvox:g}Mvox",
            "seconds_ours": round(ours, 2),
            "seconds_baseline": round(base, 2),
            "baseline": "waterz.agglomerate in memory (aff50_his256, threshold 0.5, 1 process)",
            "ours": "graph decoder (waterz, aff50_his256) through decode_volume: fragments, graph, merging, relabel",
            "ratio": round(ours / base, 2),
        }
    ]
    print(json.dumps(lines[-1]), flush=True)
    steps = {name: round(value, 3) for name, value in step_seconds(store, work / "wz_steps.zarr", entry).items()}
    print(json.dumps({"name": "waterz_decode_steps", "seconds": steps}), flush=True)
    for n in workers:
        ours_n = parallel_pipeline_seconds(store, work / "wz_n.zarr", entry, n)
        line = {
            "name": f"waterz_decode_{mvox:g}Mvox_{n}proc",
            "seconds_ours": round(ours_n, 2),
            "seconds_baseline": round(base, 2),
            "baseline": "waterz.agglomerate in memory (1 process)",
            "ours": f"decode and relabel block jobs on {n} worker processes (snakemake --cores {n}), stitch in one",
            "ratio": round(ours_n / base, 2),
        }
        print(json.dumps(line), flush=True)
    size = graph_size(store, work / "size.zarr", entry)
    per_gvox = 1000.0 / mvox
    lines.append(
        {
            "name": "region_graph_size",
            **size,
            "nodes_per_gvox": round(size["nodes"] * per_gvox),
            "edges_per_gvox": round(size["edges"] * per_gvox),
            "gb_per_gvox": round(size["bytes"] * per_gvox / 1e9, 3),
        }
    )
    print(json.dumps(lines[-1]), flush=True)
    decoder = decoder_settings(entry)
    thresholds = [round(0.05 + 0.1 * k, 2) for k in range(10)]

    def sweep(values: list[float]) -> int:
        return sum(int(labels.max()) for _, labels in graph_segmentations(float_affs, OFFSETS, decoder, values))

    one, _ = timed(sweep, [0.5])
    ten, _ = timed(sweep, thresholds)
    lines.append(
        {
            "name": "waterz_sweep_10_thresholds",
            "seconds_ours": round(ten, 2),
            "seconds_baseline": round(one, 2),
            "baseline": "one threshold (whole volume in memory)",
            "ratio": round(ten / one, 2),
        }
    )
    print(json.dumps(lines[-1]), flush=True)
    return lines


def fragment_step_seconds(float_affs: np.ndarray) -> dict:
    """Where a graph decode block's time goes, and candidate flood algorithms, on one block's context.

    The context is the size of an inner default decode block grown by waterz's default
    fragment halo on both sides (clipped to the volume). Candidates for the flood, each from the same seeds
    (``mwatershed``: Kruskal over nearest edges with the seeds kept apart; ``watershed_ift``:
    scipy's on the uint8 flood image; waterz's own zwatershed makes its own, far smaller
    fragments and is timed for reference), with the ARAND of its fragments to ours.
    """
    import mwatershed
    import waterz
    from scipy.ndimage import distance_transform_edt, label, maximum_filter, watershed_ift
    from skimage.segmentation import watershed

    from pipeline_lib.decoding.fragments import stored_mean
    from pipeline_lib.decoding.watershed import mean_affinity
    from pipeline_lib.evaluation import evaluate_arrays

    halo = decoder_settings({"method": "waterz"}).params["halo"]
    shape = zip(DECODE.block_shape, halo, float_affs.shape[1:], strict=True)
    context = tuple(slice(0, min(b + 2 * h, s)) for b, h, s in shape)  # an inner block: halo on both sides
    affs = np.ascontiguousarray(float_affs[(slice(None), *context)])
    seconds: dict[str, float] = {}

    def step(name: str, function: Callable[[], object]) -> object:
        elapsed, result = timed(function)
        seconds[name] = round(elapsed, 3)
        return result

    inside = step("boundary_mask", lambda: stored_mean(affs, OFFSETS) > 0.5)
    distance = step("distance_transform_edt", lambda: distance_transform_edt(inside).astype(np.float32))
    maxima = step("maximum_filter", lambda: (maximum_filter(distance, size=10) == distance) & inside)
    seeds, _ = step("label_seeds", lambda: label(maxima, output=np.int32))  # type: ignore[misc]
    flood = step("mean_affinity", lambda: 1.0 - mean_affinity(affs, OFFSETS))
    ours = step("skimage_watershed_float32 (ours)", lambda: watershed(flood, markers=seeds))
    flood8 = np.round(flood * 255).astype(np.uint8)
    candidates = {
        "skimage_watershed_uint8": lambda: watershed(flood8, markers=seeds),
        "scipy_watershed_ift_uint8": lambda: watershed_ift(flood8, seeds),
        "mwatershed_nearest_edges": lambda: mwatershed.agglom(
            affs.astype(np.float64), offsets=OFFSETS, seeds=seeds.astype(np.uint64)
        ),
        "waterz_zwatershed (own seeds)": lambda: _quiet_waterz(lambda: next(waterz.agglomerate(affs, [0.0])).copy()),
    }
    arand = {}
    for name, function in candidates.items():
        labels = np.asarray(step(name, function)).astype(np.uint32)
        arand[name] = round(evaluate_arrays(labels, ours.astype(np.uint32)).arand, 4)  # type: ignore[union-attr]
    return {
        "name": "fragment_step_one_block",
        "context": [s.stop for s in context],
        "seconds": seconds,
        "arand_to_ours": arand,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[250, 500, 500])
    parser.add_argument("--tile", type=int, default=125)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--skip-waterz", action="store_true")
    parser.add_argument("--long-range", action="store_true", help="store 6 channels, as the demo model predicts")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[2], help="processes for the block jobs' figures, one per count"
    )
    parser.add_argument("--repeat", type=int, default=3, help="CC figures: the best of this many runs, each side")
    args = parser.parse_args()
    shape = tuple(args.shape)
    mvox = float(np.prod(shape)) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    lines = []
    try:
        offsets = LONG_RANGE_OFFSETS if args.long_range else OFFSETS
        affs = synthetic_affinities(shape, args.tile, args.noise, 0, offsets)  # type: ignore[arg-type]
        full = write_store(work / "full.zarr", affs, offsets)
        quarter = write_store(work / "quarter.zarr", np.ascontiguousarray(affs[:, : shape[0] // 4]), offsets)
        affs = affs[: len(OFFSETS)]  # the floors' input: the nearest-neighbour channels

        graph = affinity_graph(affs, OFFSETS, 0.5)
        cc = {"method": "connected_components"}

        # cc3d labels in Fortran order: ``graph.T`` is the graph in that layout (no copy), a
        # C-ordered copy of it is copied to Fortran order by cc3d first. The floor is the faster.
        floor = best_of(args.repeat, partial(cc3d_seconds, graph.T))
        c_ordered = np.ascontiguousarray(graph.T)
        floor_c_order = best_of(args.repeat, partial(cc3d_seconds, c_ordered))
        del c_ordered
        del graph
        ours = best_of(args.repeat, partial(pipeline_seconds, full, work / "cc.zarr", cc))
        lines.append(
            {
                "name": f"cc_decode_{mvox:g}Mvox",
                "seconds_ours": round(ours, 2),
                "seconds_baseline": round(floor, 2),
                "baseline": "cc3d.color_connectivity_graph in memory, graph in Fortran order",
                "seconds_baseline_c_order": round(floor_c_order, 2),
                "ratio": round(ours / floor, 2),
            }
        )
        print(json.dumps(lines[-1]), flush=True)
        runs = [step_seconds(full, work / "steps.zarr", cc) for _ in range(args.repeat)]
        steps = {name: round(min(run[name] for run in runs), 3) for name in runs[0]}
        print(json.dumps({"name": "cc_decode_steps", "seconds_best_of_each": steps}), flush=True)
        for workers in args.workers:
            ours_n = best_of(
                args.repeat, partial(parallel_pipeline_seconds, full, work / "ccn.zarr", cc, workers=workers)
            )
            lines.append(
                {
                    "name": f"cc_decode_{mvox:g}Mvox_{workers}proc",
                    "seconds_ours": round(ours_n, 2),
                    "seconds_baseline": round(floor, 2),
                    "baseline": "cc3d.color_connectivity_graph in memory, graph in Fortran order (1 process)",
                    "ours": f"decode and relabel block jobs on {workers} worker processes, stitch and finish in one",
                    "ratio": round(ours_n / floor, 2),
                }
            )
            print(json.dumps(lines[-1]), flush=True)

        if not args.skip_waterz:
            lines.extend(graph_comparison(full, work, as_float(affs), mvox, args.workers))
            print(json.dumps(fragment_step_seconds(as_float(affs))), flush=True)
        del affs

        rss_1x = peak_rss_mb(quarter, work / "q.zarr")
        rss_4x = peak_rss_mb(full, work / "f.zarr")
        lines.append(
            {
                "name": "blockwise_cc_peak_rss_4x_vs_1x",
                "peak_rss_mb_1x": round(rss_1x, 1),
                "peak_rss_mb_4x": round(rss_4x, 1),
                "ratio": round(rss_4x / rss_1x, 3),
            }
        )
        print(json.dumps(lines[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cc = lines[0]
    parallel = [line for line in lines if line["name"].endswith("proc")]
    waterz = [line for line in lines if line["name"].startswith("waterz")]
    summary = {
        "name": "bench_decode",
        "shape": list(shape),
        "channels": len(offsets),
        "seconds_ours": cc["seconds_ours"],
        "seconds_baseline": cc["seconds_baseline"],
        "ratio": cc["ratio"],
        "workers": args.workers,
        "seconds_ours_workers": [line["seconds_ours"] for line in parallel],
        "ratio_workers": [line["ratio"] for line in parallel],
        "waterz_ratio": waterz[0]["ratio"] if waterz else None,
        "waterz_sweep_ratio": waterz[1]["ratio"] if waterz else None,
        "peak_rss_mb": lines[-1]["peak_rss_mb_4x"],
        "peak_rss_ratio_4x_vs_1x": lines[-1]["ratio"],
        "bench_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
