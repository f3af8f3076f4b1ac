"""Hierarchical merging and mutex watershed on small hand-built region graphs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.decoding.graph_agglomeration import (
    RegionGraph,
    cut,
    cuts,
    initial_scores,
    merge_history,
    mutex_segments,
    quantile_of,
    seeded_segments,
)
from pipeline_lib.decoding.region_graph import aggregate, empty_table


def graph_of(contacts: list[tuple[int, int, list[int]]], n: int, long_range=None) -> RegionGraph:  # type: ignore[no-untyped-def]
    """Nodes 0..n-1; ``contacts``: (u, v, uint8 values of their contacts)."""
    u = np.array([c[0] for c in contacts for _ in c[2]])
    v = np.array([c[1] for c in contacts for _ in c[2]])
    values = np.array([x for c in contacts for x in c[2]], dtype=np.uint8)
    nearest = aggregate(u, v, values, histogram=True)
    far = empty_table()
    if long_range:
        lu = np.array([c[0] for c in long_range for _ in c[2]])
        lv = np.array([c[1] for c in long_range for _ in c[2]])
        lvalues = np.array([x for c in long_range for x in c[2]], dtype=np.uint8)
        far = aggregate(lu, lv, lvalues, histogram=False)
    return RegionGraph(np.ones(n, dtype=np.int64), nearest, far)


def waterz_quantile(values: list[int], q: int) -> float:
    """waterz's HistogramQuantileProvider: the first bin whose cumulative count reaches q*n//100 + 1."""
    ordered = sorted(values)
    return ordered[q * len(values) // 100] / 255


@pytest.mark.parametrize("q", [10, 50, 75, 95])
def test_initial_quantile_scores_follow_waterz(q: int) -> None:
    rng = np.random.default_rng(q)
    contacts = [(i, i + 1, rng.integers(0, 256, size=int(rng.integers(1, 30))).tolist()) for i in range(20)]
    scores = initial_scores(graph_of(contacts, 21).nearest, q)
    assert scores.tolist() == pytest.approx([waterz_quantile(c[2], q) for c in contacts])


def test_merging_combines_statistics_and_records_the_history() -> None:
    # 0-1 high; 1-2 and 0-2 both medium: after merging 0 and 1 their edges to 2 combine.
    contacts = [(0, 1, [250]), (1, 2, [200, 200]), (0, 2, [50]), (2, 3, [10])]
    history = merge_history(graph_of(contacts, 4), "mean")
    assert history.score.tolist() == pytest.approx([250 / 255, 450 / 3 / 255, 10 / 255])
    assert [sorted(p) for p in zip(history.a.tolist(), history.b.tolist(), strict=True)][0] == [0, 1]
    median = merge_history(graph_of(contacts, 4), "aff50_his256")
    assert median.score.tolist() == pytest.approx([250 / 255, 200 / 255, 10 / 255])  # median of {200, 200, 50}


def test_cut_applies_the_merges_before_the_first_at_or_below_the_threshold() -> None:
    contacts = [(0, 1, [250]), (1, 2, [200, 200]), (0, 2, [50]), (2, 3, [10])]
    history = merge_history(graph_of(contacts, 4), "mean")
    segments = cuts(history, [0.99, 0.9, 0.5, 0.0])
    assert [len(set(s.tolist())) for s in segments.values()] == [4, 3, 2, 1]
    assert segments[0.5][0] == segments[0.5][1] == segments[0.5][2] != segments[0.5][3]
    assert cut(history, 150 / 255).tolist() == segments[0.9].tolist()  # 150/255 is not above itself


def test_stop_ends_merging_early_and_scores_never_rise() -> None:
    contacts = [(0, 1, [250]), (1, 2, [200, 200]), (0, 2, [50]), (2, 3, [10])]
    assert len(merge_history(graph_of(contacts, 4), "mean", stop=0.5).score) == 2
    rng = np.random.default_rng(0)
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, 60, size=(300, 2)) if a < b}
    random = [(a, b, rng.integers(0, 256, size=int(rng.integers(1, 9))).tolist()) for a, b in sorted(pairs)]
    for function in ("mean", "aff50_his256", "aff90_his256"):
        history = merge_history(graph_of(random, 60), function)
        # a combined edge scores between its parts, both at most the merge's: cutting is by prefix
        assert np.all(np.diff(history.score) <= 1e-12), function
        assert len(history.score) == 60 - len(set(cut(history, 0.0).tolist()))


