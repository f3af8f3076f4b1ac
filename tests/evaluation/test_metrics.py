"""Tests for pipeline_lib.evaluation.metrics (VOI, adapted Rand, contingency)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import waterz
import zarr
from skimage.metrics import variation_of_information

from pipeline_lib.evaluation import (
    Contingency,
    SegmentationScores,
    evaluate_arrays,
    evaluate_volumes,
)


def _u64(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.uint64))


def _naive_scores(seg: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Independent pure-Python reference from the textbook definitions."""
    pairs = Counter((int(g), int(s)) for g, s in zip(gt.ravel(), seg.ravel(), strict=True) if g != 0)
    t, sz = Counter(), Counter()
    for (g, s), c in pairs.items():
        t[g] += c
        sz[s] += c
    total = sum(pairs.values())
    h_joint = -sum(c / total * math.log2(c / total) for c in pairs.values())
    h_gt = -sum(c / total * math.log2(c / total) for c in t.values())
    h_seg = -sum(c / total * math.log2(c / total) for c in sz.values())
    sum_n2 = sum(c * c for c in pairs.values())
    p = sum_n2 / sum(c * c for c in sz.values())
    r = sum_n2 / sum(c * c for c in t.values())
    return {
        "voi_split": h_joint - h_gt,
        "voi_merge": h_joint - h_seg,
        "arand_precision": p,
        "arand_recall": r,
        "arand": 1 - 2 * p * r / (p + r),
        "n_gt_objects": len(t),
        "n_seg_objects": len(sz),
    }


def _random_pair(rng: np.random.Generator, shape, n_gt=6, n_seg=9, noise=0.3):
    """Correlated random volumes: gt with zeros, seg a noisy function of gt."""
    gt = rng.integers(0, n_gt, size=shape).astype(np.uint64)
    seg = (gt * 7 + rng.integers(0, 2, size=shape)) % n_seg
    noisy = rng.random(shape) < noise
    seg[noisy] = rng.integers(0, n_seg, size=int(noisy.sum()))
    return _u64(seg), _u64(gt)


def _assert_scores_close(a: SegmentationScores, b: SegmentationScores) -> None:
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys()
    for k in da:
        assert da[k] == pytest.approx(db[k], rel=1e-12, abs=1e-12), k


# ---------------------------------------------------------------- hand-computed


def test_identical_segmentation_scores_zero():
    gt = _u64([[[1, 1, 2, 2], [3, 3, 4, 4]]])
    seg = gt * 10 + 5  # a relabelling is still identical as a partition
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == 0.0 and s.voi_merge == 0.0
    assert s.arand == pytest.approx(0.0, abs=1e-15)
    assert s.arand_precision == 1.0 and s.arand_recall == 1.0
    assert (s.n_gt_objects, s.n_seg_objects, s.n_voxels) == (4, 4, 8)


def test_pure_split():
    gt = _u64(np.ones((1, 2, 4)))
    seg = _u64([[[1, 1, 1, 1], [2, 2, 2, 2]]])
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == pytest.approx(1.0)
    assert s.voi_merge == pytest.approx(0.0, abs=1e-15)
    # sum n^2 = 32, sum s^2 = 32, sum t^2 = 64
    assert s.arand_precision == pytest.approx(1.0)
    assert s.arand_recall == pytest.approx(0.5)
    assert s.arand == pytest.approx(1 / 3)


def test_pure_merge():
    gt = _u64([[[1, 1, 1, 1], [2, 2, 2, 2]]])
    seg = _u64(np.full((1, 2, 4), 9))
    s = evaluate_arrays(seg, gt)
    assert s.voi_merge == pytest.approx(1.0)
    assert s.voi_split == pytest.approx(0.0, abs=1e-15)
    assert s.arand_precision == pytest.approx(0.5)
    assert s.arand_recall == pytest.approx(1.0)
    assert s.arand == pytest.approx(1 / 3)


