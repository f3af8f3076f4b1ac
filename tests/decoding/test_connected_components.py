"""Connected components: the edge convention, uint8 thresholding, and blockwise == whole-volume exactly."""

from __future__ import annotations

import numpy as np
import pytest
from decoding_helpers import NN_OFFSETS, decode_settings, read_segmentation, same_partition, write_affinities

from pipeline_lib.decoding import decode_volume
from pipeline_lib.decoding.connected_components import (
    affinity_graph,
    connected_components,
    edges_above,
    graph_from_edges,
    label_graph,
    uint8_cutoff,
)
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.io.affinities import as_float
from pipeline_lib.targets import affinities


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_edge_stored_at_v_joins_v_and_v_minus_one(axis: int) -> None:
    # Along `axis`: edges stored at positions 1 and 3 are on, the one at 2 is off. With the
    # the affinity convention (docs/conventions.md) (value at v is the edge v — v-1) this gives {0,1} {2,3}; reading
    # the edge one voxel off (v — v+1) would give {0} {1,2} {3}.
    shape = [1, 1, 1]
    shape[axis] = 4
    affs = np.zeros((3, *shape), dtype=np.float32)
    line = np.moveaxis(affs[axis], axis, 0)
    line[[1, 3]] = 1.0
    labels = np.moveaxis(connected_components(affs, NN_OFFSETS, 0.5), axis, 0).ravel()
    assert labels[0] == labels[1] != labels[2] == labels[3]


def test_label_graph_equals_scipy_components_in_c_ordered_zyx_labels() -> None:
    # An asymmetric shape catches a transposed result; scipy's sparse-graph components over the
    # explicit edge list are the independent reference (edge at v joins v and v - e_a).
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    shape = (3, 4, 5)
    rng = np.random.default_rng(3)
    edges = [rng.random(shape) < 0.3 for _ in range(3)]
    labels, n = label_graph(graph_from_edges(edges))
    assert labels.shape == shape and labels.flags.c_contiguous
    index = np.arange(np.prod(shape)).reshape(shape)
    rows, cols = [], []
    for axis, edge in enumerate(edges):
        upper = [slice(None)] * 3
        lower = [slice(None)] * 3
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        on = edge[tuple(upper)]
        rows.append(index[tuple(upper)][on])
        cols.append(index[tuple(lower)][on])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(index.size, index.size))
    n_reference, reference = scipy_components(graph, directed=False)
    assert n == n_reference
    assert same_partition(labels.ravel(), reference + 1)  # cc3d labels every voxel, from 1


def test_channel_order_follows_offsets_not_position() -> None:
    offsets = [[0, 0, -1], [-1, 0, 0], [0, -1, 0]]  # x channel first
    affs = np.zeros((3, 1, 1, 4), dtype=np.float32)
    affs[0, 0, 0, [1, 3]] = 1.0
    labels = connected_components(affs, offsets, 0.5).ravel()
    assert labels[0] == labels[1] != labels[2] == labels[3]


def test_recovers_touching_labels_from_target_affinities() -> None:
    labels = np.array([[[1, 1, 2, 2, 2, 3]]], dtype=np.uint32).repeat(3, axis=1).repeat(2, axis=0)
    affs, _ = affinities(labels, NN_OFFSETS)
    assert same_partition(connected_components(affs, NN_OFFSETS, 0.5), labels)


def _random_affinities(shape: tuple[int, int, int], seed: int, p_on: float) -> np.ndarray:
    """uint8-representable affinities: edges on with probability ``p_on`` (percolating clusters)."""
    rng = np.random.default_rng(seed)
    on = rng.random((3, *shape)) < p_on
    return np.where(on, 200, 40).astype(np.uint8)


def _snake_labels(shape: tuple[int, int, int]) -> np.ndarray:
    """Objects that cross faces and corners, and one that leaves block 0 and re-enters it."""
    labels = np.zeros(shape, dtype=np.uint32)
    labels[1, 1:7, 2] = 1  # leaves the first 8x8x8 block along y ...
    labels[1, 9, 2:6] = 1  # ... runs in the next block ...
    labels[1, 1:10, 5] = 1  # ... and comes back into block 0
    labels[1, 7:9, 2] = 1
    labels[7:9, 7:9, 7:9] = 2  # a 2x2x2 cube around a block corner
    labels[3, 3:20, 10] = 3  # a long rod crossing several y faces
    labels[10:14, 12:14, 3:5] = 4  # inside one block
    return labels


@pytest.mark.parametrize("seed", [0, 1])
def test_blockwise_equals_whole_volume_on_percolating_graph(tmp_path, seed: int) -> None:
    shape = (19, 21, 18)  # not a multiple of the block: clipped border blocks
    stored = _random_affinities(shape, seed, p_on=0.45)
    write_affinities(tmp_path / "affs.zarr", stored.astype(np.float32) / 255, NN_OFFSETS, (8, 8, 8), dtype="uint8")
    decoder = decoder_settings({"method": "connected_components", "threshold": 0.5})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((8, 8, 8)))
    blockwise = read_segmentation(tmp_path / "seg.zarr")
    whole = decode_array(as_float(stored), NN_OFFSETS, decoder)
    assert same_partition(blockwise, whole)
    scores = evaluate_arrays(blockwise, whole)
    assert scores.voi == pytest.approx(0.0, abs=1e-12) and scores.arand == 0.0
    sizes = np.bincount(whole.ravel())
    assert sizes[1:].max() > 8**3, "the test graph should have objects spanning several blocks"


