"""Decoder parameter sweep: one decoder over a list of thresholds on a validation volume.

:func:`sweep` decodes the whole affinity volume in memory once per threshold (the graph
decoders compute fragments and region graph once; waterz cuts one merge history at every
threshold), scores each result against the volume's
``labels`` with the CREMI conventions of :mod:`pipeline_lib.evaluation` (ground-truth label
0 ignored), and writes

- ``out_csv``: one row per threshold — ``threshold, voi_split, voi_merge, voi, arand,
  arand_precision, arand_recall, n_seg_objects, n_gt_objects, seconds`` (sorted by threshold);
- ``out_png``: VOI split, merge and total (bits, left axis) and ARAND (right axis) against
  the threshold, the best one marked.

It returns the best row (lowest ``criterion``; ties go to the higher threshold, i.e. the
more conservative, less merged result; with ``tolerance`` every threshold scoring within that
fraction of the lowest counts as tied, :func:`choose`) as a dict, with the grid tried (``thresholds``) and
``grid_edge``: ``"lowest"`` or ``"highest"`` when the best threshold is an end of a grid of
several values (the optimum may lie beyond it: :func:`grid_edge_warning` says which key to
extend; the warning goes to the log, the JSON's ``warning`` and the plot), else ``None``.
Outputs are written atomically.
Memory: the affinities, labels and one or two segmentations of the validation volume.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding.graph_decode import graph_segmentations
from pipeline_lib.decoding.image_evidence import image_weight, with_image_evidence
from pipeline_lib.decoding.registry import decode_array, get_decoder, postprocess
from pipeline_lib.evaluation import SegmentationScores, evaluate_arrays
from pipeline_lib.geometry import Box
from pipeline_lib.io.affinities import AFFINITIES, affinity_offsets, as_float, read_stored
from pipeline_lib.io.volumes import atomic_file, open_array

log = logging.getLogger(__name__)

Criterion = Literal["arand", "voi"]
COLUMNS = ("threshold", *(c for c in SegmentationScores.COLUMNS if c != "n_voxels"), "seconds")


def segmentations(
    affinities: NDArray[np.float32],
    offsets: Sequence[Sequence[int]],
    decoder: DecoderSettings,
    thresholds: Sequence[float],
    image: Any | None = None,
) -> Iterator[tuple[float, NDArray[np.integer]]]:
    """``(threshold, post-processed labels)`` for each threshold, in no particular order.

    ``image``: the volume's image (same shape), needed by a decoder with an ``image_weight``
    (:mod:`~pipeline_lib.decoding.image_evidence`).
    """
    affinities = with_image_evidence(affinities, offsets, decoder, image, Box.from_shape(affinities.shape[1:]))
    if get_decoder(decoder.method).stitch == "graph":  # fragments, graph (and waterz's merge history) once
        for threshold, labels in graph_segmentations(affinities, offsets, decoder, thresholds):
            yield threshold, postprocess(labels, decoder)
        return
    for threshold in sorted(set(thresholds)):
        yield threshold, decode_array(affinities, offsets, dataclasses.replace(decoder, threshold=float(threshold)))


def grid_edge(best: float, thresholds: Sequence[float]) -> str | None:
    """``"lowest"`` or ``"highest"`` when ``best`` is that end of a grid of several thresholds."""
    grid = sorted(set(thresholds))
    if len(grid) < 2:
        return None
    return "lowest" if best == grid[0] else "highest" if best == grid[-1] else None


def grid_edge_warning(method: str, criterion: str, best: dict[str, Any], thresholds: Sequence[float]) -> str | None:
    """One line for a best threshold at an end of its grid (else ``None``), naming the key to extend."""
    edge = grid_edge(best["threshold"], thresholds)
    if edge is None:
        return None
    beyond = "below" if edge == "lowest" else "above"
    return (
        f"{method}: the best {criterion} ({best[criterion]:.4g}) is at threshold {best['threshold']:g}, the {edge} "
        f"of the grid {sorted(set(thresholds))}; the optimum may lie {beyond} it: extend "
        f"evaluate.sweep_thresholds.{method}"
    )


def _plot(
    rows: list[dict[str, Any]], best: dict[str, Any], criterion: str, title: str, path: Path, warning: str | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in rows]
    fig, voi_axis = plt.subplots(figsize=(6, 4))
    for key, style in (("voi_split", "--"), ("voi_merge", ":"), ("voi", "-")):
        voi_axis.plot(t, [r[key] for r in rows], style, marker="o", color="tab:blue", label=key.replace("_", " "))
    voi_axis.set_xlabel("threshold")
    voi_axis.set_ylabel("VOI (bits)", color="tab:blue")
    arand_axis = voi_axis.twinx()
    arand_axis.plot(t, [r["arand"] for r in rows], "-", marker="s", color="tab:red", label="ARAND")
    arand_axis.set_ylabel("adapted Rand error", color="tab:red")
    voi_axis.axvline(best["threshold"], color="grey", alpha=0.5)
    edge_note = "\nat the end of the grid: extend it" if warning else ""
    voi_axis.set_title(f"{title}: best {criterion} at threshold {best['threshold']:g}{edge_note}", fontsize="medium")
    lines = voi_axis.get_legend_handles_labels()[0] + arand_axis.get_legend_handles_labels()[0]
    voi_axis.legend(lines, [str(line.get_label()) for line in lines], loc="upper center", fontsize="small")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def choose(
    rows: Sequence[dict[str, Any]], criterion: Criterion, tolerance: float = 0.0, margin: float = 0.0
) -> dict[str, Any]:
    """The row of the highest threshold whose ``criterion`` is at most ``(1 + tolerance)`` times
    the lowest plus ``margin`` (both 0: the lowest, ties to the higher threshold). ``tolerance``
    is relative to the lowest score, ``margin`` in the criterion's own units."""
    lowest = min(r[criterion] for r in rows)
    tied = [r for r in rows if r[criterion] <= lowest * (1 + tolerance) + margin]
    return max(tied, key=lambda r: r["threshold"])


