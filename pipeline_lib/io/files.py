"""Reading single files: what a file holds (:func:`probe_file`) and a region of it (:func:`read_file`).

The building blocks of :mod:`pipeline_lib.io.sources` and :mod:`pipeline_lib.io.tiles`: PNG,
TIFF, npy and HDF5 files, read without loading more than the requested region where the format
allows. Problems raise :class:`SourceError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import imageio.v3 as iio
import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image

from pipeline_lib.errors import UserError

Region = tuple[slice, slice, slice]
Shape3 = tuple[int, int, int]

_PIL_DTYPES = {"L": "uint8", "I;16": "uint16", "I;16B": "uint16", "I": "int32", "F": "float32"}
_PIL_DTYPES |= {"1": "bool", "RGB": "uint8", "RGBA": "uint8"}


class SourceError(UserError):
    """A source spec or the files it names are unusable; the message names the file."""


def normalize_region(region: Sequence[slice], shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Return ``((z0, z1), (y0, y1), (x0, x1))`` for ``region`` clipped to ``shape``."""
    if len(region) != len(shape):
        raise ValueError(f"region {region!r} needs one slice per axis of shape {tuple(shape)}")
    out = []
    for s, n in zip(region, shape, strict=True):
        start, stop, step = s.indices(int(n))
        if step != 1:
            raise ValueError(f"region slice {s!r} has step {step}; only step 1 is supported")
        out.append((start, max(start, stop)))
    return tuple(out)


# --- single image files (slices and tiles) -------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """Header of an image/array file: ``shape`` is ``(z, y, x)`` (2-D images have z = 1);
    ``channels`` is 1, or 3/4 for RGB(A) 2-D images."""

    shape: Shape3
    dtype: np.dtype[Any]
    channels: int = 1


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def probe_file(path: Path, key: str | None = None) -> FileInfo:
    """Read the header (not the pixels) of a PNG, TIFF, npy or HDF5 file."""
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    ext = _suffix(path)
    try:
        if ext == ".png":
            with Image.open(path) as im:
                if im.mode not in _PIL_DTYPES:
                    raise SourceError(f"{path}: PNG mode {im.mode!r} is not a grey or RGB image")
                ch = len(im.getbands())
                return FileInfo((1, im.size[1], im.size[0]), np.dtype(_PIL_DTYPES[im.mode]), ch)
        if ext in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                s = tif.series[0]
                shape, dtype = tuple(int(d) for d in s.shape), np.dtype(s.dtype)
            if len(shape) == 3 and shape[-1] in (3, 4) and s.axes.endswith("S"):
                return FileInfo((1, shape[0], shape[1]), dtype, shape[-1])
            return FileInfo(_as_3d(path, shape, allow_2d=True), dtype)
        if ext == ".npy":
            arr = np.load(path, mmap_mode="r")
            return FileInfo(_as_3d(path, arr.shape, allow_2d=True), arr.dtype)
        if ext in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                ds = f[_h5_key(path, f, key)]
                return FileInfo(_as_3d(path, ds.shape, allow_2d=True), ds.dtype)
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        if isinstance(e, SourceError):
            raise
        raise SourceError(f"{path}: cannot read file header: {e}") from e
    raise SourceError(f"{path}: unknown file type {ext!r}; expected .png, .tif, .npy or .h5")


def read_file(path: Path, key: str | None = None, region: tuple[slice, ...] | None = None) -> NDArray[Any]:
    """Read a file as ``(z, y, x)`` or, for RGB(A) images, ``(1, y, x, c)``.

    With ``region`` (slices in file coordinates) return only that part; npy and HDF5 files
    then read only that part from disk, images are decoded whole. A file that fails to
    decode is a :class:`SourceError` naming it (and the HDF5 key).
    """
    try:
        return _read_file(path, key, region)
    except SourceError:
        raise
    except Exception as e:  # h5py, PIL, tifffile, numpy: their messages name no file
        first = " ".join(str(e).split())[:300]
        what = f" (key '{key}')" if key else ""
        raise SourceError(f"{path}{what}: cannot read: {type(e).__name__}: {first}") from e


def _read_file(path: Path, key: str | None, region: tuple[slice, ...] | None) -> NDArray[Any]:
    ext = _suffix(path)
    if region is not None and ext in (".npy", ".h5", ".hdf5"):
        if ext == ".npy":
            arr = np.load(path, mmap_mode="r")
            return np.array((arr[np.newaxis] if arr.ndim == 2 else arr)[region])
        with h5py.File(path, "r") as f:
            ds = f[_h5_key(path, f, key)]
            return np.asarray(ds[region[1:]][np.newaxis] if ds.ndim == 2 else ds[region])
    if ext == ".png":
        arr = _read_png(path)
    elif ext in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            arr = tif.series[0].asarray()
            if arr.ndim == 3 and tif.series[0].axes.endswith("S"):
                arr = arr[np.newaxis]  # one RGB(A) image
    elif ext == ".npy":
        arr = np.load(path)
    elif ext in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            arr = f[_h5_key(path, f, key)][()]
    else:
        raise SourceError(f"{path}: unknown file type {ext!r}; expected .png, .tif, .npy or .h5")
    arr = np.asarray(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and ext == ".png"):
        arr = arr[np.newaxis]
    return arr if region is None else arr[region]


def _read_png(path: Path) -> NDArray[Any]:
    """Decode a PNG with Pillow directly (imageio's plugin layer costs ~30% per small tile),
    or through imageio for modes it converts (palette, LA, ...): the same pixels either way."""
    with Image.open(path) as im:
        if im.mode in ("L", "RGB", "RGBA", "I;16", "I"):
            return np.array(im)
    return np.asarray(iio.imread(path))


def _as_3d(path: Path, shape: Sequence[int], allow_2d: bool = False) -> Shape3:
    shape = tuple(int(d) for d in shape)
    if allow_2d and len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) != 3:
        raise SourceError(f"{path}: expected a 3-D (z, y, x) array, found shape {shape}")
    return (shape[0], shape[1], shape[2])


def _h5_key(path: Path, f: h5py.File, key: str | None) -> str:
    if key is None:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if len(names) != 1:
            raise SourceError(f"{path}: give 'key'; the file holds datasets {names}")
        return names[0]
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise SourceError(f"{path}: no HDF5 dataset {key!r}; the file holds {list(f.keys())}")
    return key
