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
that windows still to come can touch (one window height, or the reach of one batch of
several z starts), and yields each slab of rows as soon as it is final. Its memory is the
(uint8) context, one such slab of accumulators and what the caller keeps of the slabs. The
tests check it against MONAI's ``sliding_window_inference``.

**On the device.** The context is copied to the model's device once; window extraction,
normalisation, the forward passes (with TTA inverted there, see :mod:`.predictor`),
weighting, accumulation (one ``index_add_`` per batch and output, :class:`_OverlapAdd`),
normalisation and the storage encoding (uint8) all run there, and
only the encoded final rows come back to the host (pinned, non-blocking copies on CUDA).
The CPU runs the very same code with ``device="cpu"``, so the CPU tests exercise the device
path.
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

from pipeline_lib.devices import to_device, to_host
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


def normalize_windows(windows: torch.Tensor) -> torch.Tensor:
    """Windows as float32 in [0, 1] on their device, as :func:`~pipeline_lib.io.volumes.normalize_image`
    computes them (integer types divided by their maximum in float32)."""
    if windows.dtype.is_floating_point:
        return windows.float()
    return windows.float() / float(torch.iinfo(windows.dtype).max)


def _pad_like_monai(
    image: torch.Tensor, window: Sequence[int], padding_mode: PaddingMode
) -> tuple[torch.Tensor, list[int]]:
    """``image`` padded as MONAI pads an input shorter than the window (half before), and the pads before."""
    diffs = [max(w - n, 0) for n, w in zip(image.shape, window, strict=True)]
    if not any(diffs):
        return image, [0] * len(diffs)
    flat = [p for d in reversed(diffs) for p in (d // 2, d - d // 2)]  # F.pad lists the last axis first
    return F.pad(image[None, None], flat, mode=padding_mode)[0, 0], [d // 2 for d in diffs]


def _z_groups(z_starts: Sequence[int], per_row: int, batch_size: int) -> list[list[int]]:
    """Consecutive z starts grouped so that a group holds about ``batch_size`` windows (at least one row)."""
    rows = max(1, batch_size // max(per_row, 1))
    return [list(z_starts[i : i + rows]) for i in range(0, len(z_starts), rows)]


VECTORIZED_ON_CPU = False  # the CPU adds window by window (faster there); tests switch this on


class _OverlapAdd:
    """Accumulators ``(C, height, ry, rx)`` of weighted window outputs.

    On a GPU a whole batch is added by one ``index_add_`` per output (a loop over the windows
    would be launch-bound): each window's voxels go to their flat index in the accumulator,
    voxels outside the region to one spare element past its end. On the CPU, where that costs
    4–8× a slice-add per window, the windows are added one by one in the batch's (MONAI's)
    order; ``index_add_`` there adds in index order too, so both give the same sums (tested).
    """

    def __init__(self, height: int, ry: int, rx: int, window: Sequence[int], weights: torch.Tensor) -> None:
        self.shape, self.n, self.weights, self.device = (height, ry, rx), height * ry * rx, weights, weights.device
        self.window = tuple(int(w) for w in window)
        self.vectorized = self.device.type != "cpu" or VECTORIZED_ON_CPU
        wz, wy, wx = (int(w) for w in window)
        zyx = [torch.arange(w, device=self.device) for w in (wz, wy, wx)]
        self.local = zyx[0].view(-1, 1, 1) * (ry * rx) + zyx[1].view(1, -1, 1) * rx + zyx[2].view(1, 1, -1)
        self.dy, self.dx = zyx[1], zyx[2]
        self.flats: list[torch.Tensor] = []
        self.total = self._buffer(1)
        self.acc: list[torch.Tensor] = []

    def _buffer(self, channels: int) -> torch.Tensor:
        flat = torch.zeros(channels * (self.n + 1), device=self.device)
        self.flats.append(flat)
        return flat.view(channels, self.n + 1)[:, : self.n].view(channels, *self.shape)

    def add(self, outputs: tuple[torch.Tensor, ...], corners: Sequence[tuple[int, int, int]]) -> None:
        """Add ``outputs`` ``(B, C_i, wz, wy, wx)`` of windows with ``corners`` in accumulator coordinates."""
        if not self.acc:
            self.acc = [self._buffer(o.shape[1]) for o in outputs]
        if not self.vectorized:
            self._add_each(outputs, corners)
            return
        ry, rx = self.shape[1:]
        corner = torch.tensor(corners, device=self.device)
        index = (corner[:, 0] * (ry * rx) + corner[:, 1] * rx + corner[:, 2]).view(-1, 1, 1, 1) + self.local
        yy, xx = corner[:, 1:2] + self.dy, corner[:, 2:3] + self.dx
        inside = ((yy >= 0) & (yy < ry))[:, None, :, None] & ((xx >= 0) & (xx < rx))[:, None, None, :]
        index = torch.where(inside, index, self.n)  # outside the region: the spare element
        self.flats[0].index_add_(0, index.reshape(-1), self.weights.expand(index.shape).reshape(-1))
        for flat, output in zip(self.flats[1:], outputs, strict=True):
            channels = torch.arange(output.shape[1], device=self.device).view(1, -1, 1, 1, 1) * (self.n + 1)
            flat.index_add_(0, (index[:, None] + channels).reshape(-1), (output.float() * self.weights).reshape(-1))

    def _add_each(self, outputs: tuple[torch.Tensor, ...], corners: Sequence[tuple[int, int, int]]) -> None:
        """The windows one by one: slices of the accumulators and of the window clipped to the region."""
        (wz, wy, wx), (ry, rx) = self.window, self.shape[1:]
        weighted = [o.float() * self.weights for o in outputs]
        for j, (z, a, b) in enumerate(corners):
            src = (slice(max(-a, 0), min(wy, ry - a)), slice(max(-b, 0), min(wx, rx - b)))
            dst = (slice(z, z + wz), slice(max(a, 0), min(a + wy, ry)), slice(max(b, 0), min(b + wx, rx)))
            self.total[(slice(None), *dst)] += self.weights[(slice(None), *src)]
            for acc, w in zip(self.acc, weighted, strict=True):
                acc[(slice(None), *dst)] += w[(j, slice(None), slice(None), *src)]


def blend_region(
    image: np.ndarray | torch.Tensor,
    region: Sequence[slice],
    predictor: Predictor,
    window: Sequence[int],
    overlap: float,
    batch_size: int,
    blend: Literal["gaussian", "constant"] = "gaussian",
    padding_mode: PaddingMode = "reflect",
    device: torch.device | str = "cpu",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    desc: str = "",
    encode: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None = None,
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """MONAI's sliding-window blend over ``image``, restricted to ``region``, streamed in z-slabs.

    ``image`` is a ``(z, y, x)`` array (e.g. a block's uint8 context); it is copied to
    ``device`` once (pinned, non-blocking on CUDA) and everything else happens there:
    ``transform`` maps a stack of its windows to float32 (default: a cast; see
    :func:`normalize_windows`), the predictor runs, outputs are weighted and accumulated,
    normalised, and ``encode`` (e.g. the uint8 storage form) is applied before the final
    rows are copied to the host. ``region`` (slices with explicit bounds, inside the image)
    is the part wanted. Windows are MONAI's windows of the whole image (padded like MONAI
    where an axis is shorter than the window); those that touch the region run in MONAI's
    order, ``batch_size`` at a time (a batch may span several consecutive z starts when
    ``batch_size`` exceeds the windows of one z start); outputs are weighted by MONAI's
    importance map and normalised by the summed weights, as
    :func:`~monai.inferers.sliding_window_inference` does, accumulating in MONAI's order.
    Yields ``(z0, outputs)`` in increasing ``z0``: rows ``z0 .. z0 + dz`` of the region
    (relative to its start), each output ``(C_i, dz, *region y–x shape)`` on the CPU (float32
    unless ``encode`` says otherwise); the slabs cover the region once. On the CPU without
    ``encode`` a slab is a view of the accumulators: use or copy it before asking for the next.
    """
    device = torch.device(device)
    transform = transform or (lambda t: t.float())
    region = list(region)
    with torch.inference_mode():
        data = to_device(image, device) if isinstance(image, np.ndarray) else image.to(device)
        if any(n < w for n, w in zip(data.shape, window, strict=True)):
            data, pads = _pad_like_monai(transform(data), window, padding_mode)
            transform = lambda t: t  # noqa: E731  (already float32)
            region = [slice(r.start + p, r.stop + p) for r, p in zip(region, pads, strict=True)]
    (z0, z1), (y0, y1), (x0, x1) = [(int(r.start), int(r.stop)) for r in region]
    wz, wy, wx = (int(w) for w in window)
    starts = [window_starts(n, w, overlap) for n, w in zip(data.shape, window, strict=True)]
    z_starts = [s for s in starts[0] if s < z1 and s + wz > z0]
    yx = [
        (a, b) for a, b in itertools.product(starts[1], starts[2]) if a < y1 and a + wy > y0 and b < x1 and b + wx > x0
    ]
    groups = _z_groups(z_starts, len(yx), batch_size)
    height = max(g[-1] - g[0] for g in groups) + wz  # accumulator rows: one group's reach
    weights = compute_importance_map(tuple(window), mode=blend, sigma_scale=0.125, device=device)
    bar = tqdm(total=len(z_starts) * len(yx), desc=desc, mininterval=2.0, disable=not desc, dynamic_ncols=True)
    sums = _OverlapAdd(height, y1 - y0, x1 - x0, window, weights)
    total = sums.total  # summed weights
    base = z_starts[0]  # image row of accumulator row 0; rows before it are final and emitted

    def emit(stop: int) -> tuple[int, tuple[torch.Tensor, ...]] | None:
        """Rows ``base .. stop`` are final: their region part, normalised in place, encoded, on the CPU."""
        lo, hi = max(base, z0), min(stop, z1)
        if lo >= hi:
            return None
        rows = slice(lo - base, hi - base)
        final = tuple(a[:, rows].div_(total[:, rows]) for a in sums.acc)
        return lo - z0, to_host(encode(final) if encode is not None else final)

    for group in groups:
        if sums.acc and group[0] > base:  # rows before this group's first z start are final
            with torch.inference_mode():
                slab = emit(group[0])
            if slab is not None:
                yield slab
            with torch.inference_mode():  # drop them, zero the rows that come into reach
                k = group[0] - base
                for buffer in [*sums.acc, total]:
                    for row in range(0, height - k, k):  # k rows at a time, ascending: no overlap, no copy
                        buffer[:, row : min(row + k, height - k)] = buffer[:, row + k : min(row + 2 * k, height)]
                    buffer[:, max(height - k, 0) :] = 0.0
        base = group[0]
        todo = [(zs, a, b) for zs in group for a, b in yx]  # MONAI's order: z, then y, then x
        with torch.inference_mode():
            for i in range(0, len(todo), batch_size):
                batch = todo[i : i + batch_size]
                windows = transform(torch.stack([data[zs : zs + wz, a : a + wy, b : b + wx] for zs, a, b in batch]))
                out = predictor(windows[:, None])
                sums.add(out if isinstance(out, tuple) else (out,), [(zs - base, a - y0, b - x0) for zs, a, b in batch])
                bar.update(len(batch))
    bar.close()
    with torch.inference_mode():
        slab = emit(base + height)
    if slab is not None:
        yield slab
