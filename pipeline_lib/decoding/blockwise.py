"""Blockwise decoding with stitching across block faces.

Steps (each a Snakemake job or a group of block jobs, like prediction):

1. :func:`prepare_decoding` creates ``<out>.partial`` with an empty ``segmentation``;
2. :func:`decode_blocks` decodes blocks independently, each read with the decoder's halo,
   makes ids globally unique (``block_id << 32 | local id``), writes the block's own region
   and records the ids and voxel counts of the block (plus, for overlap stitching, the
   labels the block gave inside its halo);
3. :func:`stitch_and_relabel` finds the pairs of objects to join across every face between
   neighbouring blocks (:mod:`~pipeline_lib.decoding.stitching`), joins them (union–find),
   handles objects smaller than ``min_size`` by their *global* sizes (to background, or
   merged into the neighbour they touch most), relabels all blocks consecutively and
   publishes the store under its final name.

Connected components (``"affinity"`` stitching, no halo) give exactly the whole-volume
result of :func:`~pipeline_lib.decoding.registry.decode_array` up to a permutation of ids:
an edge inside a block is used by that block's decoding, an edge crossing a face by the
stitch, and each edge exactly once; sizes and contacts are summed over blocks.

Watershed, waterz and mutex watershed (``"overlap"`` stitching) decode each block with the
halo ``params.halo`` and join objects of neighbouring blocks that agree on the overlap
(``params.stitch_overlap``), as cluster_tools' blockwise mutex watershed does. This is an
approximation of whole-volume decoding; ``tests/decoding/test_blockwise.py`` measures and
bounds its deviation.

Memory: one block with its halo at a time while decoding; while stitching, one block (or
face slab) at a time plus the id tables and the halo slabs of the records.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastremap
import numpy as np

from pipeline_lib.config import DecoderSettings, DecodeSettings
from pipeline_lib.decoding.affinity_io import AFFINITIES, affinity_offsets, read_affinities
from pipeline_lib.decoding.connected_components import nearest_neighbour_channels
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.decoding.stitching import (
    EMPTY_PAIRS,
    affinity_face_pairs,
    component_contacts,
    components,
    final_labels,
    halo_slabs,
    overlap_face_pairs,
    small_components,
)
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import (
    SEGMENTATION,
    commit,
    create_array,
    open_array,
    partial_path,
    set_store_attrs,
    store_attrs,
    voxel_size,
)
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance

log = logging.getLogger(__name__)

BLOCK_ID_SHIFT = np.uint64(32)


def decode_grid(shape: tuple[int, ...], settings: DecodeSettings) -> BlockGrid:
    return BlockGrid.aligned(shape, settings.block_shape, settings.chunk_shape)


def prepare_decoding(
    affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> Path:
    """Create the empty ``<output>.partial`` store for the block jobs to fill."""
    partial = partial_path(output)
    shape = open_array(affinities_store, AFFINITIES).shape[1:]
    decode_grid(shape, settings)  # rejects a misaligned block shape before any block runs
    create_array(
        partial, SEGMENTATION, shape, np.uint64, settings.chunk_shape, voxel_size(affinities_store, AFFINITIES)
    )
    set_store_attrs(
        partial, {"provenance": provenance("decode", {"decoder": decoder, "decode": settings}, [affinities_store])}
    )
    (partial / "blocks").mkdir(exist_ok=True)
    return partial


def _block_record(partial: Path, block_id: int) -> Path:
    return partial / "blocks" / f"{block_id}.npz"


def _compact(decoded: np.ndarray, core: tuple[slice, ...], block_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Globally unique ids for a decoded context, and the voxel counts of the core's objects.

    The core's objects get local ids ``1..n`` (in the order of their decoder ids), objects
    seen only in the halo ``n+1..``; the id is ``block_id << 32 | local id`` (0 stays 0).
    """
    core_ids, counts = fastremap.unique(decoded[core], return_counts=True)
    keep = core_ids != 0
    core_ids, counts = core_ids[keep], counts[keep]
    every = fastremap.unique(decoded)
    halo_only = np.setdiff1d(every[every != 0], core_ids)
    if len(core_ids) + len(halo_only) >= 2**32:
        raise OverflowError(f"block {block_id}: 2**32 or more objects")
    base = np.uint64(block_id) << BLOCK_ID_SHIFT
    mapping = {0: 0}
    mapping.update(
        zip(core_ids.tolist(), (base + np.arange(1, len(core_ids) + 1, dtype=np.uint64)).tolist(), strict=True)
    )
    first_halo = len(core_ids) + 1
    halo_new = base + np.arange(first_halo, first_halo + len(halo_only), dtype=np.uint64)
    mapping.update(zip(halo_only.tolist(), halo_new.tolist(), strict=True))
    labels = fastremap.remap(decoded.astype(np.uint64, copy=False), mapping, preserve_missing_labels=False)
    return labels, counts.astype(np.int64)


