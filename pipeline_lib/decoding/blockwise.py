"""Blockwise decoding: decode blocks independently, stitch them across faces, relabel, publish.

Steps (each one job, or block jobs sharing the grid; every step takes the ``<out>.partial``
path the Snakemake rules declare):

1. :func:`prepare_decoding` creates ``<out>.partial`` with an empty ``segmentation``
   (:func:`segmentation_dtype`) and records the block grid and halo
   (:class:`~pipeline_lib.blockstore.BlockStore`);
2. :func:`decode_blocks` writes, per block ``i``, its block-local ids ``1..n`` (0 background)
   to ``<partial>/block_labels/<i>.npy`` and then a record ``<partial>/blocks/<i>.npz`` (it
   marks the block done): the voxel count of each local id and what the stitch needs across
   faces. Object ``j`` of block ``i`` is ``i << 32 | j`` globally;
3. :func:`~pipeline_lib.decoding.relabel.stitch_blocks` (one job) computes, from the records
   alone, the final consecutive id of every block-local id, objects under ``min_size``
   handled by their global sizes (:mod:`~pipeline_lib.decoding.postprocess`);
4. :func:`~pipeline_lib.decoding.relabel.relabel_blocks` writes each block of
   ``segmentation`` once with its final ids, then a marker;
5. :func:`~pipeline_lib.decoding.relabel.finish_decoding` checks every marker, removes the
   scratch files (:mod:`~pipeline_lib.decoding.partial_store`) and publishes the store.

:func:`stitch_and_relabel` runs steps 3–5 in one process, :func:`decode_volume` all five.

What the result is, by the decoder's stitching (its registration):

- ``"affinity"`` (connected components): equal to
  :func:`~pipeline_lib.decoding.registry.decode_array` on the whole volume up to a
  permutation of ids;
- ``"graph"`` (waterz, mutex watershed, seeded watershed): one region graph of per-block
  fragments, agglomerated once (:mod:`~pipeline_lib.decoding.graph_decode`); only the
  fragments near block faces depend on the grid (deviations measured in docs/decoding.md).

What each record holds, and why the design is so: ``docs/adr/0004-stitching.md``.

Memory: one block with its halo at a time while decoding; while stitching, a few blocks'
records (or faces) and the id tables; while relabelling, one block of labels and the table
slices of a job's blocks (memory-mapped). Disk: the block labels take 2–4 bytes per voxel of
scratch until the store is published.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline_lib.blockstore import GRID_ATTR, BlockStore, grid_record
from pipeline_lib.config import DecoderSettings, DecodeSettings
from pipeline_lib.decoding.connected_components import edges_above, label_block
from pipeline_lib.decoding.graph_decode import block_fragments, graph_record, seed_record
from pipeline_lib.decoding.image_evidence import image_weight, with_image_evidence
from pipeline_lib.decoding.partial_store import DECODED, LABELS, RELABELLED_BLOCKS, decode_grid, labels_path
from pipeline_lib.decoding.region_graph import as_uint8
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.decoding.relabel import finish_decoding, relabel_blocks, stitch_blocks
from pipeline_lib.decoding.stitching import face_planes, small_object_record
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.affinities import AFFINITIES, affinity_offsets, as_float, read_stored
from pipeline_lib.io.volumes import (
    FAST_ZSTD,
    SEGMENTATION,
    create_array,
    open_array,
    partial_path,
    prepared_for,
    set_store_attrs,
    store_attrs,
    voxel_size,
)
from pipeline_lib.offsets import nearest_neighbour_channels
from pipeline_lib.provenance import provenance

log = logging.getLogger(__name__)


def segmentation_dtype(shape: Sequence[int]) -> type[np.unsignedinteger]:
    """``uint32`` when a volume of ``shape`` has fewer than 2**32 voxels, else ``uint64``.

    A volume has at most as many objects as voxels, so the final consecutive ids always fit;
    uint32 halves the bytes that relabelling writes and every later stage reads.
    """
    return np.uint32 if math.prod(shape) < 2**32 else np.uint64


def prepare_decoding(
    affinities_store: str | Path,
    partial: str | Path,
    decoder: DecoderSettings,
    settings: DecodeSettings,
    volume_store: str | Path | None = None,
) -> Path:
    """Create the empty store ``partial`` (``<output>.partial``) for the block jobs to fill.

    ``volume_store``: the volume whose image a decoder with an ``image_weight`` reads; it is
    recorded in the provenance then, and its own provenance is compared like the affinities'.

    A partial store left by an interrupted run with the same settings and the same
    affinities (path and the provenance recorded in them, so a re-prediction at the same
    path counts as new input; likewise the image for a decoder that reads it) is kept, so
    that the steps after this one resume from what is done; any other is replaced.
    """
    partial = Path(partial)
    shape = open_array(affinities_store, AFFINITIES).shape[1:]
    grid = decode_grid(shape, settings)  # rejects a misaligned block shape before any block runs
    method = get_decoder(decoder.method)
    halo = (0, 0, 0) if method.stitch == "affinity" else method.halo(decoder)
    image_store = volume_store if volume_store is not None and image_weight(decoder) > 0 else None
    inputs = [affinities_store] if image_store is None else [affinities_store, image_store]
    record = provenance("decode", {"decoder": decoder, "decode": settings}, inputs)
    sources = {"affinities_provenance": store_attrs(affinities_store).get("provenance")}
    if image_store is not None:
        sources["image_provenance"] = store_attrs(image_store).get("provenance")
    if partial.exists():
        same = {**sources, GRID_ATTR: grid_record(grid, settings.chunk_shape, halo)}
        if prepared_for(partial, SEGMENTATION, record, same):
            log.info("%s: resuming the decoding left there", partial)
            _make_folders(partial)
            return partial
        shutil.rmtree(partial)
    create_array(
        partial,
        SEGMENTATION,
        shape,
        segmentation_dtype(shape),
        settings.chunk_shape,
        voxel_size(affinities_store, AFFINITIES),
        compressors=FAST_ZSTD,
    )
    set_store_attrs(partial, {"provenance": record, **sources})
    BlockStore.create(partial, grid, settings.chunk_shape, DECODED, halo, steps=[RELABELLED_BLOCKS])
    _make_folders(partial)
    return partial


def _make_folders(partial: Path) -> None:
    for folder in (DECODED.folder, LABELS, RELABELLED_BLOCKS.folder):
        (partial / folder).mkdir(exist_ok=True)


def _decode_cc_block(
    affinities: Any, grid: BlockGrid, block_id: int, channels: tuple[int, int, int], threshold: float
) -> tuple[NDArray[np.unsignedinteger], NDArray[np.int64], dict[str, NDArray[Any]]]:
    """Connected components of one block without halo: labels, counts, the edges crossing its lower faces."""
    block = grid.block(block_id)
    stored = read_stored(affinities, block, channels)
    open_faces = [(block.begin[a] > 0, block.end[a] < grid.shape[a]) for a in range(3)]
    result = label_block([edges_above(stored[a], threshold) for a in range(3)], open_faces)
    del stored
    crossing = {f"crossing{axis}": result.crossing[axis] for axis, (below, _) in enumerate(open_faces) if below}
    return result.labels, result.counts, crossing


def _graph_block(
    affinities: Any,
    grid: BlockGrid,
    block_id: int,
    channels: Sequence[int],
    offsets: Sequence[Sequence[int]],
    decoder: DecoderSettings,
    halo: Sequence[int],
    image: Any | None,
) -> tuple[NDArray[np.unsignedinteger], NDArray[np.int64], dict[str, NDArray[Any]]]:
    """Fragments of one block computed with context ``halo``, their counts and the block's graph
    record (of the affinities mixed with ``image``'s evidence when the decoder weighs it)."""
    block = grid.block(block_id)
    context = grid.with_halo(block_id, halo)
    stored = read_stored(affinities, context, channels)
    core = block.relative_to(context)
    floats = with_image_evidence(as_float(stored), offsets, decoder, image, context)
    if image_weight(decoder):
        stored = as_uint8(floats)  # the graph's statistics are of the mixed values
    labels, counts = block_fragments(floats, offsets, core, decoder)
    merge = decoder.small_objects == "merge" and decoder.min_size > 1
    record = graph_record(labels, stored[(slice(None), *core)], offsets, grid, block_id, merge)
    if decoder.method == "seeded_watershed":
        record.update(seed_record(floats, offsets, labels, core, decoder.threshold, grid, block_id))
    return labels, counts, record


def decode_blocks(
    affinities_store: str | Path,
    partial: str | Path,
    block_ids: Iterable[int],
    decoder: DecoderSettings,
    volume_store: str | Path | None = None,
) -> None:
    """Decode the given blocks into the store ``partial``, skipping blocks already done.

    ``volume_store``: the dataset's volume, whose ``image`` a decoder with an ``image_weight``
    reads (:mod:`~pipeline_lib.decoding.image_evidence`).
    """
    store = BlockStore.open(partial, DECODED)
    if store.complete:  # relabelled and cleaned up before an interrupted publication
        return
    grid = store.grid
    affinities = open_array(affinities_store, AFFINITIES)
    method = get_decoder(decoder.method)
    offsets = affinity_offsets(affinities_store)
    zyx_channels = nearest_neighbour_channels(offsets)  # connected components: axis a's edges at [a]
    used = method.channels(offsets)  # other decoders: the channels they read, with their offsets
    used_offsets = [offsets[c] for c in used]
    image = open_array(volume_store, "image") if volume_store is not None and image_weight(decoder) else None
    if image is not None and tuple(image.shape) != tuple(grid.shape):
        raise ValueError(f"{volume_store}: image shape {tuple(image.shape)} differs from the affinities' {grid.shape}")
    for block_id in block_ids:
        if store.done(block_id):
            continue
        extras: dict[str, Any]
        if method.stitch == "affinity":
            labels, counts, extras = _decode_cc_block(affinities, grid, block_id, zyx_channels, decoder.threshold)
            extras.update(face_planes(labels, grid, block_id))  # for the stitch's joins and contacts
            if decoder.small_objects == "merge" and decoder.min_size > 1:  # contacts and first voxels
                extras.update(small_object_record(labels, grid, block_id, len(counts)))
        else:  # the graph record holds its faces, contacts and first voxels
            labels, counts, extras = _graph_block(
                affinities, grid, block_id, used, used_offsets, decoder, store.halo, image
            )
        tmp_labels = labels_path(store.partial, block_id).with_suffix(".tmp.npy")
        np.save(tmp_labels, np.ascontiguousarray(labels))
        tmp_labels.replace(labels_path(store.partial, block_id))
        record = io.BytesIO()
        arrays: dict[str, Any] = {"counts": counts, **extras}
        np.savez(record, **arrays)  # small, read once: not worth compressing
        store.mark(block_id, record.getvalue())  # the record is the block's marker: written last
        log.info("decoded block %d %s: %d objects", block_id, grid.block(block_id), len(counts))


def stitch_and_relabel(partial: str | Path, decoder: DecoderSettings) -> Path:
    """Stitch, relabel every block and publish, in one process (steps 3–5); returns the published path."""
    stitch_blocks(partial, decoder)
    relabel_blocks(partial, range(len(BlockStore.open(partial, DECODED))))
    return finish_decoding(partial)


def decode_volume(
    affinities_store: str | Path,
    output: str | Path,
    decoder: DecoderSettings,
    settings: DecodeSettings,
    volume_store: str | Path | None = None,
) -> None:
    """All steps in one process (for tests and small volumes), into ``output``."""
    partial = prepare_decoding(affinities_store, partial_path(output), decoder, settings, volume_store)
    decode_blocks(affinities_store, partial, range(len(BlockStore.open(partial, DECODED))), decoder, volume_store)
    stitch_and_relabel(partial, decoder)


__all__ = [
    "decode_blocks",
    "decode_volume",
    "finish_decoding",
    "prepare_decoding",
    "relabel_blocks",
    "segmentation_dtype",
    "stitch_and_relabel",
    "stitch_blocks",
]
