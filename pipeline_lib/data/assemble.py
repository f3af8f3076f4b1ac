"""Assemble a declared dataset into one chunked zarr volume (arrays image, labels, mask).

Sources are read lazily, one *super block* at a time (:func:`super_blocks`: whole output
chunks, aligned to the source's tiles so each tile is decoded once), and each super block is
written while the next one is read. Memory stays bounded by a few super blocks
(``max_block_bytes`` each) whatever the volume size; the store is written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline_lib.config import DatasetSpec
from pipeline_lib.data import synthetic
from pipeline_lib.errors import DataError, UserError
from pipeline_lib.geometry import Box
from pipeline_lib.io.sources import VolumeSource, open_source, source_files
from pipeline_lib.io.volumes import atomic_directory, create_array, set_store_attrs
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance
from pipeline_lib.startup import dataset_header, describe_source

log = logging.getLogger(__name__)

ROLES = ("image", "labels", "mask")

#: Default upper bound on one super block in memory (bytes, at the wider of the source and
#: output dtypes). A 32 x 1024 x 2048 uint8 block; a few of them are alive at once.
MAX_BLOCK_BYTES = 64 * 2**20


class _ArraySource:
    """An in-memory array behind the :class:`VolumeSource` interface (synthetic data)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape: tuple[int, int, int] = (array.shape[0], array.shape[1], array.shape[2])
        self.dtype = array.dtype
        self.read_unit = None

    def read(self, region: tuple[slice, slice, slice]) -> np.ndarray:
        return self.array[region]


def open_dataset_sources(spec: DatasetSpec) -> dict[str, VolumeSource]:
    """The dataset's arrays by role (image, labels, mask), lazily opened and ROI-free.

    The headers are checked first (:func:`pipeline_lib.startup.dataset_header`).
    """
    dataset_header(spec)
    if spec.synthetic is not None:
        s = spec.synthetic
        volume = synthetic.generate(s.shape, s.seed, s.cell_size, s.noise)
        return {"image": _ArraySource(volume.image), "labels": _ArraySource(volume.labels)}
    sources = {}
    for role in ROLES:
        source_spec = getattr(spec, role)
        if source_spec is not None:
            sources[role] = open_source(source_spec, Path("/"), is_label=role == "labels")
    return sources


def dataset_region(spec: DatasetSpec, source_shape: Sequence[int]) -> Box:
    """The region of the sources that the dataset covers (its ROI, or everything)."""
    if spec.roi is None:
        return Box.from_shape(source_shape)
    return Box.from_shape(spec.roi.shape, spec.roi.begin)


def _output_dtype(role: str, dtype: np.dtype) -> np.dtype:
    if role == "image":
        return dtype
    if role == "mask":
        return np.dtype(np.uint8)
    return np.dtype(np.uint64) if dtype.itemsize > 4 else np.dtype(np.uint32)


def _where(spec: DatasetSpec, role: str) -> str:
    source = getattr(spec, role)
    where = describe_source(source) if source is not None else "synthetic"
    return f"dataset '{spec.name}' {role} {where}"


class _ValueChecks:
    """Checks that need the voxels, accumulated block by block while a role is copied."""

    def __init__(self, spec: DatasetSpec, role: str) -> None:
        self.spec, self.role, self.any_label = spec, role, False

    def block(self, block: np.ndarray) -> None:
        if self.role == "labels" and block.size:
            if np.issubdtype(block.dtype, np.signedinteger) and block.min() < 0:
                raise DataError(f"{_where(self.spec, 'labels')}: labels contain negative ids")
            self.any_label = self.any_label or bool(block.any())
        if self.role == "image" and block.dtype.kind in "fc" and not np.isfinite(block).all():
            raise DataError(f"{_where(self.spec, 'image')}: image contains non-finite values (NaN or inf)")

    def finish(self) -> None:
        if self.role == "labels" and not self.any_label:
            raise DataError(
                f"{_where(self.spec, 'labels')}: labels are all 0 (background) in the dataset's region; "
                "nothing to train or evaluate on"
            )


