"""Zarr v3 volumes with OME-Zarr (NGFF 0.5) metadata, and atomic outputs.

Layout of every store the pipeline writes::

    name.zarr/                      root group; attrs: provenance, completion marker
      image/                        group with ``ome.multiscales`` (axes, voxel size)
        s0                          the full-resolution array (z, y, x) or (c, z, y, x)
      labels/s0, mask/s0, affinities/s0, segmentation/s0 ...

Viewers (napari with an OME-Zarr reader, neuroglancer) open ``name.zarr/image`` with the
right scale. Library code opens arrays with :func:`open_array` and never spells ``s0``.

Atomicity: a whole store is written under a temporary name and renamed when complete
(:func:`atomic_directory`); block jobs write into a shared ``*.partial`` store whose rename
by the final job marks it complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from pipeline_lib.errors import DataError, UserError
from pipeline_lib.io.integrity import CHECKSUM, CheckedArray, check_dense

SCALE0 = "s0"
# Names of the arrays the stages write (one layout, spelled once).
AFFINITIES = "affinities"
SEGMENTATION = "segmentation"

# Codec of the arrays that the stages write and read in bulk (affinities, segmentations).
# zstd level 1 writes them about 2x faster than zarr's default level 3 and reads them as fast,
# at the same size. LZ4 read affinities 1.1-1.8x faster but stores predicted affinities
# 1.3x larger (1.7x noisy ones), and bit-shuffled LZ4 stored a segmentation 4.5x larger
# (``benchmarks/bench_codecs.py``, figures in benchmarks/README.md).
FAST_ZSTD = ZstdCodec(level=1, checksum=False)
#: zarr's default compressor (zstd at its default level), used unless a stage asks for another.
DEFAULT_ZSTD = ZstdCodec(level=0, checksum=False)


#: Arrays holding object ids: their groups carry NGFF ``image-label`` metadata, so viewers
#: show them as labels, not as a second image.
LABEL_ARRAYS = ("labels", SEGMENTATION)


def _axes(n_channels: bool) -> list[dict[str, str]]:
    axes = [{"name": "c", "type": "channel"}] if n_channels else []
    return axes + [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]


def ome_multiscales(name: str, voxel_size: Sequence[float], channel_axis: bool) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` attributes for a group holding one scale level ``s0``; label arrays
    (:data:`LABEL_ARRAYS`) also get ``image-label`` (with the store's ``image`` as source)."""
    scale = ([1.0] if channel_axis else []) + [float(v) for v in voxel_size]
    label: dict[str, Any] = {}
    if name in LABEL_ARRAYS:
        source = {"source": {"image": "../image"}} if name == "labels" else {}  # segmentations: another store
        label = {"image-label": {"version": "0.5", **source}}
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": _axes(channel_axis),
                "datasets": [{"path": SCALE0, "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
            }
        ],
        **label,
    }


def create_array(
    store: str | Path,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    voxel_size: Sequence[float],
    attrs: Mapping[str, Any] | None = None,
    compressors: Any = DEFAULT_ZSTD,
) -> zarr.Array:
    """Create (or overwrite) array ``name`` in ``store``; 4-D shapes have a leading channel axis.

    The codec chain is ``compressors`` (one bytes codec; default zarr's, zstd level 3;
    e.g. :data:`FAST_ZSTD`) followed by a CRC-32C checksum, and every chunk is written, fill value or not, so the
    array is dense once every block is written (:mod:`pipeline_lib.io.integrity`).
    """
    root = zarr.open_group(str(store), mode="a")
    group = root.require_group(name)
    group.attrs["ome"] = ome_multiscales(name, voxel_size, channel_axis=len(shape) == 4)
    array = group.create_array(
        SCALE0,
        shape=tuple(shape),
        dtype=dtype,
        chunks=tuple(chunks),
        fill_value=0,
        overwrite=True,
        compressors=(compressors, CHECKSUM),
        config={"write_empty_chunks": True},
    )
    if attrs:
        array.attrs.update(dict(attrs))
    return array


