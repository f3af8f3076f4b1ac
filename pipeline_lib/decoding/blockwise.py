"""Blockwise decoding with stitching across block faces.

Steps (each a Snakemake job or a group of block jobs, like prediction):

1. :func:`prepare_decoding` creates ``<out>.partial`` with an empty ``segmentation`` (uint64,
   zstd level 1) and the folders for the block jobs;
2. :func:`decode_blocks` decodes blocks independently and, per block ``i``, writes

   - ``<partial>/block_labels/<i>.npy``: the block's own region with block-local ids
     ``1..n`` (0 background), uint16 when ``n < 2**16`` else uint32, uncompressed so that
     the stitch can memory-map faces of it;
   - ``<partial>/blocks/<i>.npz`` (written last: it marks the block done): ``counts``, the
     voxel count of each local id, plus what the stitch needs across faces (below);

   a block's object ``j`` has the global id ``i << 32 | j`` in the stitch;
3. :func:`stitch_and_relabel` finds the pairs of objects to join across every face between
   neighbouring blocks (:mod:`~pipeline_lib.decoding.stitching`), joins them (union–find),
   handles objects smaller than ``min_size`` by their *global* sizes (to background, or
   merged into the neighbour they touch most), writes every block of ``segmentation`` once
   with consecutive ids, deletes ``block_labels`` and ``blocks`` and publishes the store
   under its final name.

Connected components (``"affinity"`` stitching) read each block's nearest-neighbour
affinities without halo and label the block's own edges
(:func:`~pipeline_lib.decoding.connected_components.label_block`); the record keeps, for
each axis with a neighbour below, the labels on the first plane (``first{a}``) and the
thresholded edges stored there, which cross the face (``crossing{a}``), and for each axis
with a neighbour above the labels on the last plane (``last{a}``). The stitch joins across
faces from the records alone, so it reads no affinities, and sends global one-voxel
components (voxels without any edge) to background. The result equals
:func:`~pipeline_lib.decoding.registry.decode_array` on the whole volume up to a
permutation of ids: every edge is used exactly once, inside a block or by the stitch, and
sizes and contacts are summed over blocks.

Watershed, waterz and mutex watershed (``"overlap"`` stitching) decode each block with the
halo ``params.halo`` and join objects of neighbouring blocks that agree on the overlap
(``params.stitch_overlap``), as cluster_tools' blockwise mutex watershed does; the record
keeps the labels the block gave inside its halo (``lo{a}``, ``hi{a}``, local ids, objects
seen only in the halo numbered after the block's own). This is an approximation of
whole-volume decoding; ``tests/decoding/test_blockwise.py`` measures and bounds its
deviation.

Memory: one block with its halo at a time while decoding; while stitching, a few blocks'
records (or faces) at a time, one block of labels while relabelling, and the id tables.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import zarr
from numpy.typing import NDArray

from pipeline_lib.config import DecoderSettings, DecodeSettings
from pipeline_lib.decoding.affinity_io import AFFINITIES, affinity_offsets, read_affinities, read_stored
from pipeline_lib.decoding.connected_components import edges_above, label_block, nearest_neighbour_channels, plane
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.decoding.stitching import (
    BLOCK_ID_SHIFT,
    EMPTY_PAIRS,
    component_contacts,
    components,
    crossing_pairs,
    final_labels,
    globalize,
    halo_slabs,
    lower_neighbour,
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

LABELS = "block_labels"
SEGMENTATION_COMPRESSION = {"name": "zstd", "configuration": {"level": 1, "checksum": False}}


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
        partial,
        SEGMENTATION,
        shape,
        np.uint64,
        settings.chunk_shape,
        voxel_size(affinities_store, AFFINITIES),
        compressors=SEGMENTATION_COMPRESSION,
    )
    set_store_attrs(
        partial, {"provenance": provenance("decode", {"decoder": decoder, "decode": settings}, [affinities_store])}
    )
    (partial / "blocks").mkdir(exist_ok=True)
    (partial / LABELS).mkdir(exist_ok=True)
    return partial


def _block_record(partial: Path, block_id: int) -> Path:
    return partial / "blocks" / f"{block_id}.npz"


def _labels_path(partial: Path, block_id: int) -> Path:
    return partial / LABELS / f"{block_id}.npy"


def _compact(decoded: NDArray[np.integer], core: tuple[slice, ...]) -> tuple[NDArray[np.uint32], NDArray[np.int64]]:
    """Block-local ids for a decoded context, and the voxel counts of the core's objects.

    The core's objects get local ids ``1..n`` (in the order of their decoder ids), objects
    seen only in the halo ``n+1..``; 0 stays 0.
    """
    core_ids, counts = fastremap.unique(decoded[core], return_counts=True)
    keep = core_ids != 0
    core_ids, counts = core_ids[keep], counts[keep]
    every = fastremap.unique(decoded)
    halo_only = np.setdiff1d(every[every != 0], core_ids)
    if len(core_ids) + len(halo_only) >= 2**32:
        raise OverflowError("2**32 or more objects in one block")
    mapping = {0: 0}
    mapping.update(zip(core_ids.tolist(), range(1, len(core_ids) + 1), strict=True))
    first_halo = len(core_ids) + 1
    mapping.update(zip(halo_only.tolist(), range(first_halo, first_halo + len(halo_only)), strict=True))
    labels = fastremap.remap(decoded, mapping, preserve_missing_labels=False).astype(np.uint32)
    return labels, counts.astype(np.int64)


def _decode_cc_block(
    affinities: Any, grid: BlockGrid, block_id: int, channels: tuple[int, int, int], threshold: float
) -> tuple[NDArray[np.unsignedinteger], NDArray[np.int64], dict[str, NDArray[Any]]]:
    """Connected components of one block without halo: labels, counts, face data (module docstring)."""
    block = grid.block(block_id)
    stored = read_stored(affinities, block, channels)
    open_faces = [(block.begin[a] > 0, block.end[a] < grid.shape[a]) for a in range(3)]
    result = label_block([edges_above(stored[a], threshold) for a in range(3)], open_faces)
    del stored
    faces: dict[str, NDArray[Any]] = {}
    for axis, (below, above) in enumerate(open_faces):
        if below:
            faces[f"first{axis}"] = plane(result.labels, axis, 0)
            faces[f"crossing{axis}"] = result.crossing[axis]
        if above:
            faces[f"last{axis}"] = plane(result.labels, axis, -1)
    return result.labels, result.counts, faces


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
    grid = decode_grid(affinities.shape[1:], settings)
    method = get_decoder(decoder.method)
    offsets = affinity_offsets(affinities_store)
    for block_id in block_ids:
        record = _block_record(partial, block_id)
        if record.exists():
            continue
        extras: dict[str, Any]
        if method.stitch == "affinity":
            channels = nearest_neighbour_channels(offsets)
            labels, counts, extras = _decode_cc_block(affinities, grid, block_id, channels, decoder.threshold)
        else:
            block = grid.block(block_id)
            context = grid.with_halo(block_id, method.halo(decoder))
            decoded = np.asarray(method.decode(read_affinities(affinities, context), offsets, decoder))
            in_context, counts = _compact(decoded, block.relative_to(context))
            labels = in_context[block.relative_to(context)]
            extras = {name: in_context[box.relative_to(context)] for name, box in halo_slabs(block, context).items()}
        tmp_labels = _labels_path(partial, block_id).with_suffix(".tmp.npy")
        np.save(tmp_labels, np.ascontiguousarray(labels))
        tmp_labels.replace(_labels_path(partial, block_id))
        tmp = record.with_suffix(".tmp.npz")
        np.savez(tmp, counts=counts, **extras)  # small, read once: not worth compressing
        tmp.replace(record)
        log.info("decoded block %d %s: %d objects", block_id, grid.block(block_id), len(counts))


def _face_pairs(partial: Path, grid: BlockGrid, decoder: DecoderSettings) -> NDArray[np.uint64]:
    """Pairs of global ids to join across all block faces (a block's record and its lower neighbours' at a time)."""
    pairs = [EMPTY_PAIRS]
    if get_decoder(decoder.method).stitch == "affinity":
        for block_id in range(len(grid)):
            with np.load(_block_record(partial, block_id)) as here:
                for axis in range(3):
                    below = lower_neighbour(grid, block_id, axis)
                    if below is None:
                        continue
                    with np.load(_block_record(partial, below)) as there:
                        local = crossing_pairs(here[f"first{axis}"], here[f"crossing{axis}"], there[f"last{axis}"])
                    pairs.append(np.stack([globalize(local[:, 0], block_id), globalize(local[:, 1], below)], axis=1))
        return np.concatenate(pairs)
    threshold = float(decoder.params["stitch_overlap"])
    for block_id in range(len(grid)):
        needed = [block_id] + [b for b in (lower_neighbour(grid, block_id, a) for a in range(3)) if b is not None]
        slabs = {i: np.load(_block_record(partial, i)) for i in needed}
        pairs.append(overlap_face_pairs(grid, block_id, slabs, threshold, lambda i: _block_labels(partial, i)))
    return np.concatenate(pairs)


def _block_labels(partial: Path, block_id: int) -> NDArray[np.unsignedinteger]:
    labels: NDArray[np.unsignedinteger] = np.load(_labels_path(partial, block_id), mmap_mode="r")
    return labels


def stitch_and_relabel(
    affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> None:
    """Join objects across block faces, handle small objects, relabel consecutively, publish."""
    partial = partial_path(output)
    if store_attrs(partial).get("complete"):  # relabelled before an interrupted publication
        commit(partial, output)
        return
    with zarr.config.set({"array.write_empty_chunks": True}):  # every chunk is written once: skip zarr's fill check
        segmentation = open_array(partial, SEGMENTATION, mode="r+")
    grid = decode_grid(segmentation.shape, settings)
    missing = [
        i for i in range(len(grid)) if not (_block_record(partial, i).exists() and _labels_path(partial, i).exists())
    ]
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
    del counts_list
    component = components(ids, _face_pairs(partial, grid, decoder))
    del ids
    sizes = np.bincount(component, weights=counts, minlength=int(component.max(initial=-1)) + 1).astype(np.int64)
    # connected components: a global one-voxel component is a voxel without any edge
    background = sizes == 1 if get_decoder(decoder.method).stitch == "affinity" else np.zeros(len(sizes), bool)
    small: dict[int, int] = {}
    if decoder.min_size > 1 and ((sizes < decoder.min_size) & ~background).any():
        contact_pairs = np.zeros((0, 2), dtype=np.uint64)
        contact_counts = np.zeros(0, dtype=np.int64)
        if decoder.small_objects == "merge":
            table = np.where(background, 0, np.arange(1, len(sizes) + 1)).astype(np.uint64)[component]

            def block_table(i: int) -> NDArray[np.uint64]:
                return np.concatenate([np.zeros(1, dtype=np.uint64), table[starts[i] : starts[i + 1]]])

            contact_pairs, contact_counts = component_contacts(grid, lambda i: _block_labels(partial, i), block_table)
        small = small_components(sizes, decoder.min_size, decoder.small_objects, contact_pairs, contact_counts)
    final = final_labels(component, sizes, small, background)
    for block_id, box in progress(grid.blocks(), total=len(grid), desc="relabel"):
        table = np.concatenate([np.zeros(1, dtype=np.uint64), final[starts[block_id] : starts[block_id + 1]]])
        segmentation[box.slices] = table[np.load(_labels_path(partial, block_id))]
    n_objects = int(final.max(initial=0))
    attrs = store_attrs(partial)
    attrs["provenance"]["n_objects"] = int(n_objects)
    set_store_attrs(partial, {"provenance": attrs["provenance"], "complete": True})
    for folder in (LABELS, "blocks"):
        shutil.rmtree(partial / folder)
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
