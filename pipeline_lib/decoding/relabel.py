"""The last three steps of blockwise decoding: stitch, relabel block jobs, finish.

- :func:`stitch_blocks` (one job) reads the block records (and, for overlap stitching only,
  faces of the block labels), joins objects across block faces (union–find), handles small
  objects by their global sizes (merging them by global contact counts and first voxels
  summed from the records, :mod:`~pipeline_lib.decoding.stitching`) and publishes the
  stitch table, the final id of every block-local id
  (:mod:`~pipeline_lib.decoding.partial_store`);
- :func:`relabel_blocks` (block jobs, grouped like the decode block jobs) writes blocks of
  ``segmentation`` from their local labels and the table, then a marker per block;
- :func:`finish_decoding` (one job) checks that every block is relabelled, records the
  object count, deletes the scratch files and publishes the store under its final name.

Every step takes the ``<out>.partial`` path, reads the grid recorded there
(:class:`~pipeline_lib.blockstore.BlockStore`) and skips what is already done, so a rerun
after an interruption resumes: the stitch table is published by renaming a finished folder,
a block's relabel marker is written after its block, the store is renamed to its final name
only once complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from pipeline_lib.blockstore import BlockStore
from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding.face_stitch import OpenRecord, face_pairs, stream_cc_table
from pipeline_lib.decoding.graph_decode import build_graph, final_table, segment_nodes
from pipeline_lib.decoding.partial_store import (
    DECODED,
    RELABELLED_BLOCKS,
    SCRATCH,
    block_record,
    labels_path,
    stitch_dir,
)
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.decoding.stitching import (
    EMPTY_PAIRS,
    component_contacts,
    components,
    final_labels,
    globalize,
    small_components,
)
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import SEGMENTATION, open_array, store_attrs
from pipeline_lib.progress import progress

log = logging.getLogger(__name__)


def _face_pairs(grid: BlockGrid, decoder: DecoderSettings, open_record: OpenRecord) -> NDArray[np.uint64]:
    """Pairs of global ids to join across all block faces (only decoders stitched by face pairs have any)."""
    if get_decoder(decoder.method).stitch != "affinity":
        return EMPTY_PAIRS
    return np.concatenate(face_pairs(grid, open_record)[1])


def records(partial: Path) -> OpenRecord:
    """Block ``i``'s record in the store ``partial``, opened (and closed) as a context manager."""

    def open_record(block_id: int) -> Any:
        return np.load(block_record(partial, block_id))

    return open_record


