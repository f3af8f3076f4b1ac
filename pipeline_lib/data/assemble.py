"""Assemble a declared dataset into one chunked zarr volume (arrays image, labels, mask).

Sources are read lazily, one chunk-sized block at a time, so memory stays bounded by a few
blocks whatever the volume size; the store is written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline_lib.config import DatasetSpec
from pipeline_lib.data import synthetic
from pipeline_lib.errors import UserError
from pipeline_lib.geometry import Box, BlockGrid
from pipeline_lib.io.sources import VolumeSource, open_source
from pipeline_lib.io.volumes import atomic_directory, create_array, set_store_attrs
from pipeline_lib.progress import progress
from pipeline_lib.provenance import provenance

log = logging.getLogger(__name__)

ROLES = ("image", "labels", "mask")


class _ArraySource:
    """An in-memory array behind the :class:`VolumeSource` interface (synthetic data)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def read(self, region: tuple[slice, slice, slice]) -> np.ndarray:
        return self.array[region]


def open_dataset_sources(spec: DatasetSpec) -> dict[str, VolumeSource]:
    """The dataset's arrays by role (image, labels, mask), lazily opened and ROI-free."""
    if spec.synthetic is not None:
        s = spec.synthetic
        volume = synthetic.generate(s.shape, s.seed, s.cell_size, s.noise)
        return {"image": _ArraySource(volume.image), "labels": _ArraySource(volume.labels)}
    sources = {}
    for role in ROLES:
        source_spec = getattr(spec, role)
        if source_spec is not None:
            sources[role] = open_source(source_spec, Path("/"))
    shapes = {role: tuple(src.shape) for role, src in sources.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(f"dataset '{spec.name}': image, labels and mask shapes differ: {shapes}")
    return sources


def dataset_region(spec: DatasetSpec, source_shape: Sequence[int]) -> Box:
    """The region of the sources that the dataset covers (its ROI, or everything)."""
    whole = Box.from_shape(source_shape)
    if spec.roi is None:
        return whole
    roi = Box.from_shape(spec.roi.shape, spec.roi.begin)
    if roi.intersect(whole) != roi:
        raise UserError(f"dataset '{spec.name}': roi {roi} lies outside the volume of shape {tuple(source_shape)}")
    return roi


def dataset_shape(spec: DatasetSpec) -> tuple[int, int, int]:
    """Shape (z, y, x) of the assembled volume, known without reading any voxel data."""
    if spec.synthetic is not None and spec.roi is None:
        return spec.synthetic.shape
    if spec.roi is not None:
        return spec.roi.shape
    assert spec.image is not None
    z, y, x = open_source(spec.image, Path("/")).shape
    return (z, y, x)


def _output_dtype(role: str, dtype: np.dtype) -> np.dtype:
    if role == "image":
        return dtype
    if role == "mask":
        return np.dtype(np.uint8)
    if not np.issubdtype(dtype, np.integer):
        raise UserError(f"labels must be integers, got {dtype}")
    return np.dtype(np.uint64) if dtype.itemsize > 4 else np.dtype(np.uint32)


def _convert(role: str, block: np.ndarray, out_dtype: np.dtype, name: str) -> np.ndarray:
    if role == "labels":
        if np.issubdtype(block.dtype, np.signedinteger) and block.size and block.min() < 0:
            raise UserError(f"dataset '{name}': labels contain negative ids")
        return block.astype(out_dtype, copy=False)
    if role == "mask":
        return (block > 0).astype(np.uint8)
    return block


def assemble_dataset(spec: DatasetSpec, output: str | Path, chunk_shape: Sequence[int]) -> None:
    """Write ``output`` (a zarr store) with the dataset's image, labels and mask arrays."""
    sources = open_dataset_sources(spec)
    region = dataset_region(spec, sources["image"].shape)
    grid = BlockGrid(region.shape, tuple(chunk_shape))
    with atomic_directory(output) as store:
        for role, source in sources.items():
            out_dtype = _output_dtype(role, np.dtype(source.dtype))
            array = create_array(store, role, region.shape, out_dtype, chunk_shape, spec.voxel_size)
            for _, box in progress(grid.blocks(), total=len(grid), desc=f"assemble {spec.name}/{role}"):
                read_region = box.shift(region.begin).slices
                block = source.read(read_region)  # type: ignore[arg-type]
                array[box.slices] = _convert(role, np.asarray(block), out_dtype, spec.name)
        set_store_attrs(
            store,
            {"dataset": spec.name, "provenance": provenance("assemble", {"dataset": spec}, [])},
        )
    log.info("assembled %s: shape %s into %s", spec.name, region.shape, output)
