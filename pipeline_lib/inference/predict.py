"""Blockwise sliding-window prediction from a zarr volume into a zarr affinity store.

Three steps, each one Snakemake job (or several, for blocks):

1. :func:`prepare_prediction` creates the empty store ``<out>.partial`` (array
   ``affinities``, plus ``uncertainty`` with Monte-Carlo dropout) and records provenance and
   the block grid (:class:`~pipeline_lib.blockstore.BlockStore`);
2. :func:`predict_blocks` predicts some blocks of the grid: each block is read with its
   *context* (the global sliding windows that touch it, see :mod:`.sliding`), its windows
   run through a :class:`~.predictor.WindowPredictor` (precision, TTA, ensemble, MC
   dropout) and are blended as MONAI's sliding-window inferer blends them, streamed in
   z-slabs restricted to the block (:func:`~.sliding.blend_region`), encoded and written to
   the block's own chunks (blocks are chunk-aligned, so concurrent writers never collide);
   a marker per block (``blocks/<i>.done``), written last, records that it is done. Memory per block: the stored
   context, one chunk row of the encoded block and one window-high slab of float32
   accumulators (plus a float32 copy of the context when an axis of the volume is shorter
   than the window and it is padded). All of it lives on the model's device: the context is
   copied there once, and only the encoded (uint8) rows come back to the host;
3. :func:`finish_prediction` checks that every block is done and renames the store to its
   final name, which is what marks the prediction complete.

Every step takes the ``<out>.partial`` path (the path the Snakemake rules declare).

Because the windows lie on one lattice of the whole volume, the blockwise result equals a
whole-volume MONAI ``sliding_window_inference`` up to float noise, in every voxel. A rerun
after failures predicts only the blocks without a marker.

Attributes of the output: ``provenance`` (settings, inputs, commit), ``checkpoints``
(paths and sha256), ``config_hash`` (sha256 of the model and predict settings),
``tta`` (variant names and combination), ``window_shape``; the ``affinities`` array has
``offsets`` and ``encoding``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_lib.blockstore import GRID_ATTR, BlockStore, Step, grid_record, stage_grid
from pipeline_lib.config import ModelSettings, PredictSettings
from pipeline_lib.devices import configure_float32_math
from pipeline_lib.errors import UserError
from pipeline_lib.geometry import BlockGrid, Box, reflect_padding_problem
from pipeline_lib.inference.predictor import (
    Checkpoints,
    WindowPredictor,
    autocast_dtype,
    checkpoint_list,
    load_model,
    load_models,
    resolve_device,
    use_channels_last,
)
from pipeline_lib.inference.sliding import blend_region, count_windows, normalize_windows, window_context
from pipeline_lib.inference.storage import RowWriter, encode_tensors
from pipeline_lib.io.volumes import (
    AFFINITIES,
    FAST_ZSTD,
    create_array,
    open_array,
    partial_path,
    prepared_for,
    set_store_attrs,
    voxel_size,
)
from pipeline_lib.offsets import variants
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance

log = logging.getLogger(__name__)

UNCERTAINTY = "uncertainty"
PREDICTED = Step(folder="blocks", suffix=".done", verb="predict", past="predicted")

__all__ = [
    "AFFINITIES",
    "PREDICTED",
    "UNCERTAINTY",
    "finish_prediction",
    "load_model",
    "make_predictor",
    "predict_array",
    "predict_blocks",
    "predict_volume",
    "prediction_grid",
    "prepare_prediction",
]


def prediction_grid(volume_shape: Sequence[int], settings: PredictSettings) -> BlockGrid:
    """The block grid of a prediction (chunk-aligned, so block jobs never share a chunk)."""
    return stage_grid(volume_shape, settings)


def _window_predictor(
    models: Sequence[torch.nn.Module], model: ModelSettings, settings: PredictSettings, device: torch.device
) -> WindowPredictor:
    dtype = autocast_dtype(settings.precision, model.precision, device)
    return WindowPredictor(
        models,
        model.offsets,
        variants(settings.tta.flip, settings.tta.transpose),
        settings.tta.combine,
        dtype,
        settings.mc_dropout_samples,
        use_channels_last(settings.memory_format, dtype, device),
    )


def make_predictor(
    checkpoints: Checkpoints, model: ModelSettings, settings: PredictSettings, device: torch.device
) -> WindowPredictor:
    """The window predictor of a run: one checkpoint, or several averaged (an ensemble)."""
    dtype = autocast_dtype(settings.precision, model.precision, device)
    channels_last = use_channels_last(settings.memory_format, dtype, device)
    models = load_models(checkpoints, model.offsets, device, settings.compile, channels_last)
    return _window_predictor(models, model, settings, device)


def _blend(
    predictor: WindowPredictor,
    image: np.ndarray,
    region: Sequence[slice],
    window: Sequence[int],
    settings: PredictSettings,
    device: torch.device,
    desc: str,
    encode: bool = False,
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """:func:`~.sliding.blend_region` of a stored (e.g. uint8) image with the predict settings, on
    ``device``; with ``encode`` the slabs come back in their storage form (:func:`~.storage.encode_tensors`)."""
    return blend_region(
        image,
        region,
        predictor,
        window,
        settings.overlap,
        predictor.batch_size(settings.batch_size, window, device),
        settings.blend,
        settings.padding_mode,
        device,
        transform=normalize_windows,
        desc=desc,
        encode=(lambda outputs: encode_tensors(outputs, settings.dtype)) if encode else None,
    )


def _predict_image(
    predictor: WindowPredictor,
    image: np.ndarray,
    window: Sequence[int],
    settings: PredictSettings,
    device: torch.device,
    desc: str = "",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Affinities and (with MC dropout) their variance, ``(C, z, y, x)`` float32, of a whole
    in-memory image, blended exactly as block jobs blend (:func:`~.sliding.blend_region`)."""
    region = tuple(slice(0, n) for n in image.shape)
    arrays: list[np.ndarray] = []
    with torch.inference_mode():
        for z0, outputs in _blend(predictor, image, region, window, settings, device, desc):
            if not arrays:
                arrays = [np.empty((o.shape[0], *image.shape), dtype=np.float32) for o in outputs]
            for array, output in zip(arrays, outputs, strict=True):
                array[:, z0 : z0 + output.shape[1]] = output.numpy()
    return arrays[0], (arrays[1] if len(arrays) > 1 else None)


