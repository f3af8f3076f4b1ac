"""Lazy volume sources: one interface over HDF5, zarr, TIFF, PNG, npy and tile JSON.

A source spec is a mapping as written in ``config/datasets.yaml``::

    {format: hdf5, path: x.h5, key: stack}
    {format: zarr, path: x.zarr, array: image}
    {format: tiff, path: stack.tif}            # one multi-page (z, y, x) TIFF
    {format: tiff, glob: "slices/*.tif"}       # one 2-D slice per file, sorted by name
    {format: png, glob: "slices/*.png"}
    {format: npy, path: x.npy}                 # memory-mapped
    {format: tiles, path: tiles.json, fill_value: 0}   # see docs/tiles.md

Relative paths resolve against ``base_dir`` (the folder of the YAML that declared them).
:func:`open_source` checks the files, keys and shapes at once and raises :class:`SourceError`
naming the file; :meth:`VolumeSource.read` then reads only the requested region (only the
slice files, pages, chunks or tiles that intersect it).
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import h5py
import numpy as np
import tifffile
import zarr
from numpy.typing import NDArray

from pipeline_lib.io.files import (
    Region,
    Shape3,
    SourceError,
    _as_3d,
    _h5_key,
    normalize_region,
    probe_file,
    read_file,
)

FORMATS: dict[str, tuple[str, ...]] = {  # format -> accepted keys besides "format"
    "hdf5": ("path", "key"),
    "zarr": ("path", "array"),
    "tiff": ("path", "glob"),
    "png": ("glob",),
    "npy": ("path",),
    "tiles": ("path", "fill_value"),
}


@runtime_checkable
class VolumeSource(Protocol):
    """A 3-D ``(z, y, x)`` array on disk, read region by region.

    ``read(region)`` returns a new in-memory array of ``dtype`` whose shape is the region's
    (slices are clipped to ``shape`` like numpy's; steps other than 1 are refused).

    ``read_unit`` (a hint): reads decode whole units of this ``(z, y, x)`` extent on a grid
    from the origin (tiles, slice files, pages, chunks), so regions aligned to that grid
    decode each unit once. ``None``: any region is cheap (memory maps).
    """

    shape: Shape3
    dtype: np.dtype[Any]

    @property
    def read_unit(self) -> Shape3 | None: ...

    def read(self, region: Region) -> NDArray[Any]: ...


# --- the sources --------------------------------------------------------------------------


@dataclass
class ZarrSource:
    """A zarr array (v2 or v3); reads only the chunks the region touches."""

    array: Any = field(repr=False)
    shape: Shape3
    dtype: np.dtype[Any]

    @property
    def read_unit(self) -> Shape3:
        return _as_3d(Path(), self.array.chunks)

    def read(self, region: Region) -> NDArray[Any]:
        (z0, z1), (y0, y1), (x0, x1) = normalize_region(region, self.shape)
        return np.asarray(self.array[z0:z1, y0:y1, x0:x1], self.dtype)


@dataclass
class NpySource:
    """A ``.npy`` file, memory-mapped afresh for each read (safe to pickle)."""

    path: Path
    shape: Shape3
    dtype: np.dtype[Any]
    read_unit: None = None

    def read(self, region: Region) -> NDArray[Any]:
        (z0, z1), (y0, y1), (x0, x1) = normalize_region(region, self.shape)
        return np.array(np.load(self.path, mmap_mode="r")[z0:z1, y0:y1, x0:x1])


@dataclass
class Hdf5Source:
    """An HDF5 dataset; the file is opened for each read (safe across processes)."""

    path: Path
    key: str
    shape: Shape3
    dtype: np.dtype[Any]
    read_unit: Shape3 | None = None  # the dataset's chunks (None when contiguous)

    def read(self, region: Region) -> NDArray[Any]:
        (z0, z1), (y0, y1), (x0, x1) = normalize_region(region, self.shape)
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.key][z0:z1, y0:y1, x0:x1])


@dataclass
class TiffStackSource:
    """One multi-page TIFF; reads a memory map when the data allow it, else only needed pages."""

    path: Path
    shape: Shape3
    dtype: np.dtype[Any]
    pages_per_z: bool

    @property
    def read_unit(self) -> Shape3:
        return (1, *self.shape[1:]) if self.pages_per_z else self.shape  # type: ignore[return-value]

    def read(self, region: Region) -> NDArray[Any]:
        (z0, z1), (y0, y1), (x0, x1) = normalize_region(region, self.shape)
        try:
            mm = tifffile.memmap(self.path, mode="r")
            return np.array(mm.reshape(self.shape)[z0:z1, y0:y1, x0:x1])
        except ValueError:
            pass  # compressed or not contiguous
        if z0 == z1:
            return np.zeros((0, y1 - y0, x1 - x0), self.dtype)
        with tifffile.TiffFile(self.path) as tif:
            if self.pages_per_z:
                data = tif.asarray(key=range(z0, z1), series=0).reshape((z1 - z0, *self.shape[1:]))
                return np.ascontiguousarray(data[:, y0:y1, x0:x1])
            return np.array(tif.series[0].asarray().reshape(self.shape)[z0:z1, y0:y1, x0:x1])


@dataclass
class SliceStackSource:
    """Sorted 2-D slice files (PNG or TIFF), one per z; reads only the files of the region."""

    files: list[Path]
    shape: Shape3
    dtype: np.dtype[Any]

    @property
    def read_unit(self) -> Shape3:
        return (1, self.shape[1], self.shape[2])

    def read(self, region: Region) -> NDArray[Any]:
        (z0, z1), (y0, y1), (x0, x1) = normalize_region(region, self.shape)
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), self.dtype)
        for z in range(z0, z1):
            img = read_file(self.files[z])
            if img.shape != (1, *self.shape[1:]):
                raise SourceError(f"{self.files[z]}: slice shape {img.shape[1:]} changed on disk")
            out[z - z0] = img[0, y0:y1, x0:x1]
        return out


def _resolve(spec: Mapping[str, Any], key: str, base_dir: Path) -> Path:
    if key not in spec:
        raise SourceError(f"source {dict(spec)}: missing '{key}'")
    path = Path(str(spec[key])).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def _check_spec(spec: Mapping[str, Any]) -> str:
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise SourceError(f"source {dict(spec)}: 'format' must be one of {sorted(FORMATS)}")
    extra = sorted(set(spec) - {"format", *FORMATS[fmt]})
    if extra:
        raise SourceError(f"source {dict(spec)}: keys {extra} do not apply to format {fmt!r}")
    if fmt == "tiff" and ("path" in spec) == ("glob" in spec):
        raise SourceError(f"source {dict(spec)}: format 'tiff' needs exactly one of path, glob")
    return str(fmt)


def _glob(spec: Mapping[str, Any], base_dir: Path) -> list[Path]:
    pattern = _resolve(spec, "glob", base_dir)
    files = sorted(Path(p) for p in globlib.glob(str(pattern)) if Path(p).is_file())
    if not files:
        raise SourceError(f"{pattern}: glob matches no files (expected one 2-D slice per file)")
    return files


def source_files(spec: Mapping[str, Any], base_dir: Path) -> list[Path]:
    """List the files (or zarr folders) that ``spec`` needs, whether they exist or not.

    For a tile JSON: the JSON, then every tile it names (only the JSON while it is missing).
    An empty glob raises :class:`SourceError`.
    """
    fmt = _check_spec(spec)
    if "glob" in spec:
        return _glob(spec, base_dir)
    path = _resolve(spec, "path", base_dir)
    if fmt == "tiles" and path.is_file():
        from pipeline_lib.io.tiles import tile_json_files

        return [path, *tile_json_files(path)]
    return [path]


def open_source(spec: Mapping[str, Any], base_dir: Path, *, is_label: bool = False) -> VolumeSource:
    """Open the volume ``spec`` describes, checking files, keys and shape; read nothing else.

    ``is_label`` matters only for tile JSONs (nearest zoom, RGB label decoding).
    Raises :class:`SourceError` naming the file and what was expected.
    """
    fmt = _check_spec(spec)
    base_dir = Path(base_dir)
    if "glob" in spec:
        return _open_slices(_glob(spec, base_dir))
    path = _resolve(spec, "path", base_dir)
    if not path.exists():
        raise SourceError(f"{path}: file not found (format {fmt})")
    if fmt == "hdf5":
        try:
            with h5py.File(path, "r") as f:
                key = _h5_key(path, f, spec.get("key"))
                shape, dtype, chunks = _as_3d(path, f[key].shape), f[key].dtype, f[key].chunks
        except OSError as e:
            raise SourceError(f"{path}: not a readable HDF5 file: {e}") from e
        return Hdf5Source(path, key, shape, dtype, _as_3d(path, chunks) if chunks else None)
    if fmt == "zarr":
        return _open_zarr(path, spec.get("array"))
    if fmt == "npy":
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise SourceError(f"{path}: not a readable .npy file: {e}") from e
        return NpySource(path, _as_3d(path, arr.shape), arr.dtype)
    if fmt == "tiff":
        try:
            with tifffile.TiffFile(path) as tif:
                s = tif.series[0]
                shape, dtype = _as_3d(path, s.shape), np.dtype(s.dtype)
                per_z = len(s.pages) == shape[0]
        except (OSError, tifffile.TiffFileError) as e:
            raise SourceError(f"{path}: not a readable TIFF file: {e}") from e
        return TiffStackSource(path, shape, dtype, per_z)
    from pipeline_lib.io.tiles import load_tile_json

    fill = spec.get("fill_value")
    return load_tile_json(path, is_label=is_label, fill_value=fill)


def _open_zarr(path: Path, array: str | None) -> ZarrSource:
    try:
        arr = zarr.open_array(store=str(path), path=array or "", mode="r")
    except Exception as e:  # zarr raises several types for "not there"
        what = f"array {array!r}" if array else "an array at the top (give 'array')"
        raise SourceError(f"{path}: expected {what} in the zarr store ({e})") from e
    return ZarrSource(arr, _as_3d(path, arr.shape), np.dtype(arr.dtype))


def _open_slices(files: list[Path]) -> SliceStackSource:
    first = probe_file(files[0])
    for f in files:
        info = first if f == files[0] else probe_file(f)
        if info.channels != 1 or info.shape[0] != 1:
            raise SourceError(f"{f}: expected a single-channel 2-D slice, found {info}")
        if (info.shape, info.dtype) != (first.shape, first.dtype):
            raise SourceError(
                f"{f}: slice shape {info.shape[1:]} {info.dtype} differs from "
                f"{first.shape[1:]} {first.dtype} of {files[0]}"
            )
    return SliceStackSource(files, (len(files), first.shape[1], first.shape[2]), first.dtype)
