"""Global window lattice: a block's context reproduces MONAI's whole-volume windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval

from pipeline_lib.geometry import BlockGrid
from pipeline_lib.inference.sliding import count_windows, sliding_window_predict, window_context, window_starts


def monai_starts(length: int, window: int, overlap: float) -> list[int]:
    size, roi = (max(length, window),), (window,)
    interval = _get_scan_interval(size, roi, 1, (overlap,))
    return sorted({s[0].start for s in dense_patch_slices(size, roi, interval)})


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_window_starts_match_monai(overlap: float) -> None:
    for window in [1, 3, 8, 16, 33]:
        for length in range(1, 100):
            assert window_starts(length, window, overlap) == monai_starts(length, window, overlap), (length, window)


@pytest.mark.parametrize("overlap", [0.25, 0.5, 0.6])
def test_context_windows_are_the_global_windows(overlap: float) -> None:
    """MONAI, called on a block's context, places exactly the global windows touching the block."""
    for length, window, block in itertools.product([5, 40, 61, 100], [8, 16, 24], [8, 16, 24, 48]):
        starts = window_starts(length, window, overlap)
        for begin in range(0, length, block):
            end = min(begin + block, length)
            ctx = window_context(BlockGrid((length,), (block,)).block(begin // block), (length,), (window,), overlap)
            inside = [ctx.begin[0] + s for s in window_starts(ctx.shape[0], window, overlap)]
            touching = [s for s in starts if s < end and s + window > begin] if length > window else [0]
            assert inside == touching, (length, window, block, begin)


def test_count_windows() -> None:
    expected = len(dense_patch_slices((40, 61, 100), (16, 24, 8), (8, 12, 4)))
    assert count_windows((40, 61, 100), (16, 24, 8), 0.5) == expected


def test_blockwise_equals_whole_volume_everywhere() -> None:
    """A fixed random conv 'model': blockwise contexts reproduce the whole-volume result."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 3, padding=1))
    image = torch.rand(30, 45, 37)
    window, overlap = (12, 16, 16), 0.5
    with torch.inference_mode():
        whole = sliding_window_inference(image[None, None], window, 3, net, overlap, mode="gaussian")[0]
        grid = BlockGrid((30, 45, 37), (14, 20, 15))
        out = torch.zeros_like(whole)
        for _, block in grid.blocks():
            ctx = window_context(block, image.shape, window, overlap)
            (pred,) = sliding_window_predict(image[ctx.slices], net, window, overlap, 2, "gaussian")
            out[(slice(None), *block.slices)] = pred[(slice(None), *block.relative_to(ctx))]
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)


def test_small_volume_is_padded_like_monai() -> None:
    net = torch.nn.Conv3d(1, 1, 3, padding=1)
    image = torch.rand(6, 20, 9)
    with torch.inference_mode():
        whole = sliding_window_inference(image[None, None], (8, 8, 8), 1, net, 0.5, padding_mode="reflect")[0]
        (ours,) = sliding_window_predict(image.numpy(), net, (8, 8, 8), 0.5, 1, "constant", "reflect")
    np.testing.assert_allclose(ours.numpy(), whole.numpy(), atol=1e-6)