def test_blockwise_equals_whole_volume_on_snakes_and_corners(tmp_path) -> None:
    labels = _snake_labels((16, 24, 16))
    affs, _ = affinities(labels, NN_OFFSETS)
    write_affinities(tmp_path / "affs.zarr", affs, NN_OFFSETS, (8, 8, 8))
    decoder = decoder_settings({"method": "connected_components"})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((8, 8, 8)))
    blockwise = read_segmentation(tmp_path / "seg.zarr")
    assert same_partition(blockwise, labels)


@pytest.mark.parametrize("mode", ["background", "merge"])
def test_min_size_uses_global_sizes(tmp_path, mode: str) -> None:
    labels = np.zeros((8, 16, 8), dtype=np.uint32)
    labels[2, 5:11, 2] = 1  # 6 voxels: 3 in each of two blocks (block shape 8)
    labels[5, 1:3, 5] = 2  # 2 voxels, alone: removed in both modes
    labels[5, 12:15, 2:6] = 3  # 12 voxels, kept
    labels[5, 10:12, 2] = 4  # 2 voxels touching 3 (but no edge to it): background, or merged into 3
    affs, _ = affinities(labels, NN_OFFSETS)
    write_affinities(tmp_path / "affs.zarr", affs, NN_OFFSETS, (8, 8, 8))
    decoder = decoder_settings({"method": "connected_components", "min_size": 5, "small_objects": mode})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((8, 8, 8)))
    seg = read_segmentation(tmp_path / "seg.zarr")
    expected = labels.copy()
    expected[labels == 2] = 0
    expected[labels == 4] = 3 if mode == "merge" else 0
    assert same_partition(seg, expected)


def test_voxels_without_edges_are_background() -> None:
    labels = np.array([[[1, 1, 0, 2, 0, 0, 3, 3]]], dtype=np.uint32)
    affs, _ = affinities(labels, NN_OFFSETS)
    seg = connected_components(affs, NN_OFFSETS, 0.5)[0, 0]
    assert (seg[[2, 3, 4, 5]] == 0).all() and seg[0] == seg[1] != seg[6] == seg[7] != 0


@pytest.mark.parametrize("mode", ["background", "merge"])
def test_blockwise_small_objects_equal_whole_volume(tmp_path, mode: str) -> None:
    shape = (17, 20, 16)
    stored = _random_affinities(shape, 3, p_on=0.4)
    write_affinities(tmp_path / "affs.zarr", stored.astype(np.float32) / 255, NN_OFFSETS, (8, 8, 8), dtype="uint8")
    decoder = decoder_settings({"method": "connected_components", "min_size": 6, "small_objects": mode})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((8, 8, 8)))
    whole = decode_array(as_float(stored), NN_OFFSETS, decoder)
    assert (whole == 0).any()
    assert same_partition(read_segmentation(tmp_path / "seg.zarr"), whole)


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3, 0.5, 127 / 255, 128 / 255, 0.5 + 1e-9, 0.7, 0.99, 1.0, -0.1])
def test_uint8_thresholding_equals_the_float_comparison(threshold: float) -> None:
    stored = np.arange(256, dtype=np.uint8)
    assert np.array_equal(edges_above(stored, threshold), as_float(stored) > threshold)
    cutoff = uint8_cutoff(threshold)
    assert np.array_equal(stored.astype(np.int64) >= cutoff, as_float(stored) > threshold)


def test_uint8_and_float_affinities_give_the_same_graph() -> None:
    stored = _random_affinities((6, 7, 8), 4, p_on=0.5)
    stored[0, 0, 0, :] = np.arange(8) + 124  # values around the 0.5 cutoff
    assert np.array_equal(affinity_graph(stored, NN_OFFSETS, 0.5), affinity_graph(as_float(stored), NN_OFFSETS, 0.5))


def test_voxels_joined_only_across_block_faces(tmp_path) -> None:
    # Every edge crosses a face between 4x4x4 blocks: inside each block all voxels are alone.
    shape = (8, 8, 8)
    affs = np.zeros((3, *shape), dtype=np.float32)
    affs[0, 4, 1, 1] = 1.0  # (3,1,1) — (4,1,1) across the z face
    affs[1, 2, 4, 2] = 1.0  # (2,3,2) — (2,4,2) across the y face
    affs[2, 6, 6, 4] = 1.0  # (6,6,3) — (6,6,4) across the x face ...
    affs[1, 6, 4, 3] = 1.0  # (6,3,3) — (6,4,3) across the y face of other blocks
    affs[0, 1, 0, 3] = 1.0  # (0,0,3) — (1,0,3) inside block 0 (no face)
    write_affinities(tmp_path / "affs.zarr", affs, NN_OFFSETS, (4, 4, 4))
    decoder = decoder_settings({"method": "connected_components"})
    decode_volume(tmp_path / "affs.zarr", tmp_path / "seg.zarr", decoder, decode_settings((4, 4, 4)))
    blockwise = read_segmentation(tmp_path / "seg.zarr")
    whole = decode_array(affs, NN_OFFSETS, decoder)
    assert same_partition(blockwise, whole)
    assert int(whole.max()) == 5 and int((whole != 0).sum()) == 10
    assert not (tmp_path / "seg.zarr" / "block_labels").exists() and not (tmp_path / "seg.zarr" / "blocks").exists()