def sweep(
    affinities_store: str | Path,
    volume_store: str | Path,
    decoder: DecoderSettings,
    thresholds: Sequence[float],
    out_csv: str | Path,
    out_png: str | Path,
    criterion: Criterion = "arand",
    out_json: str | Path | None = None,
    tolerance: float = 0.0,
) -> dict[str, Any]:
    """Decode ``affinities_store`` at each threshold, score against ``volume_store``'s labels
    (and, for a decoder with an ``image_weight``, mix in the evidence of its image).

    Writes the table ``out_csv`` and the plot ``out_png`` (and, if given, the best row as
    JSON ``out_json``); returns the best row: ``{"threshold": ..., "criterion": ..., <scores>}``.
    """
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"thresholds must be a non-empty list of numbers in [0, 1], got {list(thresholds)}")
    stored, all_offsets = open_array(affinities_store, AFFINITIES), affinity_offsets(affinities_store)
    channels = get_decoder(decoder.method).channels(all_offsets)  # only those the decoder reads
    offsets = [all_offsets[c] for c in channels]  # (decode_array then finds all of them used: no copy)
    affinities = as_float(read_stored(stored, Box.from_shape(stored.shape[1:]), channels))
    labels = np.asarray(open_array(volume_store, "labels")[...])
    if labels.shape != affinities.shape[1:]:
        raise ValueError(f"labels shape {labels.shape} differs from affinities shape {affinities.shape[1:]}")
    image = open_array(volume_store, "image") if image_weight(decoder) else None
    if image is not None and tuple(image.shape) != labels.shape:
        raise ValueError(f"{volume_store}: image shape {tuple(image.shape)} differs from its labels' {labels.shape}")
    rows = []
    start = time.perf_counter()
    for threshold, segmentation in segmentations(affinities, offsets, decoder, thresholds, image):
        rows.append({"threshold": threshold, **evaluate_arrays(segmentation, labels).row()})
        rows[-1]["seconds"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
    rows.sort(key=lambda r: r["threshold"])
    best = choose(rows, criterion, tolerance)
    with atomic_file(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    warning = grid_edge_warning(decoder.method, criterion, best, thresholds)
    if warning is not None:
        log.warning(warning)
    _plot(rows, best, criterion, decoder.method, Path(out_png), warning)
    result = {
        "criterion": criterion,
        "tolerance": tolerance,
        "lowest": min(r[criterion] for r in rows),  # the best score of the grid (= the chosen one's without tolerance)
        "method": decoder.method,
        **{k: best[k] for k in COLUMNS},
        "thresholds": sorted(set(thresholds)),
        "grid_edge": grid_edge(best["threshold"], thresholds),
        "warning": warning,
    }
    if out_json is not None:
        with atomic_file(out_json) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


__all__ = ["COLUMNS", "choose", "grid_edge", "grid_edge_warning", "segmentations", "sweep"]


def tuned_decoder(decoder: DecoderSettings, sweep_result: str | Path | None) -> DecoderSettings:
    """``decoder`` with the best threshold of a sweep when it asks for it (``tune_threshold``)."""
    if not decoder.tune_threshold:
        return decoder
    if sweep_result is None:
        raise ValueError("decoder has tune_threshold but no sweep result was given")
    best = json.loads(Path(sweep_result).read_text())
    return dataclasses.replace(decoder, threshold=float(best["threshold"]))
