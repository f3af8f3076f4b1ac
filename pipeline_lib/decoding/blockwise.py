"""Blockwise decoding with stitching across block faces.

Steps (each a Snakemake job or a group of block jobs, like prediction):

1. :func:`prepare_decoding` creates ``<out>.partial`` with an empty ``segmentation``
   (:func:`segmentation_dtype`, zstd level 1), records the block grid and its halo
   (:class:`~pipeline_lib.blockstore.BlockStore`) and makes the folders for the block jobs;
2. :func:`decode_blocks` decodes blocks independently and, per block ``i``, writes

   - ``<partial>/block_labels/<i>.npy``: the block's own region with block-local ids
     ``1..n`` (0 background; uint16 or uint32), uncompressed so that the stitch can
     memory-map faces of it (scratch of 2–4 bytes per voxel while decoding runs);
   - ``<partial>/blocks/<i>.npz`` (written last: it marks the block done): ``counts``, the
     voxel count of each local id, plus what the stitch needs across faces (below);

   a block's object ``j`` has the global id ``i << 32 | j`` in the stitch;
3. :func:`~pipeline_lib.decoding.relabel.stitch_blocks` (one job) finds the pairs of objects
   to join across every face between neighbouring blocks
   (:mod:`~pipeline_lib.decoding.stitching`), joins them (union–find), handles objects
   smaller than ``min_size`` by their *global* sizes (to background, or merged into a
   neighbour, see :mod:`~pipeline_lib.decoding.postprocess`) and writes the final consecutive id of every block-local id
   (``<partial>/stitch/``);
4. :func:`~pipeline_lib.decoding.relabel.relabel_blocks` (block jobs, grouped like the
   decode jobs) writes each block of ``segmentation`` once, with its final ids, then a
   marker ``<partial>/relabelled/<i>``;
5. :func:`~pipeline_lib.decoding.relabel.finish_decoding` (one job) checks every marker,
   deletes the scratch files (:mod:`~pipeline_lib.decoding.partial_store`) and publishes
   the store under its final name.

:func:`stitch_and_relabel` runs steps 3–5 in one process, :func:`decode_volume` all five.
Every step takes the ``<out>.partial`` path (the path the Snakemake rules declare).

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

waterz and mutex watershed (``"graph"`` stitching) compute fragments of each block with
the context ``params.halo`` and record the region graph's edges among them and the face
planes for the edges across the block's lower faces
(:func:`~pipeline_lib.decoding.graph_decode.graph_record`); the stitch builds one global
graph from the records, agglomerates it once and writes the final id of every fragment
(:mod:`~pipeline_lib.decoding.graph_decode`). Only the fragments depend on the grid, near
block faces.

Seeded watershed (``"overlap"`` stitching) decodes each block with the
halo ``params.halo`` and joins objects of neighbouring blocks that agree on the overlap
(``params.stitch_overlap``), as cluster_tools' blockwise mutex watershed does; the record
keeps the labels the block gave inside its halo (``lo{a}``, ``hi{a}``, local ids, objects
seen only in the halo numbered after the block's own). This is an approximation of
whole-volume decoding; ``tests/decoding/test_blockwise.py`` measures and bounds its
deviation.

With ``small_objects: merge`` and ``min_size > 1`` every record also keeps what merging
needs globally (:func:`~pipeline_lib.decoding.stitching.small_object_record`): the first
voxel of each local id in C order of the volume (``first_voxel``), the contacts between the
block's own objects (``contact_pairs``, ``contact_counts``) and its first and last planes
(``first{a}``, ``last{a}``) for the contacts across faces; the stitch sums them over blocks
and reads no block labels for them.

Memory: one block with its halo at a time while decoding; while stitching, a few blocks'
records (or faces) at a time and the id tables; while relabelling, one block of labels and
the table slices of a job's blocks (the table is memory-mapped).
"""

from __future__ import annotations

import io
import logging
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
from numpy.typing import NDArray

