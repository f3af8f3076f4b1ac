"""Blockwise decoding with exact stitching across block faces.

Steps (each a Snakemake job or a group of block jobs, like prediction):

1. :func:`prepare_decoding` creates ``<out>.partial`` with an empty ``segmentation``;
2. :func:`decode_blocks` decodes blocks independently (each read with the decoder's halo),
   makes ids globally unique (``block_id << 32 | local id``), writes them and records the
   ids and voxel counts of each block;
3. :func:`stitch_and_relabel` joins objects across every face between neighbouring blocks
   where the affinity of an edge crossing the face exceeds the decoder threshold (union–find
   over the pairs), removes objects smaller than ``min_size`` (global sizes), relabels all
   blocks consecutively and publishes the store under its final name.

For connected components this is exactly the whole-volume result up to a permutation of
ids: an edge inside a block is used by that block's decoding, an edge crossing a face by the
stitch, and each edge exactly once. Memory is bounded by one block plus the id tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import fastremap
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components

from pipeline_lib.config import DecoderSettings, DecodeSettings
from pipeline_lib.decoding.connected_components import nearest_neighbour_channels
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.geometry import BlockGrid, Box
from pipeline_lib.inference.predict import AFFINITIES, decode_affinities
from pipeline_lib.io.volumes import commit, create_array, open_array, partial_path, set_store_attrs, store_attrs, voxel_size
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance

log = logging.getLogger(__name__)

SEGMENTATION = "segmentation"
BLOCK_ID_SHIFT = np.uint64(32)


def decode_grid(shape: tuple[int, ...], settings: DecodeSettings) -> BlockGrid:
    return BlockGrid.aligned(shape, settings.block_shape, settings.chunk_shape)


def _offsets(affinities_store: str | Path) -> list[list[int]]:
    offsets: list[list[int]] = open_array(affinities_store, AFFINITIES).attrs["offsets"]  # type: ignore[assignment]
    return offsets


def prepare_decoding(affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings) -> Path:
    partial = partial_path(output)
    shape = open_array(affinities_store, AFFINITIES).shape[1:]
    decode_grid(shape, settings)  # rejects a misaligned block shape before any block runs
    create_array(partial, SEGMENTATION, shape, np.uint64, settings.chunk_shape, voxel_size(affinities_store, AFFINITIES))
    set_store_attrs(partial, {"provenance": provenance("decode", {"decoder": decoder, "decode": settings}, [affinities_store])})
    (partial / "blocks").mkdir(exist_ok=True)
    return partial


def _block_record(partial: Path, block_id: int) -> Path:
    return partial / "blocks" / f"{block_id}.npz"


def decode_blocks(affinities_store: str | Path, output: str | Path, block_ids: Iterable[int], decoder: DecoderSettings, settings: DecodeSettings) -> None:
    """Decode the given blocks into ``<output>.partial``, skipping blocks already done."""
    partial = partial_path(output)
    affinities = open_array(affinities_store, AFFINITIES)
    segmentation = open_array(partial, SEGMENTATION, mode="r+")
    grid = decode_grid(affinities.shape[1:], settings)
    method = get_decoder(decoder.method)
    offsets = _offsets(affinities_store)
    for block_id in block_ids:
        record = _block_record(partial, block_id)
        if record.exists():
            continue
        block = grid.block(block_id)
        context = grid.with_halo(block_id, method.halo)
        affs = decode_affinities(np.asarray(affinities[(slice(None), *context.slices)]))
        labels = np.asarray(method.decode(affs, offsets, decoder))[block.relative_to(context)]
        labels = labels.astype(np.uint64)
        foreground = labels != 0
        labels[foreground] |= np.uint64(block_id) << BLOCK_ID_SHIFT
        segmentation[block.slices] = labels
        ids, counts = fastremap.unique(labels, return_counts=True)
        keep = ids != 0
        tmp = record.with_suffix(".tmp.npz")
        np.savez(tmp, ids=ids[keep], counts=counts[keep])
        tmp.replace(record)
        log.info("decoded block %d %s: %d objects", block_id, block, int(keep.sum()))


def _face_pairs(segmentation: object, affinities: object, block: Box, channels: tuple[int, int, int], threshold: float) -> NDArray[np.uint64]:
    """Label pairs joined by an edge crossing the block's lower face along each axis."""
    pairs = []
    for axis in range(3):
        if block.begin[axis] == 0:
            continue
        here = list(block.slices)
        there = list(block.slices)
        here[axis] = slice(block.begin[axis], block.begin[axis] + 1)
        there[axis] = slice(block.begin[axis] - 1, block.begin[axis])
        a = np.asarray(segmentation[tuple(here)]).ravel()  # type: ignore[index]
        b = np.asarray(segmentation[tuple(there)]).ravel()  # type: ignore[index]
        edge = decode_affinities(np.asarray(affinities[(channels[axis], *here)])).ravel()  # type: ignore[index]
        joined = (edge > threshold) & (a != 0) & (b != 0)
        pairs.append(np.stack([a[joined], b[joined]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.uint64)


def _global_mapping(ids: NDArray[np.uint64], counts: NDArray[np.int64], pairs: NDArray[np.uint64], min_size: int) -> dict[int, int]:
    """Block-local ids → final consecutive ids (0 for objects below ``min_size``)."""
    index = {int(i): n for n, i in enumerate(ids)}
    if len(pairs):
        rows = np.fromiter((index[int(a)] for a in pairs[:, 0]), dtype=np.int64, count=len(pairs))
        cols = np.fromiter((index[int(b)] for b in pairs[:, 1]), dtype=np.int64, count=len(pairs))
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = graph_components(graph, directed=False)
    sizes = np.bincount(component, weights=counts, minlength=int(component.max(initial=-1)) + 1)
    kept = sizes >= max(min_size, 1)
    final = np.zeros(len(sizes), dtype=np.uint64)
    final[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.uint64)
    return dict(zip(ids.tolist(), final[component].tolist(), strict=True))


def stitch_and_relabel(affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings) -> None:
    """Join objects across block faces, filter by size, relabel consecutively, publish."""
    partial = partial_path(output)
    affinities = open_array(affinities_store, AFFINITIES)
    segmentation = open_array(partial, SEGMENTATION, mode="r+")
    grid = decode_grid(segmentation.shape, settings)
    missing = [i for i in range(len(grid)) if not _block_record(partial, i).exists()]
    if missing:
        raise RuntimeError(f"{partial}: blocks {missing} were not decoded; rerun the workflow to decode them")
    records = [np.load(_block_record(partial, i)) for i in range(len(grid))]
    ids = np.concatenate([r["ids"] for r in records]).astype(np.uint64)
    counts = np.concatenate([r["counts"] for r in records]).astype(np.int64)
    channels = nearest_neighbour_channels(_offsets(affinities_store))
    pairs = [_face_pairs(segmentation, affinities, box, channels, decoder.threshold) for _, box in grid.blocks()]
    mapping = _global_mapping(ids, counts, np.concatenate(pairs), decoder.min_size)
    mapping[0] = 0
    for _, box in progress(grid.blocks(), total=len(grid), desc="relabel"):
        block = np.asarray(segmentation[box.slices])
        segmentation[box.slices] = fastremap.remap(block, mapping, preserve_missing_labels=False)
    n_objects = max(mapping.values(), default=0)
    attrs = store_attrs(partial)
    attrs["provenance"]["n_objects"] = int(n_objects)
    set_store_attrs(partial, {"provenance": attrs["provenance"], "complete": True})
    log.info("stitched %d blocks into %d objects", len(grid), n_objects)
    commit(partial, output)


def decode_volume(affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings) -> None:
    """All steps in one process (for tests and small volumes)."""
    prepare_decoding(affinities_store, output, decoder, settings)
    n_blocks = len(decode_grid(open_array(affinities_store, AFFINITIES).shape[1:], settings))
    decode_blocks(affinities_store, output, range(n_blocks), decoder, settings)
    stitch_and_relabel(affinities_store, output, decoder, settings)


__all__ = ["decode_blocks", "decode_volume", "prepare_decoding", "stitch_and_relabel"]
