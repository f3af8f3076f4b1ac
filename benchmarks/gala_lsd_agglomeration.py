"""LSDs in agglomeration: does the distance between fragments' local shape descriptors help the graph decoders?

For a finished ``benchmarks/gala_recipe.py`` run whose model has an ``lsd`` target, the
network's LSD channels are predicted on the validation and test volumes (MONAI sliding
window, the training patch as window), each fragment gets the mean of each LSD channel over
its voxels, and every edge ``(u, v)`` the distance ``d`` = mean absolute difference of the
two fragments' means (0–1). Each contact's affinity is lowered by ``alpha * d``
(:func:`penalised`: the histogram bins of nearest edges shift down, clipped at 0, so
waterz's quantile scores see it; long-range means shift likewise), and waterz and mutex
watershed agglomerate that graph as usual. This is volara's idea (``DistanceAgglom``: edges
scored by the distance of fragment embeddings, combined with affinities), fixed per pair of
fragments: two fragments whose shapes disagree (orientation, width) merge later.

For each ``alpha``, each decoder's threshold is chosen on the validation volume (exact
best, ties to the higher threshold, as the sweep) and the test volume scored there; the
last line chooses ``alpha`` and the decoder by the lowest validation ARAND (ties to the
smaller ``alpha``): ``{"name": "gala_lsd_agglomeration", "chosen": {...}, "rows": [...]}``.
``alpha`` 0 is the pipeline's own decoders on the stored affinities.
Run: ``.venv/bin/python benchmarks/gala_lsd_agglomeration.py --workdir RUN [--alpha 0 0.5 1]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gala_run import THRESHOLDS, FinishedRun
from monai.inferers import sliding_window_inference
from numpy.typing import NDArray

from pipeline_lib import paths
from pipeline_lib.config import DecoderSettings, ModelSettings
from pipeline_lib.decoding.graph_agglomeration import RegionGraph
from pipeline_lib.decoding.graph_decode import segment_nodes, whole_graph
from pipeline_lib.decoding.image_evidence import image_weight
from pipeline_lib.decoding.region_graph import BINS, EdgeTable
from pipeline_lib.decoding.registry import postprocess
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.inference.predictor import load_model
from pipeline_lib.io.volumes import normalize_image, open_array
from pipeline_lib.targets import LSD_CHANNELS, target_channels


def fragment_means(fragments: NDArray[np.integer], channels: NDArray[np.floating]) -> NDArray[np.float64]:
    """``(n, C)``: the mean of each channel over the voxels of fragment ``1..n`` (row ``i`` is fragment ``i + 1``)."""
    n = int(fragments.max(initial=0))
    flat = fragments.ravel()
    counts = np.maximum(np.bincount(flat, minlength=n + 1)[1:], 1)
    sums = [np.bincount(flat, weights=c.ravel(), minlength=n + 1)[1:] for c in channels]
    return np.stack(sums, axis=1) / counts[:, None]


def penalised(table: EdgeTable, distance: NDArray[np.floating], alpha: float) -> EdgeTable:
    """``table`` with every contact of edge ``i`` lowered by ``alpha * distance[i]`` (clipped at 0).

    Edges with histograms shift them (exact per contact; bins that clip onto the same value
    are merged, so the rows stay sorted and unique per edge, as merging expects); the others
    lower their mean.
    """
    shift = np.round(alpha * np.asarray(distance, dtype=np.float64) * (BINS - 1)).astype(np.int64)
    if len(table.hist_edge):
        bins = np.maximum(table.hist_bin.astype(np.int64) - shift[table.hist_edge], 0)
        cells, inverse = np.unique(table.hist_edge * BINS + bins, return_inverse=True)
        counts = np.bincount(inverse, weights=table.hist_count).astype(np.int64)
        edge, bin_ = np.divmod(cells, BINS)
        total = np.bincount(edge, weights=bin_ * counts, minlength=len(table)).astype(np.int64)
        return dataclasses.replace(
            table, total=total, hist_edge=edge.astype(np.int64), hist_bin=bin_.astype(np.uint8), hist_count=counts
        )
    return dataclasses.replace(table, total=np.maximum(table.total - shift * table.count, 0))


def with_distances(graph: RegionGraph, means: NDArray[np.float64], alpha: float) -> RegionGraph:
    """The graph with both edge tables :func:`penalised` by the fragments' mean-feature distance."""

    def distance(t: EdgeTable) -> NDArray[np.float64]:
        return np.abs(means[t.u] - means[t.v]).mean(axis=1)

    return RegionGraph(
        graph.sizes,
        penalised(graph.nearest, distance(graph.nearest), alpha),
        penalised(graph.long_range, distance(graph.long_range), alpha),
    )


