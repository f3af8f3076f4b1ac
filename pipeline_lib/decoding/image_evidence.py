"""Image evidence for the graph decoders: predicted affinities mixed with affinities of the image.

Membranes are dark in heavy-metal-stained EM, so the smoothed image intensity is itself a weak
affinity: the *image affinity* of the edge from voxel ``v`` to ``v + o`` (offset ``o``, stored
at ``v`` as the predicted ones) is ``min(s(v), s(v + o))``, where ``s`` is the image as the
network sees it (:func:`~pipeline_lib.io.volumes.normalize_image`: integer types scaled to
[0, 1] by their maximum, floats as they are) and smoothed
by a Gaussian of ``sigma`` voxels (``scipy.ndimage.gaussian_filter``, mode ``nearest``); an
edge whose far end ``v + o`` lies outside the volume takes ``s(v)``. A graph decoder with
``image_weight`` = w > 0 decodes ``(1 - w) · predicted + w · image`` (fragments, region
graph and agglomeration alike); w = 0 leaves the predictions alone.

Why: on the gala crops the network leaves some contacts between neurons uncertain (0.3–0.7)
whose intensity is as dark as the confident ones'; the image term separates them. Measured
in docs/results/gala.md; choose w on validation data like a threshold (one decoder per w).

Blockwise: :func:`image_affinities` reads the image of a box grown by the smoothing radius and
the largest offset (clipped to the volume), so a block's image affinities equal the
whole-volume ones exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from pipeline_lib.config import DecoderSettings
from pipeline_lib.geometry import Box
from pipeline_lib.io.volumes import normalize_image

TRUNCATE = 4.0  # scipy's default: the Gaussian reaches int(TRUNCATE * sigma + 0.5) voxels


def smoothing_radius(sigma: float) -> int:
    """Voxels the Gaussian of ``sigma`` reaches (0 for no smoothing)."""
    return int(TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def image_affinities(image: Any, box: Box, offsets: Sequence[Sequence[int]], sigma: float) -> NDArray[np.float32]:
    """Image affinities ``(len(offsets), *box.shape)`` of the voxels in ``box`` (module docstring).

    ``image``: the whole volume's image array (zarr or numpy, ``(z, y, x)``), read here in the
    box grown by the smoothing radius and the largest offset component, clipped to the volume.
    """
    shape = tuple(int(s) for s in image.shape)
    reach = max((abs(int(c)) for o in offsets for c in o), default=0)
    margin = smoothing_radius(sigma) + reach
    read = box.grow((margin,) * 3).intersect(Box.from_shape(shape))
    smooth = normalize_image(np.asarray(image[read.slices]))
    if sigma > 0:
        smooth = gaussian_filter(smooth, sigma, mode="nearest", truncate=TRUNCATE).astype(np.float32, copy=False)
    core = box.relative_to(read)
    here = smooth[core]
    out = np.empty((len(offsets), *box.shape), dtype=np.float32)
    for k, offset in enumerate(offsets):
        # the far end v + o of every voxel v of the box, clamped into the read region: a far end
        # outside the volume is clamped onto v's own side, where its value is replaced below
        index = []
        outside = np.zeros(box.shape, dtype=bool)
        for axis, (c, slc) in enumerate(zip(offset, core, strict=True)):
            positions = np.arange(slc.start, slc.stop) + int(c)
            beyond = (positions + read.begin[axis] < 0) | (positions + read.begin[axis] >= shape[axis])
            view = [1, 1, 1]
            view[axis] = -1
            outside |= beyond.reshape(view)
            index.append(np.clip(positions, 0, smooth.shape[axis] - 1).reshape(view))
        far = smooth[tuple(index)]
        np.minimum(here, np.where(outside, here, far), out=out[k])
    return out


def image_weight(decoder: DecoderSettings) -> float:
    """The decoder's ``image_weight`` (0 for decoders without one, e.g. connected components)."""
    return float(decoder.params.get("image_weight", 0.0))


def with_image_evidence(
    affinities: NDArray[np.floating],
    offsets: Sequence[Sequence[int]],
    decoder: DecoderSettings,
    image: Any | None,
    box: Box,
) -> NDArray[np.float32]:
    """The affinities ``decoder`` decodes: ``affinities`` (floats of the voxels in ``box``) mixed
    with the image affinities of ``image`` (the whole volume's image) by its ``image_weight``;
    ``affinities`` as float32 when the weight is 0. Raises ``ValueError`` when the decoder has
    a weight but no image is given."""
    weight = image_weight(decoder)
    if weight == 0:
        return np.asarray(affinities, dtype=np.float32)
    if image is None:
        raise ValueError(f"decoder method {decoder.method!r} has image_weight {weight:g} but no image was given")
    return mixed(affinities, image_affinities(image, box, offsets, float(decoder.params["image_sigma"])), weight)


def mixed(predicted: NDArray[np.floating], image: NDArray[np.float32], weight: float) -> NDArray[np.float32]:
    """``(1 - weight) · predicted + weight · image`` as float32 (``predicted`` itself, as float32, when 0)."""
    out = np.asarray(predicted, dtype=np.float32)
    if weight == 0:
        return out
    result: NDArray[np.float32] = ((1.0 - weight) * out + np.float32(weight) * image).astype(np.float32, copy=False)
    return result


__all__ = ["image_affinities", "image_weight", "mixed", "smoothing_radius", "with_image_evidence"]