def _convert(role: str, block: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    if role == "labels":
        return block.astype(out_dtype, copy=False)
    if role == "mask":
        return (block > 0).astype(np.uint8)
    return block


def _read(spec: DatasetSpec, role: str, source: VolumeSource, region: tuple[slice, ...]) -> np.ndarray:
    """One block of a source; a failing read names the dataset and file."""
    try:
        return np.asarray(source.read(region))  # type: ignore[arg-type]
    except UserError as e:
        raise DataError(f"dataset '{spec.name}' {role}: {e}") from e
    except Exception as e:  # h5py, zarr codecs, tifffile, PIL: each names nothing
        first = " ".join(str(e).split())[:300]
        raise DataError(f"{_where(spec, role)}: cannot read {region}: {type(e).__name__}: {first}") from e


def _cuts(n: int, chunk: int, unit: int | None, begin: int, length: int) -> list[int]:
    """Block edges along one axis: 0, n, and every ``length`` from the first chunk edge that
    is also a unit edge of the source (``begin`` is the region's start in the source)."""
    phase = 0
    if unit:
        phase = next((p for p in range(0, length, chunk) if (p + begin) % unit == 0), 0)
    return [0, *range(phase or length, n, length), n] if n else [0]


def super_blocks(
    shape: Sequence[int],
    chunk_shape: Sequence[int],
    read_unit: Sequence[int] | None,
    begin: Sequence[int] = (0, 0, 0),
    itemsize: int = 1,
    max_bytes: int = MAX_BLOCK_BYTES,
) -> list[Box]:
    """Cut a region of ``shape`` (starting at ``begin`` in its source) into blocks to copy.

    Contract: the blocks cover the region exactly once, in C order; each is a union of
    whole output chunks (clipped at the region's end), so every chunk is written once and
    whole. Along each axis a block is ``lcm(chunk, unit)`` long and the edges sit where a
    chunk edge meets an edge of the source's ``read_unit`` grid (when they meet at all), so
    each unit (tile) is decoded by one block only::

        source tiles   |-------|-------|-------|-------|    unit 8; region begins at 4
        output chunks      |---|---|---|---|---|---|---|    chunk 4
        super blocks       |---|-------|-------|-------|    edges at 4, 12, 20, ...

    Lengths are limited to the region, then shrunk (longest axis first, in whole chunks)
    until a block holds at most ``max_bytes`` of ``itemsize``-byte voxels: memory is bounded
    whatever the volume size, at the cost of decoding units cut by a block edge again.
    """
    units = tuple(read_unit) if read_unit is not None else (None,) * len(shape)
    lengths = [
        min(math.lcm(c, u) if u else c, -(-n // c) * c) or c for n, c, u in zip(shape, chunk_shape, units, strict=True)
    ]
    while math.prod(lengths) * itemsize > max_bytes and any(s > c for s, c in zip(lengths, chunk_shape, strict=True)):
        i = max((i for i, c in enumerate(chunk_shape) if lengths[i] > c), key=lambda i: lengths[i])
        lengths[i] = max(chunk_shape[i], lengths[i] // 2 // chunk_shape[i] * chunk_shape[i])
    cuts = [_cuts(n, c, u, b, s) for n, c, u, b, s in zip(shape, chunk_shape, units, begin, lengths, strict=True)]
    spans = itertools.product(*(itertools.pairwise(edges) for edges in cuts))
    return [Box(tuple(a for a, _ in box), tuple(b for _, b in box)) for box in spans]


def input_files(spec: DatasetSpec) -> list[Path]:
    """Every file the dataset reads: each source's files, the tiles of a tile JSON included."""
    files: list[Path] = []
    for role in ROLES:
        source = getattr(spec, role)
        if source is not None:
            files += source_files(source, Path("/"))
    return files


def assemble_dataset(
    spec: DatasetSpec, output: str | Path, chunk_shape: Sequence[int], *, max_block_bytes: int = MAX_BLOCK_BYTES
) -> None:
    """Write ``output`` (a zarr store) with the dataset's image, labels and mask arrays.

    Each array is copied super block by super block (:func:`super_blocks`, at most
    ``max_block_bytes`` each); one block is written in a background thread while the next
    is read, so at most about three blocks are in memory. Labels become uint32 (uint64 when
    wider), masks uint8 0/1. Negative or all-zero labels, non-finite image values and
    unreadable source blocks are a :class:`~pipeline_lib.errors.DataError` naming the dataset
    and file. Nothing appears at ``output`` unless every array was written.
    """
    sources = open_dataset_sources(spec)
    region = dataset_region(spec, sources["image"].shape)
    with atomic_directory(output) as store, ThreadPoolExecutor(1, thread_name_prefix="assemble-write") as writer:
        for role, source in sources.items():
            out_dtype = _output_dtype(role, np.dtype(source.dtype))
            array = create_array(store, role, region.shape, out_dtype, chunk_shape, spec.voxel_size)
            itemsize = max(np.dtype(source.dtype).itemsize, out_dtype.itemsize)
            blocks = super_blocks(region.shape, chunk_shape, source.read_unit, region.begin, itemsize, max_block_bytes)
            pending: Future[None] | None = None
            checks = _ValueChecks(spec, role)
            for box in progress(blocks, total=len(blocks), desc=f"assemble {spec.name}/{role}"):
                block = _read(spec, role, source, box.shift(region.begin).slices)
                checks.block(block)
                data = _convert(role, block, out_dtype)
                if pending is not None:
                    pending.result()  # one write in flight: memory stays bounded
                pending = writer.submit(array.__setitem__, box.slices, data)
            if pending is not None:
                pending.result()
            checks.finish()
        set_store_attrs(
            store,
            {"dataset": spec.name, "provenance": provenance("assemble", {"dataset": spec}, input_files(spec))},
        )
    log.info("assembled %s: shape %s into %s", spec.name, region.shape, output)
