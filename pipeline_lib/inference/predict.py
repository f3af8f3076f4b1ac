"""Blockwise sliding-window prediction from a zarr volume into a zarr affinity store.

Three steps, each one Snakemake job (or several, for blocks):

1. :func:`prepare_prediction` creates the empty output store ``<out>.partial``;
2. :func:`predict_blocks` predicts some blocks of the grid: each block is read with a halo
   of context, predicted with MONAI's sliding-window inferer, cropped back to the block and
   written to the block's own chunks (blocks are chunk-aligned, so writers never collide);
   a marker per block records that it is done;
3. :func:`finish_prediction` checks that every block is done and renames the store to its
   final name, which is what marks the prediction complete.

A rerun after failures predicts only the blocks without a marker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from pipeline_lib.config import ModelSettings, PredictSettings
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import (
    commit,
    create_array,
    normalize_image,
    open_array,
    partial_path,
    set_store_attrs,
    store_attrs,
    voxel_size,
)
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance
from pipeline_lib.training.module import AffinityModule

log = logging.getLogger(__name__)

AFFINITIES = "affinities"


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> AffinityModule:
    """The trained module in eval mode on ``device``."""
    module = AffinityModule.load_from_checkpoint(str(checkpoint), map_location=device)
    module.eval()
    return module


def prediction_grid(volume_shape: Sequence[int], settings: PredictSettings) -> BlockGrid:
    """The block grid of a prediction (chunk-aligned, so block jobs never share a chunk)."""
    return BlockGrid.aligned(volume_shape, settings.block_shape, settings.chunk_shape)


def halo(model: ModelSettings) -> tuple[int, int, int]:
    """Context read around each block: half a window, so every output voxel sees a full window."""
    z, y, x = (p // 2 for p in model.patch_shape)
    return (z, y, x)


def predict_array(module: AffinityModule, image: np.ndarray, model: ModelSettings, settings: PredictSettings) -> np.ndarray:
    """Sigmoid affinities ``(c, z, y, x)`` float32 for an image block (any size ≥ 1 voxel)."""
    device = next(module.parameters()).device
    tensor = torch.from_numpy(normalize_image(image))[None, None].to(device)
    autocast = model.precision != "32" and device.type == "cuda"
    dtype = torch.bfloat16 if model.precision.startswith("bf16") else torch.float16
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
        logits = sliding_window_inference(
            tensor,
            roi_size=model.patch_shape,
            sw_batch_size=settings.batch_size,
            predictor=module,
            overlap=settings.overlap,
            mode=settings.blend,
            padding_mode="reflect",
        )
    assert isinstance(logits, torch.Tensor)
    return torch.sigmoid(logits.float())[0].cpu().numpy()


def _encode(affinities: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.round(affinities * 255.0).astype(np.uint8)
    return affinities.astype(np.float16)


def decode_affinities(stored: np.ndarray) -> np.ndarray:
    """Affinities as float32 in [0, 1] from their stored form (uint8 0–255 or float16)."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / 255.0
    return stored.astype(np.float32)


def prepare_prediction(volume: str | Path, checkpoint: str | Path, output: str | Path, model: ModelSettings, settings: PredictSettings) -> Path:
    """Create the empty ``<output>.partial`` store for the block jobs to fill."""
    partial = partial_path(output)
    image = open_array(volume, "image")
    create_array(
        partial,
        AFFINITIES,
        (len(model.offsets), *image.shape),
        settings.dtype,
        (len(model.offsets), *settings.chunk_shape),
        voxel_size(volume, "image"),
        attrs={"offsets": [list(o) for o in model.offsets], "encoding": settings.dtype},
    )
    set_store_attrs(partial, {"provenance": provenance("predict", {"model": model, "predict": settings}, [volume, checkpoint])})
    (partial / "blocks").mkdir(exist_ok=True)
    return partial


def _marker(partial: Path, block_id: int) -> Path:
    return partial / "blocks" / f"{block_id}.done"


def predict_blocks(
    volume: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    block_ids: Iterable[int],
    model: ModelSettings,
    settings: PredictSettings,
    device: str = "cpu",
) -> None:
    """Predict the given blocks into ``<output>.partial``, skipping blocks already done."""
    partial = partial_path(output)
    image = open_array(volume, "image")
    target = open_array(partial, AFFINITIES, mode="r+")
    grid = prediction_grid(image.shape, settings)
    module = load_model(checkpoint, device)
    for block_id in block_ids:
        marker = _marker(partial, block_id)
        if marker.exists():
            log.info("block %d already predicted", block_id)
            continue
        block = grid.block(block_id)
        context = grid.with_halo(block_id, halo(model))
        result = predict_array(module, np.asarray(image[context.slices]), model, settings)
        target[(slice(None), *block.slices)] = _encode(result[(slice(None), *block.relative_to(context))], settings.dtype)
        marker.write_text(json.dumps({"block": block_id, "box": str(block)}))
        log.info("predicted block %d %s", block_id, block)


def finish_prediction(output: str | Path) -> None:
    """Publish ``<output>.partial`` as ``output`` once every block has its marker."""
    partial = partial_path(output)
    shape = open_array(partial, AFFINITIES).shape[1:]
    settings = store_attrs(partial)["provenance"]["settings"]["predict"]
    grid = BlockGrid(tuple(shape), tuple(settings["block_shape"]))
    missing = [i for i in range(len(grid)) if not _marker(partial, i).exists()]
    if missing:
        raise RuntimeError(f"{partial}: blocks {missing} were not predicted; rerun the workflow to predict them")
    set_store_attrs(partial, {"complete": True})
    commit(partial, output)


def predict_volume(volume: str | Path, checkpoint: str | Path, output: str | Path, model: ModelSettings, settings: PredictSettings) -> None:
    """All three steps in one process (for tests and small volumes)."""
    prepare_prediction(volume, checkpoint, output, model, settings)
    n_blocks = len(prediction_grid(open_array(volume, "image").shape, settings))
    predict_blocks(volume, checkpoint, output, progress(range(n_blocks), total=n_blocks, desc="predict"), model, settings)
    finish_prediction(output)
