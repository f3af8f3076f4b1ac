"""Agglomerative decoders: waterz (hierarchical region merging) and mutex watershed.

Thresholds follow the pipeline's convention for every method: an *affinity* threshold,
higher splits more. waterz merges while its score ``1 - f(affinities)`` is below its own
threshold, so ours is passed as ``1 - threshold``.

waterz reads the three nearest-neighbour channels in the order z, y, x with the convention
of docs/conventions.md (edge ``v — v - e_a`` stored at ``v``); it yields the *same* array updated in
place for every threshold and prints to stdout, so results are copied and its output is
silenced at the file-descriptor level.

mwatershed links ``v`` and ``v + o`` for offset ``o``: the pipeline's offsets (non-positive,
edge ``v — v + o`` stored at ``v``) go in unchanged. Edge weights are ``affinity - threshold``
(positive attracts, negative repels), plus ``long_range_bias`` on channels that are not
nearest-neighbour ones. Voxels never merged with any other come back as label 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Iterator, Sequence

import mwatershed
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.offsets import nearest_neighbour_channels

QUEUE_BINS = 256
_LIBC = ctypes.CDLL(None)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send stdout to /dev/null for the duration: ``sys.stdout`` and file descriptor 1 (C/C++ output)."""
    sys.stdout.flush()
    _LIBC.fflush(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # Python-level prints
            yield
    finally:
        _LIBC.fflush(None)  # C stdio buffers written while silenced go to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def scoring_function(merge_function: str) -> str:
    """waterz's C++ scoring type for a short name: ``mean`` or ``affQQ_his256``."""
    if merge_function == "mean":
        return "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"
    match = re.fullmatch(r"aff(\d+)_his256", merge_function)
    if match is None:
        raise ValueError(f"unknown waterz merge function '{merge_function}' (expected 'mean' or 'affQQ_his256')")
    return f"OneMinus<HistogramQuantileAffinity<RegionGraphType, {int(match[1])}, ScoreValue, 256>>"


def nearest_neighbour_affinities(
    affinities: NDArray[np.floating], offsets: Sequence[Sequence[int]]
) -> NDArray[np.float32]:
    """The z, y, x nearest-neighbour channels as one C-contiguous float32 array."""
    channels = list(nearest_neighbour_channels(offsets))
    return np.ascontiguousarray(affinities[channels], dtype=np.float32)


def waterz_segmentations(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    thresholds: Sequence[float],
    merge_function: str,
    aff_threshold_low: float,
    aff_threshold_high: float,
) -> Iterator[tuple[float, NDArray[np.uint64]]]:
    """``(threshold, labels)`` for each affinity threshold, highest first (one waterz pass).

    Each ``labels`` is a fresh array; only one is computed at a time.
    """
    import waterz  # imported here: it is a heavy import and only this decoder needs it

    ordered = sorted({float(t) for t in thresholds}, reverse=True)
    with _quiet_stdout():
        generator = waterz.agglomerate(
            nearest_neighbour_affinities(affinities, offsets),
            [1.0 - t for t in ordered],
            aff_threshold_low=aff_threshold_low,
            aff_threshold_high=aff_threshold_high,
            scoring_function=scoring_function(merge_function),
            discretize_queue=QUEUE_BINS,
        )
    for threshold in ordered:
        with _quiet_stdout():
            labels = next(generator)
        yield threshold, np.array(labels, dtype=np.uint64, copy=True)


def waterz_segmentation(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    threshold: float,
    merge_function: str,
    aff_threshold_low: float,
    aff_threshold_high: float,
) -> NDArray[np.uint64]:
    """One waterz segmentation at affinity threshold ``threshold``."""
    ((_, labels),) = waterz_segmentations(
        affinities, offsets, [threshold], merge_function, aff_threshold_low, aff_threshold_high
    )
    return labels


def mutex_watershed(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    threshold: float,
    long_range_bias: float,
    long_range_stride: Sequence[int],
    randomized_strides: bool,
) -> NDArray[np.uint64]:
    """Mutex watershed of all channels (see the module docstring for weights and offsets)."""
    short = set(nearest_neighbour_channels(offsets))
    weights = affinities.astype(np.float64) - threshold
    strides = []
    for k in range(len(offsets)):
        if k in short:
            strides.append([1, 1, 1])
        else:
            weights[k] += long_range_bias
            strides.append([int(s) for s in long_range_stride])
    uniform = all(s == [1, 1, 1] for s in strides)
    labels = mwatershed.agglom(
        np.ascontiguousarray(weights),
        [[int(v) for v in o] for o in offsets],
        strides=None if uniform else strides,
        randomized_strides=randomized_strides,
    )
    return np.asarray(labels).astype(np.uint64, copy=False)


__all__ = [
    "mutex_watershed",
    "nearest_neighbour_affinities",
    "scoring_function",
    "waterz_segmentation",
    "waterz_segmentations",
]
