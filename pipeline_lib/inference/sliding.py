"""Sliding-window inference whose windows lie on one *global* lattice of the whole volume.

MONAI's :func:`~monai.inferers.sliding_window_inference` places windows relative to the
start of the array it is given: along an axis of length ``n`` with window ``w`` and stride
``s = int(w · (1 − overlap))`` (at least 1) the windows start at ``0, s, 2s, …`` and the last
one is shifted back to end at ``n``. Called on a block of a larger volume, it would place
windows differently from a whole-volume call, so a blockwise result would not match.

This module makes the whole-volume window set the reference: the *global* windows are the
ones MONAI uses for the whole volume (:func:`window_starts`). A block is predicted from its
*context* (:func:`window_context`): the union of the global windows that touch the block.
The context starts at a global window start and ends at a global window end, so MONAI,
called on the context, places exactly those global windows (a contiguous run of the
lattice, possibly ending with the shifted last window), in the same order and with the same
importance map. Hence every voxel of the block receives the same windows with the same
weights as in a whole-volume call: blockwise output equals whole-volume output up to
floating-point noise **everywhere in the block**, not only in its interior::

    volume   |0                                                      n|
    windows  [====)   [====)   [====)   [====)   [====)          [====)   (shifted last)
                  [====)   [====)   [====)   [====)   [====)
    block                   |·········block·········|
    context          [=======================================)   = global windows touching it

The price is that windows straddling a block face are computed by both blocks; larger
blocks (relative to the window) waste less. Volumes smaller than a window along an axis are
padded by MONAI (``padding_mode``) identically in both cases, since the context then spans
that whole axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from tqdm import tqdm

from pipeline_lib.geometry import Box

Predictor = Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]
PaddingMode = Literal["constant", "reflect", "replicate"]


def scan_interval(window: int, overlap: float) -> int:
    """MONAI's stride between window starts: ``int(window · (1 − overlap))``, at least 1."""
    return max(int(window * (1 - overlap)), 1)


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Starts of MONAI's windows along one axis of ``length`` voxels (the last one shifted).

    Mirrors ``monai.data.utils.dense_patch_slices``; an axis shorter than the window (which
    MONAI pads) or exactly one window long has the single start 0.
    """
    if length <= window:
        return [0]
    stride = scan_interval(window, overlap)
    starts = []
    for i in range(-(-length // stride)):
        start = i * stride
        starts.append(min(start, length - window))
        if start + window >= length:
            break
    return starts


def window_context(block: Box, volume_shape: Sequence[int], window: Sequence[int], overlap: float) -> Box:
    """The union of the global windows (of the whole volume) that intersect ``block``.

    This is what a block job reads; it lies inside the volume. Its offset from the block is
    the block's halo, which varies with the block's position relative to the lattice.
    """
    begin, end = [], []
    for b, e, n, w in zip(block.begin, block.end, volume_shape, window, strict=True):
        if n <= w:
            begin.append(0)
            end.append(n)
            continue
        touching = [s for s in window_starts(n, w, overlap) if s < e and s + w > b]
        begin.append(touching[0])
        end.append(touching[-1] + w)
    return Box(tuple(begin), tuple(end))


def count_windows(shape: Sequence[int], window: Sequence[int], overlap: float) -> int:
    """How many windows MONAI runs over an array of ``shape`` (for progress bars and costs)."""
    n = 1
    for length, w in zip(shape, window, strict=True):
        n *= len(window_starts(length, w, overlap))
    return n


class _CountingPredictor:
    """Wraps a predictor to advance a progress bar (stderr) by the windows of each call."""

    def __init__(self, predictor: Predictor, total: int, desc: str) -> None:
        self.predictor = predictor
        self.bar = tqdm(total=total, desc=desc, mininterval=2.0, dynamic_ncols=True)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.predictor(windows)
        self.bar.update(len(windows))
        return out


def sliding_window_predict(
    image: np.ndarray | torch.Tensor,
    predictor: Predictor,
    window: Sequence[int],
    overlap: float,
    batch_size: int,
    blend: Literal["gaussian", "constant"] = "gaussian",
    padding_mode: PaddingMode = "reflect",
    device: torch.device | str = "cpu",
    desc: str = "",
) -> tuple[torch.Tensor, ...]:
    """Blend ``predictor``'s outputs over MONAI's windows of a ``(z, y, x)`` float image.

    ``predictor`` maps a batch of windows ``(B, 1, *window)`` to one tensor or a tuple of
    tensors ``(B, C_i, *window)``; the result is the tuple of blended outputs
    ``(C_i, z, y, x)``, float32, moved to the CPU (windows run and are blended on
    ``device``). The image is the context of a block (see :func:`window_context`) or a
    whole volume; windows are placed by MONAI relative to the image start. With ``desc``
    a progress bar over windows is shown.
    """
    tensor = torch.as_tensor(image, dtype=torch.float32)[None, None].to(device)
    counting = None
    if desc:
        counting = _CountingPredictor(predictor, count_windows(tensor.shape[2:], window, overlap), desc)
        predictor = counting
    out = sliding_window_inference(
        tensor,
        roi_size=tuple(window),
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=overlap,
        mode=blend,
        padding_mode=padding_mode,
    )
    if counting is not None:
        counting.bar.close()
    outputs = out if isinstance(out, tuple) else (out,)
    if not all(isinstance(o, torch.Tensor) for o in outputs):
        raise TypeError("predictor must return a tensor or a tuple of tensors")
    return tuple(o[0].float().cpu() for o in outputs)
