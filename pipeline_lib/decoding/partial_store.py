"""Scratch files of a blockwise decoding inside ``<out>.partial`` (next to ``segmentation``).

- ``block_labels/<i>.npy``: block ``i``'s own region with block-local ids (written by the
  decode block jobs, see :mod:`~pipeline_lib.decoding.blockwise`);
- ``blocks/<i>.npz``: block ``i``'s record (voxel counts and face data, and with
  ``small_objects: merge`` each local id's first voxel and the contacts inside the block,
  see :mod:`~pipeline_lib.decoding.stitching`), written last by its decode job: it is the
  block's :data:`DECODED` marker;
- ``stitch/``: the stitch table, published by renaming a finished ``stitch.tmp`` folder:
  ``final.npy`` (uint64, the final id of every block-local id, block after block),
  ``starts.npy`` (int64, where each block's ids begin in ``final``; block ``i``'s local id
  ``j >= 1`` becomes ``final[starts[i] + j - 1]``) and ``info.json`` (``n_objects``,
  ``n_blocks``);
- ``relabelled/<i>``: block ``i``'s :data:`RELABELLED_BLOCKS` marker, written after block ``i``
  of ``segmentation`` holds its final ids.

The grid is the one recorded in the store (:class:`~pipeline_lib.blockstore.BlockStore`).
The finish step deletes all of them before publishing the store.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.blockstore import Step, stage_grid
from pipeline_lib.config import DecodeSettings
from pipeline_lib.geometry import BlockGrid

LABELS = "block_labels"
RECORDS = "blocks"
STITCH = "stitch"
RELABELLED = "relabelled"
SCRATCH = (LABELS, RECORDS, STITCH, f"{STITCH}.tmp", RELABELLED)
DECODED = Step(folder=RECORDS, suffix=".npz", verb="decode", past="decoded")
RELABELLED_BLOCKS = Step(folder=RELABELLED, suffix="", verb="relabel", past="relabelled")


def decode_grid(shape: tuple[int, ...], settings: DecodeSettings) -> BlockGrid:
    """The chunk-aligned grid a decoding of a volume of ``shape`` records when it is prepared."""
    return stage_grid(shape, settings)


def block_record(partial: Path, block_id: int) -> Path:
    return partial / RECORDS / f"{block_id}.npz"


def labels_path(partial: Path, block_id: int) -> Path:
    return partial / LABELS / f"{block_id}.npy"


def stitch_dir(partial: Path) -> Path:
    return partial / STITCH