def _final_table(
    partial: Path, grid: BlockGrid, decoder: DecoderSettings, open_record: OpenRecord
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The final id of every block-local id (block after block) and where each block's ids begin,
    all in memory (the stitch of overlap decoders and of merging small objects)."""
    merge = decoder.small_objects == "merge" and decoder.min_size > 1
    if get_decoder(decoder.method).stitch == "graph":
        return _graph_table(grid, decoder, merge, open_record)
    counts_list, first_list = [], []
    for i in range(len(grid)):
        with open_record(i) as record:
            counts_list.append(record["counts"].astype(np.int64))
            if merge:
                if "first_voxel" not in record:
                    raise RuntimeError(
                        f"{partial}: block {i}'s record lacks what merging small objects needs "
                        "(written by an older version); delete the .partial store and rerun"
                    )
                first_list.append(record["first_voxel"].astype(np.int64))
    starts = np.cumsum([0] + [len(c) for c in counts_list]).astype(np.int64)
    ids = np.concatenate(
        [np.zeros(0, dtype=np.uint64)] + [globalize(np.arange(1, len(c) + 1), i) for i, c in enumerate(counts_list)]
    )  # sorted: by block, then local id
    counts = np.concatenate([np.zeros(0, dtype=np.int64), *counts_list])
    del counts_list
    component = components(ids, _face_pairs(grid, decoder, open_record))
    del ids
    n_components = int(component.max(initial=-1)) + 1
    sizes = np.bincount(component, weights=counts, minlength=n_components).astype(np.int64)
    # connected components: a global one-voxel component is a voxel without any edge
    background = sizes == 1 if get_decoder(decoder.method).stitch == "affinity" else np.zeros(len(sizes), bool)
    small: dict[int, int] = {}
    if decoder.min_size > 1 and ((sizes < decoder.min_size) & ~background).any():
        contact_pairs = np.zeros((0, 2), dtype=np.uint64)
        contact_counts = np.zeros(0, dtype=np.int64)
        first_voxels = None
        if merge:
            first_voxels = np.full(n_components, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(first_voxels, component, np.concatenate([np.zeros(0, dtype=np.int64), *first_list]))
            table = np.where(background, 0, np.arange(1, n_components + 1)).astype(np.uint64)[component]

            def block_table(i: int) -> NDArray[np.uint64]:
                return np.concatenate([np.zeros(1, dtype=np.uint64), table[starts[i] : starts[i + 1]]])

            contact_pairs, contact_counts = component_contacts(grid, open_record, block_table, n_components)
        small = small_components(
            sizes, decoder.min_size, decoder.small_objects, contact_pairs, contact_counts, first_voxels
        )
    return final_labels(component, sizes, small, background), starts


def _graph_table(
    grid: BlockGrid, decoder: DecoderSettings, merge: bool, open_record: OpenRecord
) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The final id of every fragment: one graph from the block records, agglomerated once."""
    counts, firsts, seed_voxels = [], [], []
    for i in range(len(grid)):
        with open_record(i) as record:
            counts.append(record["counts"].astype(np.int64))
            if merge:
                firsts.append(record["first_voxel"].astype(np.int64))
            if "seed_voxels" in record:  # seeded watershed: seeds at decoder.threshold
                seed_voxels.append(record["seed_voxels"].astype(np.int64))
            offsets = record["offsets"].tolist()  # the channels the blocks read
    graph, starts = build_graph(grid, offsets, counts, open_record)
    seeds = None
    if seed_voxels:
        seed_graph, _ = build_graph(grid, offsets, counts, open_record, prefix="seed_")
        seeds = (np.concatenate(seed_voxels), seed_graph.nearest)
    ((_, segment),) = segment_nodes(graph, decoder, [decoder.threshold], None if seeds is None else lambda _: seeds)
    first = np.concatenate([np.zeros(0, dtype=np.int64), *firsts]) if merge else None
    log.info(
        "graph: %d fragments, %d nearest and %d long-range edges, %.1f MB",
        graph.n_nodes,
        len(graph.nearest),
        len(graph.long_range),
        graph.nbytes / 1e6,
    )
    return final_table(graph, segment, decoder, first), starts


def _segmentation(partial: Path, mode: str = "r") -> Any:
    with zarr.config.set({"array.write_empty_chunks": True}):  # every chunk is written once: skip zarr's fill check
        return open_array(partial, SEGMENTATION, mode=mode)


def write_table(partial: Path, grid: BlockGrid, decoder: DecoderSettings, open_record: OpenRecord, folder: Path) -> int:
    """Write the stitch table (``final.npy``, ``starts.npy``) into ``folder``; returns the object count.

    Connected components without merging of small objects stream over the blocks
    (:mod:`~pipeline_lib.decoding.face_stitch`); the other stitches are computed in memory.
    """
    merge = decoder.small_objects == "merge" and decoder.min_size > 1
    if get_decoder(decoder.method).stitch == "affinity" and not merge:
        return stream_cc_table(grid, open_record, decoder.min_size, folder)
    final, starts = _final_table(partial, grid, decoder, open_record)
    np.save(folder / "final.npy", final)
    np.save(folder / "starts.npy", starts)
    return int(final.max(initial=0))


def stitch_blocks(partial: str | Path, decoder: DecoderSettings) -> int:
    """Compute and publish the stitch table of the store ``partial``; returns the object count.

    Skipped (the published table's count returned) when the table exists.
    """
    store = BlockStore.open(partial, DECODED)
    partial = store.partial
    if store.complete:  # finished before an interrupted publication
        return int(store_attrs(partial)["provenance"]["n_objects"])
    table = stitch_dir(partial)
    if table.exists():
        log.info("%s: stitch table already written", partial)
        return _n_objects(partial)
    store.check()
    grid = store.grid
    tmp = table.with_name(f"{table.name}.tmp")
    if tmp.exists():  # left by an interrupted stitch
        shutil.rmtree(tmp)
    tmp.mkdir()
    n_objects = write_table(partial, grid, decoder, records(partial), tmp)
    (tmp / "info.json").write_text(json.dumps({"n_objects": n_objects, "n_blocks": len(grid)}))
    os.rename(tmp, table)
    log.info("stitched %d blocks into %d objects", len(grid), n_objects)
    return n_objects


def _n_objects(partial: Path) -> int:
    return int(json.loads((stitch_dir(partial) / "info.json").read_text())["n_objects"])


def relabel_blocks(partial: str | Path, block_ids: Iterable[int]) -> list[int]:
    """Write the given blocks of ``segmentation`` in the store ``partial`` with their final ids,
    skipping blocks already done.

    Returns the ids of the blocks written by this call. Reads the stitch table memory-mapped,
    so a job holds one block of labels and the table slices of its blocks.
    """
    store = BlockStore.open(partial, RELABELLED_BLOCKS)
    partial = store.partial
    if store.complete:
        return []
    table = stitch_dir(partial)
    if not table.exists():
        raise RuntimeError(f"{partial}: no stitch table; rerun the workflow to stitch the blocks first")
    segmentation = _segmentation(partial, mode="r+")
    grid = store.grid
    final: NDArray[np.uint64] = np.load(table / "final.npy", mmap_mode="r")
    starts: NDArray[np.int64] = np.load(table / "starts.npy")
    if len(starts) != len(grid) + 1:
        raise RuntimeError(f"{partial}: the stitch table has {len(starts) - 1} blocks, the grid {len(grid)}")
    store.marker(0).parent.mkdir(exist_ok=True)
    done: list[int] = []
    block_ids = list(block_ids)
    for block_id in progress(block_ids, total=len(block_ids), desc="relabel"):
        if store.done(block_id):
            log.info("block %d already relabelled", block_id)
            continue
        lookup = np.concatenate([np.zeros(1, dtype=np.uint64), final[starts[block_id] : starts[block_id + 1]]])
        lookup = lookup.astype(segmentation.dtype, copy=False)  # fits: fewer ids than voxels (segmentation_dtype)
        segmentation[grid.block(block_id).slices] = np.take(lookup, np.load(labels_path(partial, block_id)))
        store.mark(block_id)  # after the block: a block without marker is rewritten on rerun
        done.append(block_id)
    log.info("relabelled %d of %d blocks", len(done), len(block_ids))
    return done


def finish_decoding(partial: str | Path) -> Path:
    """Publish the store ``partial`` under its final name once every block has its relabel
    marker, deleting the scratch files; returns the final name."""
    store = BlockStore.open(partial, RELABELLED_BLOCKS)
    attrs = None
    if not store.complete:
        if not stitch_dir(store.partial).exists():
            raise RuntimeError(f"{store.partial}: no stitch table; rerun the workflow to stitch the blocks")
        store.check()
        record = store_attrs(store.partial)["provenance"]
        attrs = {"provenance": {**record, "n_objects": _n_objects(store.partial)}}
    return store.publish(attrs, scratch=SCRATCH)  # scratch also after an interruption before the rename


__all__ = ["finish_decoding", "relabel_blocks", "stitch_blocks"]