from pipeline_lib.blockstore import GRID_ATTR, BlockStore, grid_record
from pipeline_lib.config import DecoderSettings, DecodeSettings
from pipeline_lib.decoding.connected_components import edges_above, label_block
from pipeline_lib.decoding.graph_decode import block_fragments, graph_record
from pipeline_lib.decoding.partial_store import DECODED, LABELS, RELABELLED_BLOCKS, decode_grid, labels_path
from pipeline_lib.decoding.registry import get_decoder
from pipeline_lib.decoding.relabel import finish_decoding, relabel_blocks, stitch_blocks
from pipeline_lib.decoding.stitching import face_planes, halo_slabs, small_object_record
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
    affinities_store: str | Path, partial: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> Path:
    """Create the empty store ``partial`` (``<output>.partial``) for the block jobs to fill.

    A partial store left by an interrupted run with the same settings and the same
    affinities (path and the provenance recorded in them, so a re-prediction at the same
    path counts as new input) is kept, so that the steps after this one resume from what is
    done; any other is replaced.
    """
    partial = Path(partial)
    shape = open_array(affinities_store, AFFINITIES).shape[1:]
    grid = decode_grid(shape, settings)  # rejects a misaligned block shape before any block runs
    method = get_decoder(decoder.method)
    halo = (0, 0, 0) if method.stitch == "affinity" else method.halo(decoder)
    record = provenance("decode", {"decoder": decoder, "decode": settings}, [affinities_store])
    source = store_attrs(affinities_store).get("provenance")
    if partial.exists():
        same = {"affinities_provenance": source, GRID_ATTR: grid_record(grid, settings.chunk_shape, halo)}
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
    set_store_attrs(partial, {"provenance": record, "affinities_provenance": source})
    BlockStore.create(partial, grid, settings.chunk_shape, DECODED, halo, steps=[RELABELLED_BLOCKS])
    _make_folders(partial)
    return partial


def _make_folders(partial: Path) -> None:
    for folder in (DECODED.folder, LABELS, RELABELLED_BLOCKS.folder):
        (partial / folder).mkdir(exist_ok=True)


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
) -> tuple[NDArray[np.unsignedinteger], NDArray[np.int64], dict[str, NDArray[Any]]]:
    """Fragments of one block computed with context ``halo``, their counts and the block's graph record."""
    block = grid.block(block_id)
    context = grid.with_halo(block_id, halo)
    stored = read_stored(affinities, context, channels)
    core = block.relative_to(context)
    labels, counts = block_fragments(as_float(stored), offsets, core, decoder)
    merge = decoder.small_objects == "merge" and decoder.min_size > 1
    record = graph_record(labels, stored[(slice(None), *core)], offsets, grid, block_id, merge)
    return labels, counts, record


def decode_blocks(
    affinities_store: str | Path,
    partial: str | Path,
    block_ids: Iterable[int],
    decoder: DecoderSettings,
) -> None:
    """Decode the given blocks into the store ``partial``, skipping blocks already done."""
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
    for block_id in block_ids:
        if store.done(block_id):
            continue
        extras: dict[str, Any]
        if method.stitch == "affinity":
            labels, counts, extras = _decode_cc_block(affinities, grid, block_id, zyx_channels, decoder.threshold)
        elif method.stitch == "graph":
            labels, counts, extras = _graph_block(affinities, grid, block_id, used, used_offsets, decoder, store.halo)
        else:
            block = grid.block(block_id)
            context = grid.with_halo(block_id, store.halo)
            read = as_float(read_stored(affinities, context, used))
            decoded = np.asarray(method.decode(read, used_offsets, decoder))
            in_context, counts = _compact(decoded, block.relative_to(context))
            labels = in_context[block.relative_to(context)]
            extras = {name: in_context[box.relative_to(context)] for name, box in halo_slabs(block, context).items()}
        merge = decoder.small_objects == "merge" and decoder.min_size > 1
        if method.stitch == "graph":
            pass  # the graph record holds its faces, contacts and first voxels
        elif method.stitch == "affinity" or merge:  # faces for the stitch's joins and contacts
            extras.update(face_planes(labels, grid, block_id))
        if merge and method.stitch != "graph":  # contacts and first voxels for the stitch
            extras.update(small_object_record(labels, grid, block_id, len(counts)))
        tmp_labels = labels_path(store.partial, block_id).with_suffix(".tmp.npy")
        np.save(tmp_labels, np.ascontiguousarray(labels))
        tmp_labels.replace(labels_path(store.partial, block_id))
        record = io.BytesIO()
        np.savez(record, counts=counts, **extras)  # small, read once: not worth compressing
        store.mark(block_id, record.getvalue())  # the record is the block's marker: written last
        log.info("decoded block %d %s: %d objects", block_id, grid.block(block_id), len(counts))


def stitch_and_relabel(partial: str | Path, decoder: DecoderSettings) -> Path:
    """Stitch, relabel every block and publish, in one process (steps 3–5); returns the published path."""
    stitch_blocks(partial, decoder)
    relabel_blocks(partial, range(len(BlockStore.open(partial, DECODED))))
    return finish_decoding(partial)


def decode_volume(
    affinities_store: str | Path, output: str | Path, decoder: DecoderSettings, settings: DecodeSettings
) -> None:
    """All steps in one process (for tests and small volumes), into ``output``."""
    partial = prepare_decoding(affinities_store, partial_path(output), decoder, settings)
    decode_blocks(affinities_store, partial, range(len(BlockStore.open(partial, DECODED))), decoder)
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