def decode_blocks(
    affinities_store: str | Path,
    output: str | Path,
    block_ids: Iterable[int],
    decoder: DecoderSettings,
    settings: DecodeSettings,
) -> None:
    """Decode the given blocks into ``<output>.partial``, skipping blocks already done."""
    partial = partial_path(output)
    affinities = open_array(affinities_store, AFFINITIES)
    segmentation = open_array(partial, SEGMENTATION, mode="r+")
    grid = decode_grid(affinities.shape[1:], settings)
    method = get_decoder(decoder.method)
    offsets = affinity_offsets(affinities_store)
    for block_id in block_ids:
        record = _block_record(partial, block_id)
        if record.exists():
            continue
        block = grid.block(block_id)
        context = grid.with_halo(block_id, method.halo(decoder))
        decoded = np.asarray(method.decode(read_affinities(affinities, context), offsets, decoder))
        decoded, counts = _compact(decoded, block.relative_to(context), block_id)
        segmentation[block.slices] = decoded[block.relative_to(context)]
        slabs: dict[str, Any] = {}
        if method.stitch == "overlap":
            slabs = {name: decoded[box.relative_to(context)] for name, box in halo_slabs(block, context).items()}
        tmp = record.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, counts=counts, **slabs)
        tmp.replace(record)
        log.info("decoded block %d %s: %d objects", block_id, block, len(counts))


def _face_pairs(
    partial: Path, segmentation: Any, affinities_store: str | Path, grid: BlockGrid, decoder: DecoderSettings
) -> np.ndarray:
    """Pairs of block-local ids to join across all block faces."""
    if get_decoder(decoder.method).stitch == "affinity":
        affinities = open_array(affinities_store, AFFINITIES)
        channels = nearest_neighbour_channels(affinity_offsets(affinities_store))
        pairs = [
            affinity_face_pairs(segmentation, affinities, box, channels, decoder.threshold) for _, box in grid.blocks()
        ]
        return np.concatenate([EMPTY_PAIRS, *pairs])
    threshold = float(decoder.params["stitch_overlap"])
    pairs = [EMPTY_PAIRS]
    for block_id in range(len(grid)):
        # one block's slabs and those of its lower neighbours are loaded at a time
        index = grid.block_index(block_id)
        needed = [block_id] + [
            int(np.ravel_multi_index(tuple(i - (a == axis) for a, i in enumerate(index)), grid.grid_shape))
            for axis in range(3)
            if index[axis] > 0
        ]
        slabs = {i: np.load(_block_record(partial, i)) for i in needed}
        pairs.append(overlap_face_pairs(segmentation, grid, block_id, slabs, threshold))
    return np.concatenate(pairs)


def stitch_and_relabel(
    affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> None:
    """Join objects across block faces, handle small objects, relabel consecutively, publish."""
    partial = partial_path(output)
    segmentation = open_array(partial, SEGMENTATION, mode="r+")
    grid = decode_grid(segmentation.shape, settings)
    missing = [i for i in range(len(grid)) if not _block_record(partial, i).exists()]
    if missing:
        raise RuntimeError(f"{partial}: blocks {missing} were not decoded; rerun the workflow to decode them")
    counts_list = []
    for i in range(len(grid)):
        with np.load(_block_record(partial, i)) as record:
            counts_list.append(record["counts"].astype(np.int64))
    starts = np.cumsum([0] + [len(c) for c in counts_list])
    ids = np.concatenate(
        [np.zeros(0, dtype=np.uint64)]
        + [
            (np.uint64(i) << BLOCK_ID_SHIFT) + np.arange(1, len(c) + 1, dtype=np.uint64)
            for i, c in enumerate(counts_list)
        ]
    )  # sorted: by block, then local id
    counts = np.concatenate([np.zeros(0, dtype=np.int64), *counts_list])
    component = components(ids, _face_pairs(partial, segmentation, affinities_store, grid, decoder))
    sizes = np.bincount(component, weights=counts, minlength=int(component.max(initial=-1)) + 1).astype(np.int64)
    small: dict[int, int] = {}
    if decoder.min_size > 1 and (sizes < decoder.min_size).any():
        contact_pairs = np.zeros((0, 2), dtype=np.uint64)
        contact_counts = np.zeros(0, dtype=np.int64)
        if decoder.small_objects == "merge":
            contact_pairs, contact_counts = component_contacts(segmentation, grid, ids, component)
        small = small_components(sizes, decoder.min_size, decoder.small_objects, contact_pairs, contact_counts)
    final = final_labels(component, sizes, small)
    for block_id, box in progress(grid.blocks(), total=len(grid), desc="relabel"):
        table = np.concatenate([np.zeros(1, dtype=np.uint64), final[starts[block_id] : starts[block_id + 1]]])
        local = np.asarray(segmentation[box.slices]) & np.uint64(0xFFFFFFFF)
        segmentation[box.slices] = table[local]
    n_objects = int(final.max(initial=0))
    attrs = store_attrs(partial)
    attrs["provenance"]["n_objects"] = int(n_objects)
    set_store_attrs(partial, {"provenance": attrs["provenance"], "complete": True})
    log.info("stitched %d blocks into %d objects", len(grid), n_objects)
    commit(partial, output)


def decode_volume(
    affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> None:
    """All steps in one process (for tests and small volumes)."""
    prepare_decoding(affinities_store, output, decoder, settings)
    n_blocks = len(decode_grid(open_array(affinities_store, AFFINITIES).shape[1:], settings))
    decode_blocks(affinities_store, output, range(n_blocks), decoder, settings)
    stitch_and_relabel(affinities_store, output, decoder, settings)


__all__ = ["decode_blocks", "decode_volume", "prepare_decoding", "stitch_and_relabel"]
