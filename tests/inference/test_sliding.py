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
from pipeline_lib.inference import sliding
from pipeline_lib.inference.sliding import (
    blend_region,
    count_windows,
    window_context,
    window_starts,
)
from tests.inference.conftest import blend


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
            (pred,) = blend(image[ctx.slices].numpy(), net, window, overlap, 2, block.relative_to(ctx))
            out[(slice(None), *block.slices)] = torch.from_numpy(pred)
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)


def test_small_volume_is_padded_like_monai() -> None:
    net = torch.nn.Conv3d(1, 1, 3, padding=1)
    image = torch.rand(6, 20, 9)
    with torch.inference_mode():
        whole = sliding_window_inference(image[None, None], (8, 8, 8), 1, net, 0.5, padding_mode="reflect")[0]
        (ours,) = blend(image.numpy(), net, (8, 8, 8), 0.5, 1, mode="constant", padding_mode="reflect")
    np.testing.assert_allclose(ours, whole.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "window", "overlap", "region"),
    [
        ((30, 45, 37), (12, 16, 16), 0.5, (slice(3, 25), slice(5, 40), slice(0, 37))),
        ((30, 45, 37), (12, 16, 16), 0.0, (slice(0, 30), slice(0, 45), slice(0, 37))),
        ((30, 45, 37), (12, 16, 16), 0.75, (slice(7, 8), slice(5, 40), slice(2, 3))),
        ((6, 20, 9), (8, 8, 8), 0.5, (slice(1, 6), slice(0, 20), slice(2, 9))),  # padded like MONAI
    ],
)
@pytest.mark.parametrize("batch_size", [2, 64])  # 64: batches span several z starts
@pytest.mark.parametrize("vectorized", [False, True])  # the CPU's window-by-window sums and the GPU's index_add_
def test_blend_region_streams_monai_blend(
    shape: tuple[int, int, int],
    window: tuple[int, int, int],
    overlap: float,
    region: tuple[slice, ...],
    batch_size: int,
    vectorized: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slabs in z order cover the region once and equal MONAI's whole-image blend there (tuple outputs too)."""
    monkeypatch.setattr(sliding, "VECTORIZED_ON_CPU", vectorized)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 3, padding=1))

    def two(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = net(x)
        return out, out[:, :1] * out[:, :1]

    image = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    floats = torch.from_numpy(image.astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        whole = sliding_window_inference(floats, window, 3, two, overlap, mode="gaussian", padding_mode="reflect")
    assert isinstance(whole, tuple)
    got = [np.full((o.shape[1], *[r.stop - r.start for r in region]), np.nan, np.float32) for o in whole]
    rows = 0
    slabs = blend_region(
        image, region, two, window, overlap, batch_size, "gaussian", "reflect", transform=lambda t: t.float() / 255
    )
    for z0, outputs in slabs:
        assert z0 == rows and all(o.dtype == torch.float32 for o in outputs)
        rows += outputs[0].shape[1]
        for g, o in zip(got, outputs, strict=True):
            g[:, z0:rows] = o.numpy()
    assert rows == got[0].shape[1]
    for g, w in zip(got, whole, strict=True):
        np.testing.assert_allclose(g, w[0][(slice(None), *region)].numpy(), atol=1e-6, rtol=0)


def test_both_ways_of_adding_windows_give_the_same_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """index_add_ (GPUs) and window-by-window slices (CPU) sum in the same order: equal bit for bit."""
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 3, padding=1)
    image = np.random.default_rng(2).random((20, 37, 29)).astype(np.float32)
    region = (slice(3, 17), slice(5, 33), slice(0, 29))
    results = []
    for vectorized in (False, True):
        monkeypatch.setattr(sliding, "VECTORIZED_ON_CPU", vectorized)
        results.append(blend(image, net, (8, 16, 16), 0.5, 5, region)[0])
    np.testing.assert_array_equal(results[0], results[1])
