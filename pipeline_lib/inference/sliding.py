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
padded as MONAI pads them (``padding_mode``) identically in both cases, since the context then spans
that whole axis.

:func:`blend_region` blends the windows MONAI would place on the context, with MONAI's
importance map (:func:`~monai.data.utils.compute_importance_map`) and in its order, but
*streams* where MONAI's inferer holds float32 outputs of the whole context: it runs the
windows in order of their z start, accumulates only the region (the block) and only the rows
that windows still to come can touch (one window height), and yields each slab of rows as
soon as it is final. Its memory is the (uint8) context, one window-high slab of accumulators
and what the caller keeps of the slabs. The tests check it against MONAI's
``sliding_window_inference``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map
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


def _pad_like_monai(
    image: np.ndarray, window: Sequence[int], padding_mode: PaddingMode
) -> tuple[np.ndarray, list[int]]:
    """``image`` padded as MONAI pads an input shorter than the window (half before), and the pads before."""
    diffs = [max(w - n, 0) for n, w in zip(image.shape, window, strict=True)]
    if not any(diffs):
        return image, [0] * len(diffs)
    flat = [p for d in reversed(diffs) for p in (d // 2, d - d // 2)]  # F.pad lists the last axis first
    padded = F.pad(torch.from_numpy(np.ascontiguousarray(image))[None, None], flat, mode=padding_mode)
    return padded[0, 0].numpy(), [d // 2 for d in diffs]


def blend_region(
    image: np.ndarray,
    region: Sequence[slice],
    predictor: Predictor,
    window: Sequence[int],
    overlap: float,
    batch_size: int,
    blend: Literal["gaussian", "constant"] = "gaussian",
    padding_mode: PaddingMode = "reflect",
    device: torch.device | str = "cpu",
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    desc: str = "",
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """MONAI's sliding-window blend over ``image``, restricted to ``region``, streamed in z-slabs.

    ``image`` is a ``(z, y, x)`` array (e.g. a block's uint8 context); ``transform`` maps a
    stack of its windows to float32 (default: a cast). ``region`` (slices with explicit
    bounds, inside the image) is the part wanted. Windows are MONAI's windows of the whole
    image (padded like MONAI where an axis is shorter than the window); those that touch
    the region run, in MONAI's order, ``batch_size`` at a time within one z start; outputs are
    weighted by MONAI's importance map and normalised by the summed weights, as
    :func:`~monai.inferers.sliding_window_inference` does. Yields ``(z0, outputs)`` in
    increasing ``z0``: rows ``z0 .. z0 + dz`` of the region (relative to its start), each
    output ``(C_i, dz, *region y–x shape)`` float32 on the CPU; the slabs cover the region once.
    On the CPU a slab is a view of the accumulators: use or copy it before asking for the next.
    """
    transform = transform or (lambda a: a.astype(np.float32))
    region = list(region)
    if any(n < w for n, w in zip(image.shape, window, strict=True)):
        image, pads = _pad_like_monai(transform(image), window, padding_mode)
        transform = lambda a: a  # noqa: E731  (already float32)
        region = [slice(r.start + p, r.stop + p) for r, p in zip(region, pads, strict=True)]
    (z0, z1), (y0, y1), (x0, x1) = [(int(r.start), int(r.stop)) for r in region]
    wz, wy, wx = (int(w) for w in window)
    starts = [window_starts(n, w, overlap) for n, w in zip(image.shape, window, strict=True)]
    z_starts = [s for s in starts[0] if s < z1 and s + wz > z0]
    yx = [
        (a, b) for a, b in itertools.product(starts[1], starts[2]) if a < y1 and a + wy > y0 and b < x1 and b + wx > x0
    ]
    weights = compute_importance_map(tuple(window), mode=blend, sigma_scale=0.125, device=device)
    bar = tqdm(total=len(z_starts) * len(yx), desc=desc, mininterval=2.0, disable=not desc, dynamic_ncols=True)
    acc: list[torch.Tensor] = []
    total = torch.zeros((1, wz, y1 - y0, x1 - x0), device=device)  # summed weights
    base = z_starts[0]  # image row of accumulator row 0; rows before it are final and emitted

    def emit(stop: int) -> tuple[int, tuple[torch.Tensor, ...]] | None:
        """Rows ``base .. stop`` are final: their region part, normalised in place, on the CPU."""
        lo, hi = max(base, z0), min(stop, z1)
        if lo >= hi:
            return None
        rows = slice(lo - base, hi - base)
        return lo - z0, tuple(a[:, rows].div_(total[:, rows]).cpu() for a in acc)

    for zs in z_starts:
        if acc and zs > base:  # rows before this z start are final
            with torch.inference_mode():
                slab = emit(zs)
            if slab is not None:
                yield slab
            with torch.inference_mode():  # drop them, zero the rows that come into reach
                k = zs - base
                for buffer in [*acc, total]:
                    for row in range(wz - k):  # ascending: a source row is read before it is overwritten
                        buffer[:, row] = buffer[:, row + k]
                    buffer[:, wz - k :] = 0.0
        base = zs
        with torch.inference_mode():
            for i in range(0, len(yx), batch_size):
                batch = yx[i : i + batch_size]
                stack = np.stack([image[zs : zs + wz, a : a + wy, b : b + wx] for a, b in batch])
                windows = torch.from_numpy(np.ascontiguousarray(transform(stack)))[:, None].to(device)
                out = predictor(windows)
                outputs = out if isinstance(out, tuple) else (out,)
                if not acc:
                    acc = [torch.zeros((o.shape[1], *total.shape[1:]), device=device) for o in outputs]
                for j, (a, b) in enumerate(batch):
                    dst = (slice(max(a, y0) - y0, min(a + wy, y1) - y0), slice(max(b, x0) - x0, min(b + wx, x1) - x0))
                    src = (slice(max(a, y0) - a, min(a + wy, y1) - a), slice(max(b, x0) - b, min(b + wx, x1) - b))
                    w = weights[(slice(None), *src)]
                    total[(slice(None), slice(None), *dst)] += w
                    for acc_i, o in zip(acc, outputs, strict=True):
                        acc_i[(slice(None), slice(None), *dst)] += o[(j, slice(None), slice(None), *src)].float() * w
                bar.update(len(batch))
    bar.close()
    with torch.inference_mode():
        slab = emit(base + wz)
    if slab is not None:
        yield slab