def test_gt_zero_voxels_are_ignored():
    gt = _u64([[[0, 0, 1, 1, 2, 2, 0]]])
    seg = _u64([[[5, 6, 1, 1, 2, 2, 1]]])  # disagrees only where gt == 0
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == 0.0 and s.voi_merge == 0.0
    assert s.arand == pytest.approx(0.0, abs=1e-15)
    assert (s.n_gt_objects, s.n_seg_objects, s.n_voxels) == (2, 2, 4)


def test_hand_computed_small_table():
    # table n_ij: gt1 -> {seg1: 2, seg2: 1}, gt2 -> {seg2: 1, seg3: 2}
    gt = _u64([[[1, 1, 1, 2, 2, 2]]])
    seg = _u64([[[1, 1, 2, 2, 3, 3]]])
    s = evaluate_arrays(seg, gt)
    # sum n^2 = 10, sum s^2 = 12, sum t^2 = 18
    assert s.arand_precision == pytest.approx(10 / 12)
    assert s.arand_recall == pytest.approx(10 / 18)
    assert s.arand == pytest.approx(1 / 3)  # F = 2/3
    # each gt object splits 2:1 -> H = log2(3) - 2/3 bits
    assert s.voi_split == pytest.approx(math.log2(3) - 2 / 3)
    # seg2 holds 1:1 of two gt objects (weight 2/6) -> 1/3 bit
    assert s.voi_merge == pytest.approx(1 / 3)
    assert s.voi == pytest.approx(s.voi_split + s.voi_merge)


def test_seg_zero_is_an_ordinary_segment():
    gt = _u64([[[1, 1, 2, 2]]])
    seg = _u64(np.zeros((1, 1, 4)))
    s = evaluate_arrays(seg, gt)
    assert s.voi_merge == pytest.approx(1.0)
    assert s.n_seg_objects == 1
    assert s.arand_precision == pytest.approx(0.5)


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        evaluate_arrays(_u64(np.ones((2, 2, 2))), _u64(np.zeros((2, 2, 2))))
    with pytest.raises(ValueError, match="empty"):
        Contingency().scores()
    with pytest.raises(ValueError, match="shape"):
        evaluate_arrays(_u64(np.ones((2, 2, 2))), _u64(np.ones((2, 2, 3))))
    with pytest.raises(TypeError):
        evaluate_arrays(np.ones((2, 2, 2)), _u64(np.ones((2, 2, 2))))
    with pytest.raises(ValueError, match="negative"):
        evaluate_arrays(-np.ones((2, 2, 2), np.int32), _u64(np.ones((2, 2, 2))))


def test_to_dict_and_dtypes_and_huge_labels():
    rng = np.random.default_rng(1)
    seg, gt = _random_pair(rng, (5, 6, 7))
    ref = evaluate_arrays(seg, gt)
    d = ref.to_dict()
    assert set(d) >= {"voi_split", "voi_merge", "arand", "n_gt_objects"}
    # label values / dtypes must not matter, only the partition
    big = np.uint64(2**64 - 1000)
    _assert_scores_close(evaluate_arrays(seg + big, gt * big), ref)
    _assert_scores_close(evaluate_arrays(seg.astype(np.int16), gt.astype(np.uint8)), ref)


