"""Each decoder recovers known labels from their (noisy) affinities; library conventions."""

from __future__ import annotations

import numpy as np
import pytest
from decoding_helpers import LONG_OFFSETS, NN_OFFSETS, same_partition

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding.agglomeration import mutex_watershed, waterz_segmentations
from pipeline_lib.decoding.registry import decode_array, decoder_settings
from pipeline_lib.decoding.watershed import mean_affinity, seeds
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
    assert abs(scores.n_seg_objects - scores.n_gt_objects) <= 2


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


def test_seeds_separate_touching_objects() -> None:
    labels = np.zeros((3, 6, 8), dtype=np.uint32)
    labels[..., :4], labels[..., 4:] = 1, 2  # touching, no boundary voxel between them
    affs, _ = affinities(labels, NN_OFFSETS)
    assert same_partition(seeds(affs, NN_OFFSETS, 0.5, 1), labels)


def test_mutex_watershed_links_v_and_v_plus_offset() -> None:
    # Every edge repulsive except the x-edge stored at v=(0,0,3): with offset (0,0,-1) it is
    # the edge 3 — 2 (docs/conventions.md), so exactly voxels 2 and 3 merge; the rest stay label 0.
    affs = np.zeros((3, 1, 1, 6), dtype=np.float32)
    affs[2, 0, 0, 3] = 1.0
    labels = mutex_watershed(affs, NN_OFFSETS, 0.5, 0.0, (1, 1, 1), False)[0, 0]
    assert labels[2] == labels[3] != 0
    assert (labels[[0, 1, 4, 5]] == 0).all()


def test_mutex_watershed_long_range_offsets_keep_objects_apart() -> None:
    labels = np.zeros((1, 1, 12), dtype=np.uint32)
    labels[..., :6], labels[..., 6:] = 1, 2
    offsets = [*NN_OFFSETS, [0, 0, -3]]
    affs, _ = affinities(labels, offsets)
    affs[2, 0, 0, 6] = 0.9  # a leaky nearest-neighbour edge between the objects ...
    affs[3] = np.where(affs[3] > 0, 0.95, 0.0)  # ... outvoted by repulsive long-range edges
    affs[3, 0, 0, :3] = 0.5  # undefined edges (outside the array) are neutral
    seg = mutex_watershed(affs, offsets, 0.5, 0.0, (1, 1, 1), False)
    assert same_partition(seg, labels)


def test_waterz_thresholds_fresh_arrays_and_quiet(capfd: pytest.CaptureFixture[str], cells: np.ndarray) -> None:
    affs = _noisy(cells, NN_OFFSETS, 0.1)
    results = list(waterz_segmentations(affs, NN_OFFSETS, [0.3, 0.9, 0.6], "aff50_his256", 0.0001, 0.9999))
    assert [t for t, _ in results] == [0.9, 0.6, 0.3]  # highest first: most split first
    counts = [len(np.unique(seg)) for _, seg in results]
    assert counts[0] >= counts[1] >= counts[2]
    assert results[0][1] is not results[1][1] and not np.shares_memory(results[0][1], results[1][1])
    assert capfd.readouterr().out == ""


def test_merge_function_mean_runs(cells: np.ndarray) -> None:
    entry = {"method": "waterz", "params": {"merge_function": "mean"}}
    seg = decode_array(_noisy(cells, NN_OFFSETS, 0.0), NN_OFFSETS, decoder_settings(entry))
    assert evaluate_arrays(seg, cells).arand < 0.01