def open_array(store: str | Path, name: str, mode: str = "r") -> CheckedArray:
    """Array ``name`` of a pipeline store; a missing store or array is a :class:`UserError`.

    Reads name a damaged chunk; from a published store (not ``*.partial``) opened read-only
    they also refuse a missing chunk; writes store every chunk (:class:`~pipeline_lib.io.integrity.CheckedArray`).
    """
    path = Path(store)
    if not path.exists():
        raise UserError(f"{path}: zarr store not found")
    try:
        with zarr.config.set({"array.write_empty_chunks": True}):
            array = zarr.open_array(str(path / name / SCALE0), mode=mode)  # type: ignore[arg-type]
    except (FileNotFoundError, KeyError, zarr.errors.NodeTypeValidationError) as e:
        raise UserError(f"{path}: has no array '{name}' ({e})") from None
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: array '{name}' has unreadable metadata ({e})") from None
    return CheckedArray.wrap(array, f"{path}: array '{name}'", dense=mode == "r" and not path.name.endswith(".partial"))


def has_array(store: str | Path, name: str) -> bool:
    return (Path(store) / name / SCALE0 / "zarr.json").exists()


def voxel_size(store: str | Path, name: str) -> tuple[float, float, float]:
    """Voxel size (z, y, x) in nm read back from the OME metadata of ``name``."""
    group = zarr.open_group(str(Path(store) / name), mode="r")
    ome: Any = dict(group.attrs)["ome"]
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    z, y, x = (float(v) for v in scale[-3:])
    return (z, y, x)


def store_attrs(store: str | Path) -> dict[str, Any]:
    return dict(zarr.open_group(str(store), mode="r").attrs)


def set_store_attrs(store: str | Path, attrs: Mapping[str, Any]) -> None:
    zarr.open_group(str(store), mode="a").attrs.update(dict(attrs))


def prepared_for(partial: str | Path, name: str, record: Mapping[str, Any], attrs: Mapping[str, Any]) -> bool:
    """Whether ``partial`` is a store prepared for the same run, so its blocks may be reused.

    Same run: array ``name`` opens, the stored ``provenance`` has ``record``'s settings and
    inputs, and every key of ``attrs`` is stored with the same value. Anything unreadable
    counts as another run.
    """
    try:
        stored = store_attrs(partial)
        open_array(partial, name)
    except Exception:  # not a (complete) store: start afresh
        return False
    previous = stored.get("provenance", {})
    return bool(
        previous.get("settings") == record["settings"]
        and previous.get("inputs") == record["inputs"]
        and all(stored.get(key) == value for key, value in attrs.items())
    )


def partial_path(path: str | Path) -> Path:
    """The temporary name under which ``path`` is written before its final rename."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def final_path(partial: str | Path) -> Path:
    """The final name of a ``*.partial`` path (inverse of :func:`partial_path`)."""
    partial = Path(partial)
    if not partial.name.endswith(".partial"):
        raise ValueError(f"{partial} is not a partial path")
    return partial.with_name(partial.name[: -len(".partial")])


def commit(partial: str | Path, final: str | Path) -> None:
    """Atomically publish a finished ``partial`` directory as ``final`` (replacing it).

    Refuses (:class:`~pipeline_lib.errors.DataError`) when an array in it lacks a chunk.
    """
    check_dense(partial)
    final = Path(final)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes ``final`` only if the block succeeds."""
    partial = partial_path(final)
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    commit(partial, final)


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``final`` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def normalize_image(block: np.ndarray) -> np.ndarray:
    """Image intensities as float32 in [0, 1] (integer types scaled by their maximum)."""
    if np.issubdtype(block.dtype, np.integer):
        return block.astype(np.float32) / float(np.iinfo(block.dtype).max)
    return block.astype(np.float32)
