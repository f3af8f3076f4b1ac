"""Helpers for decoding tests: affinity stores built from known labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import fastremap
import numpy as np

from pipeline_lib.config import DecodeSettings
from pipeline_lib.io.affinities import AFFINITIES
from pipeline_lib.io.volumes import create_array, open_array

NN_OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LONG_OFFSETS = [*NN_OFFSETS, [-3, 0, 0], [0, -3, 0], [0, 0, -3]]


def write_affinities(
    path: Path, affinities: np.ndarray, offsets: Sequence[Sequence[int]], chunk: Sequence[int], dtype: str = "float16"
) -> Path:
    """An affinity store as prediction writes it (``uint8`` 0–255 or ``float16``)."""
    stored = np.round(affinities * 255).astype(np.uint8) if dtype == "uint8" else affinities.astype(np.float16)
    array = create_array(
        path,
        AFFINITIES,
        stored.shape,
        stored.dtype,
        (len(offsets), *chunk),
        (8.0, 8.0, 8.0),
        attrs={"offsets": [list(o) for o in offsets], "encoding": dtype},
    )
    array[...] = stored
    return path


def read_segmentation(path: Path) -> np.ndarray:
    return np.asarray(open_array(path, "segmentation")[...])


def decode_settings(block: Sequence[int], chunk: Sequence[int] | None = None) -> DecodeSettings:
    z, y, x = block
    cz, cy, cx = chunk or block
    return DecodeSettings(block_shape=(z, y, x), chunk_shape=(cz, cy, cx), max_jobs=1)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are the same labelling up to a bijection of ids (0 ↔ 0)."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], axis=1).astype(np.uint64), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def renumber(labels: np.ndarray) -> np.ndarray:
    return fastremap.renumber(labels, preserve_zero=True, in_place=False)[0]
