"""Training targets computed from instance labels.

Affinity convention (docs/conventions.md): channel ``k`` has offset ``o_k = (dz, dy, dx)``
with entries ≤ 0; the value at voxel ``v`` describes the edge between ``v`` and ``v + o_k``.
It is 1 when both voxels carry the same non-zero label, else 0, and it is *undefined*
(mask 0) where ``v + o_k`` lies outside the volume. For labels ``[1, 1, 2]`` along x and
offset ``(0, 0, -1)`` the affinity is ``[0, 1, 0]`` with mask ``[0, 1, 1]``.

Other targets (one channel each, all in [0, 1], valid everywhere):

- ``boundary``: 1 at label 0 and at every voxel with a face neighbour (inside the volume)
  of a different label; for ``[1, 1, 2]`` along x it is ``[0, 1, 1]``.
- ``foreground``: ``labels > 0``.
- ``distance``: ``tanh(d / scale)`` with ``d`` the in-section (y–x) Euclidean distance from a
  non-boundary voxel to the nearest boundary voxel (0 on the boundary), so each instance
  peaks in its centre. Sections are treated separately because EM is anisotropic.
- ``lsd`` (10 channels): the local shape descriptors of Sheridan et al. (2022), computed by
  ``lsd_lite.get_lsds``: for each voxel, statistics of its own object within a Gaussian
  window of ``sigma`` voxels: mean offset to the window's centre of mass (3), variances (3),
  Pearson correlations (3) and mass (1), each scaled to [0, 1]; 0 on label 0. An auxiliary
  target (Sheridan et al. report sharper affinities with it; on the gala crops it did not
  help at equal CPU time: docs/results/gala.md).

:func:`compute_targets` stacks several of them (multi-task), in the configured order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

TARGET_TYPES = ("affinity", "boundary", "foreground", "distance", "lsd")
LSD_CHANNELS = 10  # 3 mean offsets, 3 variances, 3 Pearson correlations, 1 mass


def _edge_slices(offset: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices (at v, at v + o) covering every voxel v whose partner v + o is inside."""
    here, there = [], []
    for o in offset:
        if o > 0:
            raise ValueError(f"affinity offsets must not have positive entries, got {tuple(offset)}")
        here.append(slice(-o, None))
        there.append(slice(None, o if o else None))
    return tuple(here), tuple(there)