@pytest.mark.parametrize("seed", range(4))
def test_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    seg, gt = _random_pair(rng, (6, 7, 8), n_gt=5 + seed, n_seg=4 + 3 * seed)
    s = evaluate_arrays(seg, gt).to_dict()
    for k, v in _naive_scores(seg, gt).items():
        assert s[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_many_distinct_labels_sparse_path_matches_naive():
    # ~all pairs distinct -> the sort-based (non-bincount) grouping path
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 10**6, size=(10, 10, 30)).astype(np.uint64)
    seg = rng.integers(0, 10**6, size=gt.shape).astype(np.uint64)
    gt[:, :, :10] = 3  # and some structure
    s = evaluate_arrays(seg, gt).to_dict()
    for k, v in _naive_scores(seg, gt).items():
        assert s[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


# ------------------------------------------------------- external references


def test_skimage_voi_order_is_split_merge():
    gt = _u64(np.ones((1, 2, 4)))
    seg = _u64([[[1, 1, 1, 1], [2, 2, 2, 2]]])  # pure split
    np.testing.assert_allclose(variation_of_information(gt, seg, ignore_labels=(0,)), [1.0, 0.0])


@pytest.mark.parametrize("seed", range(5))
def test_voi_matches_skimage(seed):
    rng = np.random.default_rng(100 + seed)
    seg, gt = _random_pair(rng, (8, 9, 10), n_gt=3 + seed, n_seg=5 + seed)
    # skimage's ignore_labels only drops gt voxels; seg 0 stays a label as here
    assert (seg == 0).any() and (gt == 0).any()
    split, merge = variation_of_information(gt, seg, ignore_labels=(0,))
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == pytest.approx(split, rel=1e-9, abs=1e-12)
    assert s.voi_merge == pytest.approx(merge, rel=1e-9, abs=1e-12)


def test_waterz_conventions_on_pure_split(capfd):
    gt = _u64(np.ones((1, 2, 4)))
    seg = _u64([[[1, 1, 1, 1], [2, 2, 2, 2]]])
    w = waterz.evaluate(seg, gt)  # argument order: (segmentation, gt)
    capfd.readouterr()  # waterz prints its scores
    assert w["voi_split"] == pytest.approx(1.0) and w["voi_merge"] == 0.0
    assert w["rand_split"] == pytest.approx(0.5)  # = our recall
    assert w["rand_merge"] == pytest.approx(1.0)  # = our precision


@pytest.mark.parametrize("seed", range(4))
def test_matches_waterz(seed, capfd):
    rng = np.random.default_rng(200 + seed)
    seg, gt = _random_pair(rng, (7, 11, 13), n_gt=4 + seed, n_seg=6 + 2 * seed)
    w = waterz.evaluate(seg, gt)
    capfd.readouterr()
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == pytest.approx(w["voi_split"], rel=1e-9, abs=1e-12)
    assert s.voi_merge == pytest.approx(w["voi_merge"], rel=1e-9, abs=1e-12)
    assert s.arand_recall == pytest.approx(w["rand_split"], rel=1e-12)
    assert s.arand_precision == pytest.approx(w["rand_merge"], rel=1e-12)
    p, r = w["rand_merge"], w["rand_split"]
    assert s.arand == pytest.approx(1 - 2 * p * r / (p + r), rel=1e-12)


def test_megavoxel_uint64_matches_waterz(capfd):
    rng = np.random.default_rng(3)
    shape = (64, 128, 128)  # 2**20 voxels, large uint64 label values
    gt_ids = rng.integers(1, 2**63, size=400, dtype=np.uint64)
    gt = gt_ids[rng.integers(0, 400, size=shape)]
    gt[:8] = 0
    seg = _u64(gt ^ (rng.random(shape) < 0.2).astype(np.uint64))
    w = waterz.evaluate(seg, gt)
    capfd.readouterr()
    s = evaluate_arrays(seg, gt)
    assert s.voi_split == pytest.approx(w["voi_split"], rel=1e-9)
    assert s.voi_merge == pytest.approx(w["voi_merge"], rel=1e-9)
    assert s.arand_recall == pytest.approx(w["rand_split"], rel=1e-12)
    assert s.arand_precision == pytest.approx(w["rand_merge"], rel=1e-12)


# ------------------------------------------------------------------ chunkwise


@pytest.mark.parametrize("block", [(4, 5, 6), (13, 17, 19), (1, 100, 3)])
def test_evaluate_volumes_numpy_matches_arrays(block):
    rng = np.random.default_rng(11)
    seg, gt = _random_pair(rng, (13, 17, 19))
    _assert_scores_close(evaluate_volumes(seg, gt, block), evaluate_arrays(seg, gt))


def test_evaluate_volumes_zarr_matches_arrays(tmp_path):
    rng = np.random.default_rng(12)
    seg, gt = _random_pair(rng, (13, 17, 19), n_gt=8, n_seg=12)
    arrays = []
    for name, data in (("seg", seg), ("gt", gt)):
        z = zarr.create_array(
            store=tmp_path / f"{name}.zarr",
            shape=data.shape,
            chunks=(5, 5, 5),
            dtype="uint64",
        )
        z[...] = data
        arrays.append(z)
    cont = Contingency()
    got = evaluate_volumes(arrays[0], arrays[1], (4, 7, 6), contingency=cont)
    _assert_scores_close(got, evaluate_arrays(seg, gt))
    assert cont.n_voxels == int((gt != 0).sum())


def test_evaluate_volumes_bad_block_shape():
    a = _u64(np.ones((4, 4, 4)))
    with pytest.raises(ValueError):
        evaluate_volumes(a, a, (2, 2))
    with pytest.raises(ValueError):
        evaluate_volumes(a, a, (2, 0, 2))


def test_consolidation_across_chunks(monkeypatch):
    monkeypatch.setattr(Contingency, "_MIN_PENDING", 3)  # consolidate often
    rng = np.random.default_rng(13)
    seg, gt = _random_pair(rng, (12, 10, 10), n_gt=20, n_seg=30)
    cont = Contingency()
    for z in range(12):
        cont.add(seg[z], gt[z])
    g, s, c = cont.table()
    ref = Counter((int(a), int(b)) for a, b in zip(gt.ravel(), seg.ravel(), strict=True) if a)
    assert dict(zip(zip(g.tolist(), s.tolist(), strict=True), c.tolist(), strict=True)) == dict(ref)
    _assert_scores_close(cont.scores(), evaluate_arrays(seg, gt))


# -------------------------------------------------------- merges and splits


def test_largest_merges_and_splits():
    gt = [1] * 4 + [2] * 2 + [3] * 3 + [4] + [5] * 5 + [0] * 3
    seg = [7] * 4 + [7] * 2 + [8, 8, 9] + [9] + [11, 11, 11, 12, 12] + [9, 7, 7]
    cont = Contingency()
    cont.add(_u64(seg), _u64(gt))
    assert cont.largest_merges(5) == [
        {
            "seg_id": 7,
            "n_voxels": 6,
            "n_gt_objects": 2,
            "n_error_voxels": 2,
            "overlaps": [{"gt_id": 1, "n_voxels": 4}, {"gt_id": 2, "n_voxels": 2}],
        },
        {
            "seg_id": 9,
            "n_voxels": 2,
            "n_gt_objects": 2,
            "n_error_voxels": 1,
            "overlaps": [{"gt_id": 3, "n_voxels": 1}, {"gt_id": 4, "n_voxels": 1}],
        },
    ]
    assert cont.largest_splits(5) == [
        {
            "gt_id": 5,
            "n_voxels": 5,
            "n_seg_objects": 2,
            "n_error_voxels": 2,
            "overlaps": [{"seg_id": 11, "n_voxels": 3}, {"seg_id": 12, "n_voxels": 2}],
        },
        {
            "gt_id": 3,
            "n_voxels": 3,
            "n_seg_objects": 2,
            "n_error_voxels": 1,
            "overlaps": [{"seg_id": 8, "n_voxels": 2}, {"seg_id": 9, "n_voxels": 1}],
        },
    ]
    top = cont.largest_merges(1, max_overlaps=1)
    assert [m["seg_id"] for m in top] == [7]
    assert top[0]["overlaps"] == [{"gt_id": 1, "n_voxels": 4}]
    assert cont.largest_splits(0) == []


def test_no_merges_or_splits_when_identical():
    gt = _u64([[[1, 1, 2, 2, 0]]])
    cont = Contingency()
    cont.add(gt, gt)
    assert cont.largest_merges(3) == [] and cont.largest_splits(3) == []