def test_unknown_merge_function_is_rejected() -> None:
    assert quantile_of("aff85_his256") == 85 and quantile_of("mean") is None
    with pytest.raises(ValueError, match="median"):
        quantile_of("median")


def test_mutex_separates_what_a_strong_long_range_edge_repels() -> None:
    contacts = [(0, 1, [230]), (1, 2, [220]), (3, 4, [40])]
    far = [(0, 2, [0] * 40)]  # weight -0.5 (40 contacts): before 1-2 (+0.36, 1 contact)
    graph = graph_of(contacts, 5, far)
    segments = mutex_segments(graph, 0.5, 0.0)
    assert segments[0] == segments[1] != segments[2]
    assert segments[3] != segments[4] and len(set(segments.tolist())) == 4
    assert len(set(mutex_segments(graph, 0.5, 0.9).tolist())) == 3  # bias: the long edge attracts
    assert mutex_segments(graph_of([], 3), 0.5, 0.0).tolist() == [0, 1, 2]


def test_mutex_lets_edges_of_few_contacts_wait_for_well_measured_ones() -> None:
    # 0-1: one contact at 1.0 (+0.5); 1-2: 100 contacts at 0.8 (+0.3); 0-2: long range at 0.1 (-0.4).
    # By |weight| alone 0-1 would merge first; weighted by contacts, 0-2's mutex and 1-2 come first.
    graph = graph_of([(0, 1, [255]), (1, 2, [204] * 100)], 3, [(0, 2, [25] * 100)])
    segments = mutex_segments(graph, 0.5, 0.0)
    assert segments[1] == segments[2] != segments[0]


def test_seeded_flood_joins_unseeded_fragments_to_the_seed_of_their_best_path() -> None:
    """A chain 0-1-2-3-4-5: seeds {0, 1} (joined by a seed contact) and {4}; 2, 3 and 5 hold no
    seed. 2 goes to 1 (200 > 150), 3 to 4 (180 > 150), 5 to 4; the 150 edge joins two seeds: cut.
    A seed group below seed_min_size is flooded like any fragment."""
    graph = graph_of([(0, 1, [250]), (1, 2, [200]), (2, 3, [150]), (3, 4, [180]), (4, 5, [20])], 6)
    seed_voxels = np.array([6, 5, 0, 0, 12, 0])
    seed_edges = aggregate(np.array([0]), np.array([1]), np.array([1], dtype=np.uint8), histogram=False)
    segment = seeded_segments(graph, seed_voxels, seed_edges, seed_min_size=10)
    assert segment.tolist() == [0, 0, 0, 1, 1, 1]
    no_link = aggregate(np.array([0]), np.array([1]), np.array([0], dtype=np.uint8), histogram=False)
    # {0} and {1} are now two seed groups of 6 and 5 seed voxels, below 10: dropped and flooded by {4}
    assert seeded_segments(graph, seed_voxels, no_link, seed_min_size=10).tolist() == [0] * 6
    # ... but seeds of their own at seed_min_size 5: the 250 edge joins two seeds, so 0 stays alone
    assert seeded_segments(graph, seed_voxels, no_link, seed_min_size=5).tolist() == [0, 1, 1, 2, 2, 2]
    # no seed at all: everything the graph connects is one object
    assert seeded_segments(graph, np.zeros(6, dtype=np.int64), no_link, seed_min_size=5).tolist() == [0] * 6
