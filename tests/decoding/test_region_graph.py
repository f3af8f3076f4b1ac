"""Region graph tables: hand-computed contacts, and blockwise (blocks + faces) equal to whole."""

from __future__ import annotations

import numpy as np

from pipeline_lib.decoding.region_graph import (
    EdgeTable,
    aggregate,
    as_uint8,
    block_edges,
    combine,
    face_depth,
    face_edges,
    nearest_split,
)

NN = [[-1, 0, 0], [0, -1, 0], [0, 0, -1]]
LONG = [*NN, [0, -3, 0], [0, 0, -2]]


def as_dict(table: EdgeTable) -> dict[tuple[int, int], tuple[int, int, dict[int, int]]]:
    """Edge → (count, total, histogram) for order-free comparison."""
    out = {}
    for i, (u, v) in enumerate(zip(table.u.tolist(), table.v.tolist(), strict=True)):
        rows = table.hist_edge == i
        hist = dict(zip(table.hist_bin[rows].tolist(), table.hist_count[rows].tolist(), strict=True))
        out[(u, v)] = (int(table.count[i]), int(table.total[i]), hist)
    return out


def test_contacts_follow_the_offset_convention() -> None:
    labels = np.array([[[1, 1, 2, 2, 3]]], dtype=np.uint32)  # x: the edge v - v-e_x is stored at v
    stored = np.zeros((3, 1, 1, 5), dtype=np.uint8)
    stored[2, 0, 0] = [9, 10, 20, 30, 40]
    nearest, long_range = block_edges(labels, stored, NN)
    assert as_dict(nearest) == {(1, 2): (1, 20, {20: 1}), (2, 3): (1, 40, {40: 1})}
    assert len(long_range) == 0
    assert nearest.mean().tolist() == [20 / 255, 40 / 255]


def test_background_and_equal_labels_make_no_edge() -> None:
    labels = np.array([[[0, 1, 1, 0, 2]]], dtype=np.uint32)
    nearest, _ = block_edges(labels, np.full((3, 1, 1, 5), 7, np.uint8), NN)
    assert len(nearest) == 0


def test_aggregate_sums_contacts_and_histograms() -> None:
    table = aggregate(np.array([2, 1, 1, 3]), np.array([1, 2, 2, 1]), np.array([5, 5, 7, 1], np.uint8), True)
    assert as_dict(table) == {(1, 2): (3, 17, {5: 2, 7: 1}), (1, 3): (1, 1, {1: 1})}


def test_combine_sums_equal_edges_and_drops_joined_nodes() -> None:
    a = aggregate(np.array([1]), np.array([2]), np.array([10], np.uint8), True)
    b = aggregate(np.array([1, 1]), np.array([2, 3]), np.array([20, 30], np.uint8), True)
    joined = combine([a, b], [(a.u, a.v), (np.array([5, 5]), np.array([7, 7]))])
    assert as_dict(joined) == {(1, 2): (1, 10, {10: 1}), (5, 7): (2, 50, {20: 1, 30: 1})}
    merged = combine([a, b], [(a.u, a.v), (b.u, b.v)])
    assert as_dict(merged) == {(1, 2): (2, 30, {10: 1, 20: 1}), (1, 3): (1, 30, {30: 1})}
    same = combine([a], [(np.array([4]), np.array([4]))])
    assert len(same) == 0 and len(same.hist_edge) == 0


def test_blocks_and_faces_count_every_contact_once() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=(6, 10, 8)).astype(np.uint32)
    stored = rng.integers(0, 256, size=(len(LONG), *labels.shape)).astype(np.uint8)
    whole_nearest, whole_long = block_edges(labels, stored, LONG)
    for axis in range(3):
        split = labels.shape[axis] // 2
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, split), slice(split, None)
        ids = [labels[tuple(lower)].astype(np.int64), labels[tuple(upper)].astype(np.int64) + 10]
        ids[1][labels[tuple(upper)] == 0] = 0  # the upper block's ids 11..15, background 0
        parts = [block_edges(ids[0], stored[(slice(None), *lower)], LONG)]
        parts.append(block_edges(ids[1], stored[(slice(None), *upper)], LONG))
        depth = face_depth(LONG, axis)
        first = [slice(None)] * 3
        last = [slice(None)] * 3
        first[axis], last[axis] = slice(0, depth), slice(split - depth, split)
        parts.append(
            face_edges(
                ids[1][tuple(first)],
                stored[(slice(None), *upper)][(slice(None), *first)],
                ids[0][tuple(last)],
                LONG,
                axis,
            )
        )
        back = np.concatenate([np.arange(11), np.arange(1, 6)])  # ids 11..15 back to 1..5
        for k, whole in ((0, whole_nearest), (1, whole_long)):
            tables = [p[k] for p in parts]
            total = combine(tables, [(back[t.u], back[t.v]) for t in tables])
            assert as_dict(total) == as_dict(whole), (axis, k)


def test_a_thinner_lower_block_gives_its_planes() -> None:
    labels = np.array([[[1]], [[2]], [[3]]], dtype=np.uint32)  # z: 1 | 2 3, long offset -2 along z
    offsets = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [-2, 0, 0]]
    stored = np.arange(4 * 3, dtype=np.uint8).reshape(4, 3, 1, 1)
    nearest, long_range = face_edges(labels[1:], stored[:, 1:], labels[:1], offsets, 0)
    assert as_dict(nearest) == {(1, 2): (1, 1, {1: 1})}  # channel 0 at z = 1
    assert as_dict(long_range) == {(1, 3): (1, 11, {})}


def test_float_affinities_round_to_uint8_and_channels_split() -> None:
    assert as_uint8(np.array([0.0, 0.5, 1.0, 1.2], np.float32)).tolist() == [0, 128, 255, 255]
    assert nearest_split(LONG) == ([0, 1, 2], [3, 4])
    assert face_depth(LONG, 1) == 3 and face_depth(NN, 0) == 1


def test_node_ids_beyond_the_key_range_are_ranked_first() -> None:
    big = 2**40  # (u * width + v) * 256 would overflow int64
    table = aggregate(np.array([big + 5, big]), np.array([big, 7]), np.array([3, 9], np.uint8), True)
    assert as_dict(table) == {(7, big): (1, 9, {9: 1}), (big, big + 5): (1, 3, {3: 1})}
    both = combine([table, table], [(table.u, table.v), (table.u, table.v)])
    assert as_dict(both) == {(7, big): (2, 18, {9: 2}), (big, big + 5): (2, 6, {3: 2})}
    assert len(combine([table], [(table.u, table.u)])) == 0  # every pair joined into one node