def predict_array(
    module: torch.nn.Module | WindowPredictor, image: np.ndarray, model: ModelSettings, settings: PredictSettings
) -> np.ndarray:
    """Affinities ``(C, z, y, x)`` float32 of a whole in-memory image (windows from its start).

    ``module`` is a trained network (TTA, precision and MC dropout then come from
    ``settings``) or a ready :class:`WindowPredictor`.
    """
    if isinstance(module, WindowPredictor):
        predictor = module
    else:
        predictor = _window_predictor([module], model, settings, next(module.parameters()).device)
    device = next(predictor.models[0].parameters()).device
    return _predict_image(predictor, image, settings.window(model), settings, device)[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(model: ModelSettings, settings: PredictSettings) -> str:
    """sha256 of the model and predict settings (canonical JSON), for provenance."""
    text = json.dumps({"model": dataclasses.asdict(model), "predict": dataclasses.asdict(settings)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_prediction(
    volume: str | Path, checkpoint: Checkpoints, partial: str | Path, model: ModelSettings, settings: PredictSettings
) -> Path:
    """Create the empty store ``partial`` (``<output>.partial``) for the block jobs to fill.

    ``checkpoint`` is one path or a list (an ensemble, averaged). Invalid TTA settings for
    the model's offsets and a misaligned block grid are rejected here, before any block.
    A partial store left by an interrupted run with the same settings, inputs and checkpoint
    contents is kept, so that :func:`predict_blocks` resumes from the blocks done; any other
    is replaced (its block markers would otherwise vouch for blocks of another run).
    """
    partial = Path(partial)
    image = open_array(volume, "image")
    grid = prediction_grid(image.shape, settings)
    problem = reflect_padding_problem(image.shape, settings.window(model))
    if settings.padding_mode == "reflect" and problem:
        raise UserError(f"{volume}: {problem}; set predict.padding_mode to 'replicate' or 'constant'")
    tta = variants(settings.tta.flip, settings.tta.transpose)
    WindowPredictor([torch.nn.Identity()], model.offsets, tta, settings.tta.combine)  # validates offsets
    checkpoints = checkpoint_list(checkpoint)
    record = provenance("predict", {"model": model, "predict": settings}, [volume, *checkpoints])
    recorded_checkpoints = [{"path": str(p.resolve()), "sha256": _sha256(p)} for p in checkpoints]
    recorded_grid = grid_record(grid, settings.chunk_shape)
    if partial.exists():
        same = {"checkpoints": recorded_checkpoints, GRID_ATTR: recorded_grid}
        if prepared_for(partial, AFFINITIES, record, same):
            log.info("%s: resuming the prediction left there", partial)
            return partial
        shutil.rmtree(partial)
    shape = (len(model.offsets), *image.shape)
    chunks = (len(model.offsets), *settings.chunk_shape)
    vs = voxel_size(volume, "image")
    offsets = [list(o) for o in model.offsets]
    attrs: dict[str, Any] = {"offsets": offsets, "encoding": settings.dtype}
    create_array(partial, AFFINITIES, shape, settings.dtype, chunks, vs, attrs=attrs, compressors=FAST_ZSTD)
    if settings.mc_dropout_samples > 0:
        attrs = {"offsets": offsets, "encoding": "variance"}
        create_array(partial, UNCERTAINTY, shape, np.float16, chunks, vs, attrs=attrs)
    set_store_attrs(
        partial,
        {
            "provenance": record,
            "checkpoints": recorded_checkpoints,
            "config_hash": config_hash(model, settings),
            "tta": {"variants": [v.name for v in tta], **dataclasses.asdict(settings.tta)},
            "window_shape": list(settings.window(model)),
        },
    )
    BlockStore.create(partial, grid, settings.chunk_shape, PREDICTED)
    return partial


def _read_ahead(pending: Iterator[tuple[int, Box, Box]], image: Any) -> Iterator[tuple[int, Box, Box, np.ndarray]]:
    """``(block_id, block, context, context image)`` of each pending block; the next block's
    context is read from the volume in a background thread while the caller predicts this one
    (two contexts in memory at most)."""
    with ThreadPoolExecutor(1, thread_name_prefix="context-reader") as reader:
        current: tuple[tuple[int, Box, Box], Future[np.ndarray]] | None = None
        for item in pending:
            following = (item, reader.submit(lambda box: np.asarray(image[box.slices]), item[2]))
            if current is not None:
                yield (*current[0], current[1].result())
            current = following
        if current is not None:
            yield (*current[0], current[1].result())


def _predict_block(
    predictor: WindowPredictor,
    context_image: np.ndarray,
    block: Box,
    context: Box,
    window: Sequence[int],
    settings: PredictSettings,
    device: torch.device,
    target: Any,
    uncertainty: Any | None,
    desc: str = "",
) -> None:
    """Predict one block from its context (read in its stored dtype) and write it (and its
    variance) to the block's chunks.

    Windows are normalised as they run; the
    final z-slabs of the block (see :func:`~.sliding.blend_region`) are encoded and written
    one chunk row at a time. No float32 copy of the block is held, nor of the context unless
    the volume is thinner than the window along some axis (then MONAI-style padding needs one)."""
    rows = settings.chunk_shape[0]
    slabs = _blend(predictor, context_image, block.relative_to(context), window, settings, device, desc, True)
    with contextlib.ExitStack() as writers:  # every write has finished (or raised) when this ends
        affinities = writers.enter_context(RowWriter(target, block, rows, settings.dtype))
        variance = (
            writers.enter_context(RowWriter(uncertainty, block, rows, np.float16)) if uncertainty is not None else None
        )
        for _, outputs in slabs:  # in z order, covering the block once; encoded on the device
            affinities.add(outputs[0].numpy())
            if variance is not None:
                variance.add(outputs[1].numpy())


def predict_blocks(
    volume: str | Path,
    checkpoint: Checkpoints,
    partial: str | Path,
    block_ids: Iterable[int],
    model: ModelSettings,
    settings: PredictSettings,
    device: str | None = None,
) -> list[int]:
    """Predict the given blocks into the store ``partial``, skipping blocks already done.

    Returns the ids of the blocks predicted by this call. ``device`` None means CUDA when
    available, else the CPU. Models are loaded only if some block needs predicting.
    """
    store = BlockStore.open(partial, PREDICTED)
    grid = store.grid
    image = open_array(volume, "image")
    target = open_array(partial, AFFINITIES, mode="r+")
    uncertainty = open_array(partial, UNCERTAINTY, mode="r+") if settings.mc_dropout_samples > 0 else None
    window = settings.window(model)
    dev = resolve_device(device)
    configure_float32_math()
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every window has one shape: autotune its convolutions once
    predictor: WindowPredictor | None = None
    done: list[int] = []

    def pending() -> Iterator[tuple[int, Box, Box]]:
        for block_id in block_ids:
            if store.done(block_id):
                log.info("block %d already predicted", block_id)
                continue
            block = grid.block(block_id)
            yield block_id, block, window_context(block, image.shape, window, settings.overlap)

    start = time.perf_counter()
    for block_id, block, context, context_image in _read_ahead(pending(), image):
        if predictor is None:
            predictor = make_predictor(checkpoint, model, settings, dev)
        if settings.mc_dropout_samples > 0:
            torch.manual_seed(model.seed + block_id)  # reruns of a block give the same sample
        _predict_block(
            predictor,
            context_image,
            block,
            context,
            window,
            settings,
            dev,
            target,
            uncertainty,
            f"block {block_id} windows",
        )
        store.mark(block_id, json.dumps({"block": block_id, "box": str(block), "context": str(context)}))
        done.append(block_id)
        n_windows = count_windows(context.shape, window, settings.overlap)
        log.info(
            "predicted block %d/%d %s (context %s, %d windows × %d passes) in %.1f s",
            block_id,
            len(grid),
            block,
            context,
            n_windows,
            predictor.passes_per_window,
            time.perf_counter() - start,
        )
        start = time.perf_counter()
    return done


def finish_prediction(partial: str | Path) -> Path:
    """Publish the store ``partial`` under its final name once every block has its marker; returns that name."""
    return BlockStore.open(partial, PREDICTED).publish()


def predict_volume(
    volume: str | Path,
    checkpoint: Checkpoints,
    output: str | Path,
    model: ModelSettings,
    settings: PredictSettings,
    device: str | None = None,
) -> None:
    """All three steps in one process (for tests and small volumes)."""
    partial = prepare_prediction(volume, checkpoint, partial_path(output), model, settings)
    n_blocks = len(BlockStore.open(partial, PREDICTED))
    blocks = progress(range(n_blocks), total=n_blocks, desc="predict blocks")
    predict_blocks(volume, checkpoint, partial, blocks, model, settings, device)
    finish_prediction(partial)
