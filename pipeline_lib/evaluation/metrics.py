"""Segmentation metrics: variation of information and adapted Rand error.

Conventions (CREMI / SNEMI3D, docs/conventions.md):

* Voxels whose ground-truth label is 0 are dropped before anything is counted.
* Segmentation label 0 is an ordinary segment (unlike
  ``skimage.metrics.adapted_rand_error``, which treats it specially). A
  segmentation that leaves ground-truth voxels unlabelled (0) is therefore
  scored as if those voxels were merged into one segment.
* The contingency table ``n_ij`` counts voxels with ground-truth label ``i`` and
  segmentation label ``j`` (over voxels with ``i != 0``). ``t_i = sum_j n_ij``
  are ground-truth object sizes, ``s_j = sum_i n_ij`` segment sizes, ``N`` the
  number of counted voxels.
* VOI in bits: ``voi_split = H(seg | gt)``, ``voi_merge = H(gt | seg)``.
* Adapted Rand: ``precision = sum n_ij^2 / sum s_j^2``,
  ``recall = sum n_ij^2 / sum t_i^2``, ``arand = 1 - 2PR / (P + R)``.
  (waterz's ``rand_merge`` is our precision, its ``rand_split`` our recall.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol

import fastremap
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.geometry import BlockGrid

__all__ = [
    "Contingency",
    "SegmentationScores",
    "evaluate_arrays",
    "evaluate_volumes",
]

_U64 = NDArray[np.uint64]
_I64 = NDArray[np.int64]


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of a segmentation against ground truth (gt label 0 ignored).

    ``n_gt_objects`` counts distinct nonzero gt labels. ``n_seg_objects``
    counts distinct segmentation labels on voxels where gt != 0, including
    label 0 if it occurs there; segments lying wholly outside the gt mask are
    not counted.
    """

    voi_split: float  # bits, H(seg | gt)
    voi_merge: float  # bits, H(gt | seg)
    arand: float  # 1 - F
    arand_precision: float  # sum n_ij^2 / sum s_j^2
    arand_recall: float  # sum n_ij^2 / sum t_i^2
    n_gt_objects: int
    n_seg_objects: int
    n_voxels: int  # voxels counted (gt != 0)

    # The columns of a score table, in order: every field plus the total ``voi``.
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "voi_split",
        "voi_merge",
        "voi",
        "arand",
        "arand_precision",
        "arand_recall",
        "n_seg_objects",
        "n_gt_objects",
        "n_voxels",
    )

    @property
    def voi(self) -> float:
        """Total variation of information, split + merge (bits)."""
        return self.voi_split + self.voi_merge

    def to_dict(self) -> dict[str, float | int]:
        """Plain-Python dict of all fields (JSON serialisable)."""
        return dict(asdict(self))

    def row(self) -> dict[str, float | int]:
        """The table row: :data:`COLUMNS` in order, ``voi`` included."""
        values = {**self.to_dict(), "voi": self.voi}
        return {column: values[column] for column in self.COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentationScores:
        """The scores recorded in ``data`` (an evaluation JSON; other keys are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def _compact(values: NDArray[np.uint64], hashed: bool) -> tuple[NDArray[np.integer], _U64]:
    """Relabel ``values`` to 0..k-1; return (relabelled, ids) with ids[new] = old.

    ``hashed`` uses fastremap's hash map (fast for voxel arrays with few distinct
    labels); otherwise np.unique (sorting; better when most values are distinct,
    as in contingency-table columns).
    """
    if not hashed:
        ids, inverse = np.unique(values, return_inverse=True)
        return inverse.ravel(), ids
    relabelled, mapping = fastremap.renumber(values, start=0, preserve_zero=False)
    k = len(mapping)
    ids = np.empty(k, dtype=np.uint64)
    pos = np.fromiter(mapping.values(), dtype=np.int64, count=k)
    ids[pos] = np.fromiter(mapping.keys(), dtype=np.uint64, count=k)
    return relabelled, ids


def _group_pairs(a: _U64, b: _U64, weights: _I64 | None = None) -> tuple[_U64, _U64, _I64]:
    """Distinct (a, b) pairs with their counts (or summed ``weights``).

    Without weights ``a``, ``b`` are voxel labels; with weights, table columns.
    """
    if a.size == 0:
        empty = np.empty(0, dtype=np.uint64)
        return empty, empty.copy(), np.empty(0, dtype=np.int64)
    ra, ida = _compact(a, hashed=weights is None)
    rb, idb = _compact(b, hashed=weights is None)
    na, nb = ida.size, idb.size
    # na * nb <= a.size**2, so the int64 pair key cannot overflow
    key = ra.astype(np.int64) * nb + rb.astype(np.int64)
    if weights is None and na * nb <= max(4 * key.size, 1 << 16):
        dense = np.bincount(key, minlength=na * nb)
        ukey = np.flatnonzero(dense)
        counts = dense[ukey].astype(np.int64)
    else:
        order = np.argsort(key)
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ukey = key[starts]
        w = np.ones(key.size, np.int64) if weights is None else weights[order]
        counts = np.add.reduceat(w, starts).astype(np.int64)
    return ida[ukey // nb], idb[ukey % nb], counts


def _as_labels(x: Any, name: str) -> NDArray[np.uint64]:
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise ValueError(f"{name} contains negative labels")
    return arr.astype(np.uint64, copy=False).ravel()


def _xlog2x_sum(values: NDArray[Any]) -> float:
    x = np.asarray(values, dtype=np.float64)
    x = x[x > 0]
    return float(np.sum(x * np.log2(x)))


class Contingency:
    """Contingency table of (gt, seg) label pairs, accumulated chunk by chunk.

    Memory is bounded by the number of distinct pairs (plus one chunk's
    worth of pending pairs), not by the number of voxels.
    """

    _MIN_PENDING = 1 << 20

    def __init__(self) -> None:
        empty = np.empty(0, dtype=np.uint64)
        self._table: tuple[_U64, _U64, _I64] = (empty, empty, np.empty(0, np.int64))
        self._pending: list[tuple[_U64, _U64, _I64]] = []
        self._pending_size = 0
        self.n_voxels = 0

    def add(self, seg: NDArray[np.integer], gt: NDArray[np.integer]) -> None:
        """Count one chunk. ``seg`` and ``gt`` must have the same shape and
        non-negative integer labels (any integer dtype, up to uint64). Voxels
        with ``gt == 0`` are ignored; seg 0 is counted as an ordinary label."""
        seg_a, gt_a = np.asarray(seg), np.asarray(gt)
        if seg_a.shape != gt_a.shape:
            raise ValueError(f"shape mismatch: seg {seg_a.shape} vs gt {gt_a.shape}")
        s, g = _as_labels(seg_a, "seg"), _as_labels(gt_a, "gt")
        mask = g != 0
        if not mask.all():
            s, g = s[mask], g[mask]
        if g.size == 0:
            return
        self.n_voxels += int(g.size)
        chunk = _group_pairs(g, s)
        self._pending.append(chunk)
        self._pending_size += chunk[2].size
        if self._pending_size > max(self._table[2].size, self._MIN_PENDING):
            self._consolidate()

    def _consolidate(self) -> None:
        if not self._pending:
            return
        if self._table[2].size == 0 and len(self._pending) == 1:
            self._table = self._pending[0]
            self._pending, self._pending_size = [], 0
            return
        parts = [self._table, *self._pending]
        g = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts])
        c = np.concatenate([p[2] for p in parts])
        self._table = _group_pairs(g, s, c)
        self._pending, self._pending_size = [], 0

    def table(self) -> tuple[_U64, _U64, _I64]:
        """(gt_ids, seg_ids, counts): one entry per nonzero table cell n_ij."""
        self._consolidate()
        return self._table

    def scores(self) -> SegmentationScores:
        """VOI and adapted Rand scores; ValueError if no gt voxel was counted."""
        g, s, c = self.table()
        if c.size == 0:
            raise ValueError("ground truth is empty: no voxel with gt label != 0")
        n = c.astype(np.float64)
        total = float(n.sum())
        rg, gt_ids = _compact(g, hashed=False)
        rs, seg_ids = _compact(s, hashed=False)
        t = np.bincount(rg, weights=n, minlength=gt_ids.size)
        sz = np.bincount(rs, weights=n, minlength=seg_ids.size)
        h_n = _xlog2x_sum(n)
        voi_split = max(0.0, (_xlog2x_sum(t) - h_n) / total)
        voi_merge = max(0.0, (_xlog2x_sum(sz) - h_n) / total)
        sum_n2 = float(np.sum(n * n))
        precision = sum_n2 / float(np.sum(sz * sz))
        recall = sum_n2 / float(np.sum(t * t))
        f = 2.0 * precision * recall / (precision + recall)
        return SegmentationScores(
            voi_split=voi_split,
            voi_merge=voi_merge,
            arand=1.0 - f,
            arand_precision=precision,
            arand_recall=recall,
            n_gt_objects=int(gt_ids.size),
            n_seg_objects=int(seg_ids.size),
            n_voxels=self.n_voxels,
        )

    def largest_merges(self, n: int, max_overlaps: int = 10) -> list[dict]:
        """Segments overlapping >= 2 gt objects, worst first.

        Each dict: ``seg_id``, ``n_voxels`` (segment size inside the gt mask),
        ``n_gt_objects``, ``n_error_voxels`` (voxels outside the segment's
        largest gt overlap; the ranking key, ties by id) and ``overlaps``: up to
        ``max_overlaps`` ``{"gt_id", "n_voxels"}`` sorted by count, descending.
        Segment 0 is reported like any other segment.
        """
        g, s, c = self.table()
        return _worst(s, g, c, n, max_overlaps, "seg_id", "gt_id", "n_gt_objects")

    def largest_splits(self, n: int, max_overlaps: int = 10) -> list[dict]:
        """Gt objects overlapping >= 2 segments, worst first.

        Each dict: ``gt_id``, ``n_voxels``, ``n_seg_objects``,
        ``n_error_voxels`` (voxels outside the largest overlapping segment)
        and ``overlaps``: up to ``max_overlaps`` ``{"seg_id", "n_voxels"}``.
        """
        g, s, c = self.table()
        return _worst(g, s, c, n, max_overlaps, "gt_id", "seg_id", "n_seg_objects")


def _worst(
    a: _U64,
    b: _U64,
    c: _I64,
    n: int,
    max_overlaps: int,
    a_key: str,
    b_key: str,
    count_key: str,
) -> list[dict]:
    if c.size == 0 or n <= 0:
        return []
    order = np.lexsort((b, -c, a))  # by a, then count descending, then b
    a, b, c = a[order], b[order], c[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    ends = np.r_[starts[1:], a.size]
    sizes = np.add.reduceat(c, starts)
    errors = sizes - c[starts]
    cand = np.flatnonzero(ends - starts > 1)
    ranked = cand[np.lexsort((a[starts[cand]], -errors[cand]))][:n]
    out = []
    for k in ranked:
        lo, hi = int(starts[k]), int(ends[k])
        out.append(
            {
                a_key: int(a[lo]),
                "n_voxels": int(sizes[k]),
                count_key: hi - lo,
                "n_error_voxels": int(errors[k]),
                "overlaps": [{b_key: int(b[i]), "n_voxels": int(c[i])} for i in range(lo, min(hi, lo + max_overlaps))],
            }
        )
    return out


def evaluate_arrays(seg: NDArray[np.integer], gt: NDArray[np.integer]) -> SegmentationScores:
    """Score in-memory label arrays of equal shape (see module conventions)."""
    cont = Contingency()
    cont.add(seg, gt)
    return cont.scores()


class _Sliceable(Protocol):
    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


def evaluate_volumes(
    seg: _Sliceable,
    gt: _Sliceable,
    block_shape: tuple[int, ...],
    contingency: Contingency | None = None,
) -> SegmentationScores:
    """Score two volumes block by block.

    ``seg`` and ``gt`` are anything with ``.shape`` that returns arrays for
    tuples of slices (numpy arrays, zarr arrays, h5py datasets). Blocks of
    ``block_shape`` tile the volume, the last ones clipped at the border, so
    memory is one block of each plus the contingency table. Pass
    ``contingency`` to keep the table (e.g. for ``largest_merges``).
    """
    shape = tuple(int(x) for x in seg.shape)
    if tuple(gt.shape) != shape:
        raise ValueError(f"shape mismatch: seg {shape} vs gt {tuple(gt.shape)}")
    grid = BlockGrid(shape, tuple(int(b) for b in block_shape))  # rejects a bad block shape
    cont = Contingency() if contingency is None else contingency
    for _, block in grid.blocks():
        cont.add(np.asarray(seg[block.slices]), np.asarray(gt[block.slices]))
    return cont.scores()