def lsd_start(model: ModelSettings) -> int:
    """The first output channel of the model's ``lsd`` target (targets are stacked in config order)."""
    start = 0
    for target in model.targets:
        if target.type == "lsd":
            return start
        start += target_channels(target.type, model.offsets)
    raise ValueError("the model has no lsd target")


def predict_lsds(network: torch.nn.Module, image: NDArray[Any], model: ModelSettings) -> NDArray:
    """The network's LSD channels ``(10, z, y, x)`` in [0, 1] (sigmoid), Gaussian-blended
    windows of the training patch's shape."""
    x = torch.from_numpy(np.ascontiguousarray(normalize_image(image), dtype=np.float32))[None, None]
    with torch.inference_mode():
        logits = sliding_window_inference(x, tuple(model.patch_shape), 4, network, overlap=0.5, mode="gaussian")
    start = lsd_start(model)
    return torch.sigmoid(logits[0, start : start + LSD_CHANNELS]).numpy()


def curves(
    run: FinishedRun, dataset: str, decoders: dict[str, DecoderSettings], alphas: Sequence[float]
) -> dict[tuple[str, float], dict[float, float]]:
    """ARAND per ``(decoder, alpha)`` and threshold on one dataset."""
    affinities, offsets, labels, _ = run.scored(dataset)
    network = load_model(run.workdir / paths.checkpoint(run.model))
    image = np.asarray(open_array(run.workdir / paths.volume(dataset), "image")[...])
    lsds = predict_lsds(network, image, run.settings.models[run.model])
    out = {}
    for name, decoder in decoders.items():
        fragments, graph = whole_graph(affinities, offsets, decoder)
        means = fragment_means(fragments, lsds)
        for alpha in alphas:
            out[name, alpha] = {}
            for t, segment in segment_nodes(with_distances(graph, means, alpha), decoder, THRESHOLDS):
                lookup = np.concatenate([[0], segment + 1]).astype(np.uint64)
                labels_t = postprocess(np.take(lookup, fragments), decoder)
                out[name, alpha][t] = evaluate_arrays(labels_t, labels).arand
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = FinishedRun.load(args.workdir)
    if "lsd" not in [t.type for t in run.settings.models[run.model].targets]:
        raise SystemExit(f"{args.workdir}: model '{run.model}' has no lsd target")
    decoders = {  # the predictions alone: decoders that mix in the image are left out
        n: d
        for n, d in run.settings.decoders.items()
        if d.method in ("waterz", "mutex_watershed") and not image_weight(d)
    }
    on_val = curves(run, run.val, decoders, args.alpha)
    on_test = curves(run, run.test, decoders, args.alpha)
    rows = []
    for (name, alpha), curve in on_val.items():
        t = min(sorted(curve, reverse=True), key=curve.__getitem__)  # exact best, ties to the higher
        test_curve = on_test[name, alpha]
        row = {"decoder": name, "alpha": alpha, "threshold": t, "val_arand": curve[t]}
        row |= {"test_arand": test_curve[t], "test_best_arand": min(test_curve.values())}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    chosen = min(rows, key=lambda r: (r["val_arand"], r["alpha"]))  # unrounded: no ties made by rounding
    print(json.dumps({"name": "gala_lsd_agglomeration", "workdir": str(args.workdir), "chosen": chosen, "rows": rows}))


if __name__ == "__main__":
    main()
