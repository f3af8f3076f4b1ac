"""Each decoder recovers known labels from their (noisy) affinities; library conventions."""

from __future__ import annotations

import numpy as np
import pytest
from decoding_helpers import LONG_OFFSETS, NN_OFFSETS, same_partition

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding.graph_decode import decode_graph, graph_segmentations
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.decoding.watershed import mean_affinity
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.targets import affinities

METHODS = ["connected_components", "seeded_watershed", "waterz", "mutex_watershed"]


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    return generate((24, 48, 48), seed=4, cell_size=14).labels


def _noisy(labels: np.ndarray, offsets: list[list[int]], sigma: float, seed: int = 0) -> np.ndarray:
    affs, _ = affinities(labels, offsets)
    rng = np.random.default_rng(seed)
    return np.clip(affs + rng.normal(0.0, sigma, affs.shape), 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_clean_affinities_recover_labels(cells: np.ndarray, method: str) -> None:
    seg = decode_array(_noisy(cells, LONG_OFFSETS, 0.0), LONG_OFFSETS, decoder_settings({"method": method}))
    scores = evaluate_arrays(seg, cells)
    assert scores.arand < 0.01, scores
    # graph decoders: a few voxels of a small cell that touches a larger one can go to the
    # larger cell's fragment and stay apart (waterz 4, mutex watershed 6 splits of a few voxels)
    assert abs(scores.n_seg_objects - scores.n_gt_objects) <= 6


@pytest.mark.parametrize("method", ["seeded_watershed", "waterz", "mutex_watershed"])
def test_noisy_affinities_recover_labels(cells: np.ndarray, method: str) -> None:
    # N(0, 0.2) noise makes connected components leak; the robust decoders must not
    entry = {"method": method, "min_size": 20, "small_objects": "merge"}
    seg = decode_array(_noisy(cells, LONG_OFFSETS, 0.2), LONG_OFFSETS, decoder_settings(entry))
    assert evaluate_arrays(seg, cells).arand < 0.02


def test_mean_affinity_reads_edges_at_v_and_v_plus_one() -> None:
    affs = np.zeros((3, 1, 1, 4), dtype=np.float32)
    affs[2, 0, 0, 2] = 1.0  # the edge 1 — 2 along x
    mean = mean_affinity(affs, NN_OFFSETS)[0, 0]
    # voxels 1 and 2 touch that edge; 1 and 2 have 2 x-edges plus none in y/z (size 1)
    np.testing.assert_allclose(mean, [0.0, 0.5, 0.5, 0.0])


def test_mutex_watershed_long_range_offsets_keep_objects_apart() -> None:
    labels = np.zeros((6, 12, 25), dtype=np.uint32)
    labels[..., :12], labels[..., 13:] = 1, 2  # a membrane plane at x = 12
    offsets = [*NN_OFFSETS, [0, 0, -3]]
    affs, _ = affinities(labels, offsets)
    affs[2, :, :, 12:14] = 0.7  # a leaky membrane: nearest-neighbour edges across it at 0.7 ...
    decoder = decoder_settings({"method": "mutex_watershed"})
    assert len(np.unique(decode_array(affs[:3], NN_OFFSETS, decoder))) == 1  # ... merge the objects alone
    assert same_partition(decode_array(affs, offsets, decoder)[labels != 0], labels[labels != 0])  # long range wins


def test_one_history_gives_every_threshold(cells: np.ndarray) -> None:
    affs = _noisy(cells, NN_OFFSETS, 0.1)
    decoder = decoder_settings({"method": "waterz"})
    results = dict(graph_segmentations(affs, NN_OFFSETS, decoder, [0.3, 0.9, 0.6]))
    assert sorted(results) == [0.3, 0.6, 0.9]
    counts = [len(np.unique(results[t])) for t in (0.3, 0.6, 0.9)]
    assert counts[0] <= counts[1] <= counts[2]  # higher splits more
    for threshold, labels in results.items():  # a cut of the history is a fresh agglomeration to that threshold
        fresh = decode_graph(affs, NN_OFFSETS, decoder_settings({"method": "waterz", "threshold": threshold}))
        assert same_partition(labels, fresh)


def test_merge_function_mean_runs(cells: np.ndarray) -> None:
    entry = {"method": "waterz", "params": {"merge_function": "mean"}}
    seg = decode_array(_noisy(cells, NN_OFFSETS, 0.0), NN_OFFSETS, decoder_settings(entry))
    assert evaluate_arrays(seg, cells).arand < 0.01
