"""Checksummed, dense arrays: a damaged or missing chunk fails naming store, array and chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline_lib.errors import DataError
from pipeline_lib.io.integrity import arrays_in, check_dense, missing_chunks
from pipeline_lib.io.volumes import commit, create_array, open_array

DATA = np.arange(512, dtype=np.uint8).reshape(8, 8, 8)
DATA[:4, :4, :4] = 0  # one chunk holds only the fill value


def _store(tmp_path: Path, name: str = "vol.zarr") -> Path:
    store = tmp_path / name
    create_array(store, "image", (8, 8, 8), np.uint8, (4, 4, 4), (1.0, 1.0, 1.0))[...] = DATA
    return store


def damage(chunk: Path) -> None:
    """Flip bytes in the middle of a chunk file, as a bad disk block would."""
    raw = bytearray(chunk.read_bytes())
    for i in range(len(raw) // 3, len(raw) // 3 + 4):
        raw[i] ^= 0xFF
    chunk.write_bytes(bytes(raw))


def test_every_array_ends_its_codec_chain_with_a_checksum(tmp_path: Path) -> None:
    store = _store(tmp_path)
    codecs = zarr.open_array(str(store / "image" / "s0")).metadata.codecs
    assert type(codecs[-1]).__name__ == "Crc32cCodec"
    assert type(codecs[-2]).__name__ == "ZstdCodec"


def test_chunks_holding_only_the_fill_value_are_written(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert (store / "image" / "s0" / "c" / "0" / "0" / "0").is_file()
    assert missing_chunks(store / "image" / "s0") == []
    # also through an array opened for writing later (as block jobs do)
    target = open_array(store, "image", mode="r+")
    target[4:, 4:, 4:] = 0
    assert (store / "image" / "s0" / "c" / "1" / "1" / "1").is_file()
    check_dense(store)


def test_a_damaged_chunk_fails_naming_store_array_and_chunk(tmp_path: Path) -> None:
    store = _store(tmp_path)
    damage(store / "image" / "s0" / "c" / "1" / "0" / "1")
    array = open_array(store, "image")
    np.testing.assert_array_equal(array[:4], DATA[:4])  # undamaged chunks read as written
    with pytest.raises(DataError, match=r"vol.zarr: array 'image': chunk c/1/0/1 is damaged \(ValueError: .*checksum"):
        array[...]
    with pytest.raises(DataError, match="chunk c/1/0/1 is damaged"):
        array[5, 1, 6]


def test_a_missing_chunk_of_a_published_store_fails_instead_of_reading_zeros(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "image" / "s0" / "c" / "0" / "1" / "1").unlink()
    assert missing_chunks(store / "image" / "s0") == ["c/0/1/1"]
    array = open_array(store, "image")
    assert array[4:, :, :].shape == (4, 8, 8)  # other chunks still read
    with pytest.raises(DataError, match="vol.zarr: array 'image': chunk c/0/1/1 is missing"):
        array[:, 4:, :]
    with pytest.raises(DataError, match="1 chunk\\(s\\) missing \\(c/0/1/1\\)"):
        check_dense(store)


def test_a_partial_store_may_lack_chunks_until_published(tmp_path: Path) -> None:
    partial = tmp_path / "out.zarr.partial"
    create_array(partial, "affinities", (3, 8, 8, 8), np.uint8, (3, 4, 4, 4), (1.0, 1.0, 1.0))
    open_array(partial, "affinities", mode="r+")[:, :4] = 7
    assert not open_array(partial, "affinities")[:, 4:].any()  # not written yet: blocks to come
    with pytest.raises(DataError, match="4 chunk\\(s\\) missing"):
        commit(partial, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
    open_array(partial, "affinities", mode="r+")[:, 4:] = 1
    commit(partial, tmp_path / "out.zarr")
    assert open_array(tmp_path / "out.zarr", "affinities")[...].sum() == 3 * 4 * 64 * 7 + 3 * 4 * 64


def test_arrays_in_lists_every_array_of_a_store(tmp_path: Path) -> None:
    store = _store(tmp_path)
    create_array(store, "labels", (8, 8, 8), np.uint32, (4, 4, 4), (1.0, 1.0, 1.0))
    assert [p.relative_to(store).as_posix() for p in arrays_in(store)] == ["image/s0", "labels/s0"]
    with pytest.raises(DataError, match="labels/s0: 8 chunk"):
        check_dense(store)


def test_unreadable_array_metadata_is_a_data_error(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "image" / "s0" / "zarr.json").write_text("{not json")
    with pytest.raises(DataError, match="vol.zarr: array 'image' has unreadable metadata"):
        open_array(store, "image")