def affinities(
    labels: NDArray[np.integer], offsets: Sequence[Sequence[int]]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Affinities ``(len(offsets), *labels.shape)`` and their validity mask, both float32."""
    shape = (len(offsets), *labels.shape)
    aff = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.float32)
    for k, offset in enumerate(offsets):
        here, there = _edge_slices(offset)
        a, b = labels[here], labels[there]
        at: tuple[Any, ...] = (k, *here)
        aff[at] = (a == b) & (a != 0)
        mask[at] = 1.0
    return aff, mask


def max_offset(offsets: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """The largest absolute offset per axis: the context an edge reaches back."""
    z, y, x = (max(abs(int(o[axis])) for o in offsets) for axis in range(3))
    return (z, y, x)


def boundary_map(labels: NDArray[np.integer]) -> NDArray[np.float32]:
    """1 where a voxel is label 0 or touches (6-neighbourhood) a different label, else 0."""
    edge = labels == 0
    for axis in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        differs = labels[tuple(lo)] != labels[tuple(hi)]
        edge[tuple(lo)] |= differs
        edge[tuple(hi)] |= differs
    return edge.astype(np.float32)


def foreground(labels: NDArray[np.integer]) -> NDArray[np.float32]:
    """1 where ``labels > 0``."""
    return (labels > 0).astype(np.float32)


def distance_map(labels: NDArray[np.integer], scale: float) -> NDArray[np.float32]:
    """``tanh(d / scale)``, ``d`` the in-section distance to the nearest boundary voxel."""
    interior = boundary_map(labels) == 0
    out = np.zeros(labels.shape, dtype=np.float32)
    for z in range(labels.shape[0]):
        section = interior[z]
        if not section.any():
            continue
        if section.all():  # no boundary in this section: distance beyond the patch
            out[z] = 1.0
            continue
        out[z] = np.tanh(ndimage.distance_transform_edt(section) / scale)
    return out


def local_shape_descriptors(labels: NDArray[np.integer], sigma: float, downsample: int) -> NDArray[np.float32]:
    """The 10 local shape descriptors ``(10, z, y, x)`` in [0, 1] (0 where ``labels == 0``).

    ``labels``' shape must be divisible by ``downsample`` (the descriptors are computed on the
    labels subsampled by it, then repeated back). Each object is computed by
    ``lsd_lite.get_lsds`` in its bounding box grown by the Gaussian's reach (3 sigma, snapped to
    the ``downsample`` grid), where its own filters are non-zero: equal to ``get_lsds`` on the
    whole array to float precision on small arrays (tested), and more precise on large ones
    (lsd-lite's variances are ``E[x²] − E[x]²`` in coordinates of the whole array, which lose
    float32 digits far from its origin). On a 32×64×64 gala patch: 0.85 s against 1.9 s at
    ``downsample`` 1, about the same (0.2–0.4 s) at 2.
    """
    import fastremap
    from lsd_lite import get_lsds  # imported here: only runs with an lsd target pay for it

    if any(s % downsample for s in labels.shape):
        raise ValueError(f"lsd: shape {labels.shape} is not divisible by lsd_downsample {downsample}")
    ids, _ = fastremap.renumber(np.ascontiguousarray(labels), in_place=False)
    out = np.zeros((LSD_CHANNELS, *labels.shape), dtype=np.float32)
    reach = int(np.ceil(3 * sigma / downsample)) * downsample + downsample
    for index, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(
                max(0, (s.start - reach) // downsample * downsample),
                min(n, -(-(s.stop + reach) // downsample) * downsample),
            )
            for s, n in zip(box, labels.shape, strict=True)
        )
        crop = (ids[grown] == index).astype(np.uint8)  # starts and ends on the grid (or at the shape)
        out[(slice(None), *grown)] += get_lsds(crop, sigma=float(sigma), downsample=downsample, labels=[1])
    return out


def target_channels(kind: str, offsets: Sequence[Sequence[int]]) -> int:
    """Number of output channels of a target type."""
    if kind not in TARGET_TYPES:
        raise ValueError(f"unknown target type '{kind}'; available: {', '.join(TARGET_TYPES)}")
    return {"affinity": len(offsets), "lsd": LSD_CHANNELS}.get(kind, 1)


def compute_targets(
    labels: NDArray[np.integer],
    mask: NDArray[np.bool_],
    kinds: Sequence[str],
    offsets: Sequence[Sequence[int]],
    distance_scale: float = 5.0,
    lsd_sigma: float = 5.0,
    lsd_downsample: int = 2,
    ignore_zero: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """All targets stacked ``(channels, z, y, x)`` and their loss weights (0 = ignore).

    ``mask`` (``labels``' shape, True = use) zeroes the weight of excluded voxels in every
    channel; affinities are further masked where the partner voxel is outside the patch. With
    ``ignore_zero`` label 0 is unlabelled: its voxels weigh 0, and so does every affinity edge
    with an end on it.
    """
    targets, weights = [], []
    if ignore_zero:
        mask = mask & (labels != 0)
    valid = mask.astype(np.float32)[None]
    for kind in kinds:
        if kind == "affinity":
            aff, aff_valid = affinities(labels, offsets)
            if ignore_zero:
                both_labelled, _ = affinities(mask.astype(np.int32), offsets)  # 1 where both ends are in the mask
                aff_valid = both_labelled
            targets.append(aff)
            weights.append(aff_valid * valid)
            continue
        if kind == "lsd":
            targets.append(local_shape_descriptors(labels, lsd_sigma, lsd_downsample))
            weights.append(np.repeat(valid, LSD_CHANNELS, axis=0))
            continue
        if kind == "boundary":
            value = boundary_map(labels)
        elif kind == "foreground":
            value = foreground(labels)
        elif kind == "distance":
            value = distance_map(labels, distance_scale)
        else:
            raise ValueError(f"unknown target type '{kind}'; available: {', '.join(TARGET_TYPES)}")
        targets.append(value[None])
        weights.append(valid.copy())
    return np.concatenate(targets), np.concatenate(weights)
