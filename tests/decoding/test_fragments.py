"""Fragments: an over-segmentation that never joins two objects, every voxel covered."""

from __future__ import annotations

import numpy as np

from pipeline_lib.decoding.fragments import fragments, stored_mean
from pipeline_lib.targets import affinities

NN = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]


def objects() -> np.ndarray:
    """Three slabs along x: 1 and 2 touch directly, a membrane (0) separates 2 and 3."""
    labels = np.zeros((12, 16, 40), dtype=np.uint32)
    labels[:, :, :14] = 1
    labels[:, :, 14:26] = 2
    labels[:, :, 27:] = 3
    return labels


def test_fragments_split_touching_objects_and_cover_every_voxel() -> None:
    labels = objects()
    rng = np.random.default_rng(0)
    aff = np.clip(affinities(labels, NN)[0] + rng.normal(0, 0.1, (3, *labels.shape)), 0, 1).astype(np.float32)
    result = fragments(aff, NN, 0.5, 5)
    assert result.min() == 1 and result.dtype == np.uint32
    assert np.array_equal(np.unique(result), np.arange(1, result.max() + 1))
    inside = labels != 0
    pairs = np.unique(np.stack([result[inside], labels[inside]], axis=1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs)  # no fragment holds voxels of two objects


def test_a_region_without_a_distance_maximum_is_seeded_whole() -> None:
    labels = np.zeros((10, 30, 30), dtype=np.uint32)
    labels[:, :, :20] = 1  # wide: its maxima overshadow the thin neighbour's within the filter
    labels[:, :, 21:23] = 2
    aff = affinities(labels, NN)[0]
    result = fragments(aff, NN, 0.5, 10)
    assert not set(result[labels == 1].tolist()) & set(result[labels == 2].tolist())


def test_no_boundary_gives_one_fragment_and_mean_uses_stored_channels() -> None:
    assert np.array_equal(fragments(np.zeros((3, 2, 3, 4), np.float32), NN), np.ones((2, 3, 4), np.uint32))
    aff = np.stack([np.full((2, 2, 2), v, np.float32) for v in (0.3, 0.6, 0.9)])
    assert np.allclose(stored_mean(aff[[2, 0, 1]], [NN[2], NN[0], NN[1]]), 0.6)
