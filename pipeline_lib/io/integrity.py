"""Integrity of the zarr arrays the pipeline writes: checksums and dense chunks.

Contract:

- Every array the pipeline writes ends its codec chain with a CRC-32C checksum
  (:data:`CHECKSUM`, zarr v3's ``crc32c`` codec), and every chunk is written, fill value or
  not (``write_empty_chunks``), so a *published* array is dense: every chunk key exists.
- :class:`CheckedArray` (what :func:`pipeline_lib.io.volumes.open_array` returns) reads like
  a :class:`zarr.Array`; a chunk that fails to decode (checksum mismatch, truncated or
  garbled bytes) raises :class:`~pipeline_lib.errors.DataError` naming the store, array
  and chunk. Opened read-only, it also refuses to read a chunk whose key is missing, where
  zarr would silently return the fill value.
- :func:`missing_chunks` lists the absent chunk keys of an array, and
  :func:`check_dense` (called before a store is published) refuses a store with any.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import zarr
from zarr.codecs import Crc32cCodec
from zarr.core.indexing import BasicIndexer

from pipeline_lib.errors import DataError

CHECKSUM = Crc32cCodec()


def _chunk_counts(array: zarr.Array) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) for s, c in zip(array.shape, array.chunks, strict=True))


def _chunk_keys(array: zarr.Array, coords: Iterable[tuple[int, ...]]) -> Iterator[str]:
    return (array.metadata.encode_chunk_key(c) for c in coords)


def missing_chunks(path: str | Path) -> list[str]:
    """Chunk keys of the array at ``path`` (a local zarr v3 array directory) with no file."""
    path = Path(path)
    array = zarr.open_array(str(path), mode="r")
    present: set[str] = set()
    for folder, _, files in os.walk(path):
        rel = os.path.relpath(folder, path)
        present.update(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/") for f in files)
    every = itertools.product(*(range(n) for n in _chunk_counts(array)))
    return [key for key in _chunk_keys(array, every) if key not in present]


def arrays_in(store: str | Path) -> list[Path]:
    """Every array directory (``zarr.json`` with ``node_type: array``) under ``store``."""
    found = []
    for folder, _, files in os.walk(store):
        if "zarr.json" in files:
            meta = json.loads((Path(folder) / "zarr.json").read_text())
            if meta.get("node_type") == "array":
                found.append(Path(folder))
    return sorted(found)


def check_dense(store: str | Path) -> None:
    """Raise :class:`DataError` when any array of ``store`` lacks a chunk (before publishing)."""
    for array in arrays_in(store):
        missing = missing_chunks(array)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(f"{array}: {len(missing)} chunk(s) missing ({shown}); the store is incomplete")


def _chunks_of(array: zarr.Array, selection: Any) -> list[tuple[int, ...]] | None:
    """Chunk coordinates a basic selection touches (``None`` for other kinds of selection)."""
    try:
        return [p.chunk_coords for p in BasicIndexer(selection, array.shape, array.metadata.chunk_grid)]
    except (IndexError, TypeError, ValueError):
        return None


@dataclasses.dataclass
class CheckedArray(zarr.Array):  # type: ignore[type-arg]
    """A :class:`zarr.Array` whose reads name the damaged or missing chunk (see the module doc).

    ``location`` is how messages name the array (``<store>: array '<name>'``); ``dense``
    makes reads refuse missing chunks (arrays opened read-only from a published store).
    """

    location: str = ""
    dense: bool = False

    @classmethod
    def wrap(cls, array: zarr.Array, location: str, dense: bool) -> CheckedArray:
        return cls(array._async_array, location=location, dense=dense)

    def _path(self) -> Path:
        root = getattr(self.store_path.store, "root", "")
        return Path(str(root)) / self.store_path.path

    def __getitem__(self, selection: Any) -> Any:
        chunks = _chunks_of(self, selection) if self.dense else None
        if chunks:
            path = self._path()
            for key in _chunk_keys(self, chunks):
                if not (path / key).exists():
                    raise DataError(f"{self.location}: chunk {key} is missing (the store is incomplete or damaged)")
        try:
            return super().__getitem__(selection)
        except DataError:
            raise
        except Exception as error:
            damaged = self._damaged_chunk(selection)
            if damaged is None:
                raise  # not the data: a bad selection, memory, a bug (keep its own type and traceback)
            raise DataError(damaged) from error

    def _damaged_chunk(self, selection: Any) -> str | None:
        """The message naming the first chunk of the selection that fails to read alone, or None."""
        for coords in _chunks_of(self, selection) or []:
            region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, self.chunks, strict=True))
            try:
                super().__getitem__(region)
            except Exception as chunk_error:
                key = self.metadata.encode_chunk_key(coords)
                return f"{self.location}: chunk {key} is damaged ({type(chunk_error).__name__}: {chunk_error})"
        return None


__all__ = ["CHECKSUM", "CheckedArray", "arrays_in", "check_dense", "missing_chunks"]
