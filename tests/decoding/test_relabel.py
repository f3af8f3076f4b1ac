"""Stitch, relabel block jobs and finish: interrupted steps resume, a missing block is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from decoding_helpers import NN_OFFSETS, decode_settings, read_segmentation, write_affinities

from pipeline_lib.blockstore import BlockStore, job_share
from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding import decode_blocks, decode_volume, prepare_decoding
from pipeline_lib.decoding.blockwise import segmentation_dtype
from pipeline_lib.decoding.partial_store import DECODED, RELABELLED_BLOCKS, SCRATCH, stitch_dir
from pipeline_lib.decoding.registry import decoder_settings
from pipeline_lib.decoding.relabel import finish_decoding, relabel_blocks, stitch_blocks
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import open_array, partial_path, store_attrs

SHAPE = (16, 16, 24)  # 2 x 2 x 3 blocks of 8
SETTINGS = decode_settings((8, 8, 8))
GRID = BlockGrid(SHAPE, (8, 8, 8))


@pytest.fixture
def affs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    stored = np.where(rng.random((3, *SHAPE)) < 0.42, 200, 40).astype(np.uint8)  # percolating clusters
    return write_affinities(tmp_path / "affs.zarr", stored.astype(np.float32) / 255, NN_OFFSETS, (8, 8, 8), "uint8")


def _decoder(**entry: object) -> DecoderSettings:
    return decoder_settings({"method": "connected_components", "min_size": 3, "small_objects": "merge", **entry})


def _decode_and_stitch(affs: Path, out: Path, decoder: DecoderSettings) -> Path:
    partial = prepare_decoding(affs, partial_path(out), decoder, SETTINGS)
    decode_blocks(affs, partial_path(out), range(len(GRID)), decoder)
    stitch_blocks(partial_path(out), decoder)
    return partial


def test_segmentation_is_uint32_below_2_32_voxels_else_uint64(tmp_path: Path, affs: Path) -> None:
    out = tmp_path / "seg.zarr"
    decode_volume(affs, out, _decoder(), SETTINGS)
    assert open_array(out, "segmentation").dtype == np.uint32
    assert read_segmentation(out).max() == store_attrs(out)["provenance"]["n_objects"] > 0
    assert segmentation_dtype((2**11, 2**11, 2**10 - 1)) == np.uint32  # 2**32 - 2**22 voxels
    assert segmentation_dtype((2**11, 2**11, 2**10)) == np.uint64  # 2**32 voxels: ids up to 2**32


def _chunk_mtimes(partial: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (partial / "segmentation").rglob("*") if p.is_file()}


def test_interrupted_relabel_resumes_and_rewrites_only_missing_blocks(tmp_path: Path, affs: Path) -> None:
    decoder = _decoder()
    decode_volume(affs, tmp_path / "reference.zarr", decoder, SETTINGS)
    reference = read_segmentation(tmp_path / "reference.zarr")

    out = tmp_path / "seg.zarr"
    partial = _decode_and_stitch(affs, out, decoder)
    jobs = [job_share(len(GRID), 3, j) for j in range(3)]  # three relabel jobs: [0..3], [4..7], [8..11]
    assert relabel_blocks(partial_path(out), jobs[0]) == list(jobs[0])
    assert relabel_blocks(partial_path(out), jobs[1]) == list(jobs[1])
    # the third job was killed while writing block 9; block 5's write is lost too
    segmentation = open_array(partial, "segmentation", mode="r+")
    segmentation[GRID.block(9).slices] = 12345
    BlockStore.open(partial, RELABELLED_BLOCKS).marker(5).unlink()
    segmentation[GRID.block(5).slices] = 0
    before = _chunk_mtimes(partial)

    with pytest.raises(RuntimeError, match=r"blocks \[5, 8, 9, 10, 11\] were not relabelled"):
        finish_decoding(partial_path(out))
    assert not out.exists() and partial.exists()

    rewritten = [relabel_blocks(partial_path(out), job) for job in jobs]
    assert rewritten == [[], [5], [8, 9, 10, 11]]
    untouched = [b for b in range(len(GRID)) if b not in (5, 8, 9, 10, 11)]
    after = _chunk_mtimes(partial)
    for block_id in untouched:  # one chunk per block: c/<z>/<y>/<x>
        chunk = partial / "segmentation" / "s0" / "c" / Path(*map(str, GRID.block_index(block_id)))
        assert after[chunk] == before[chunk], block_id
    finish_decoding(partial_path(out))

    np.testing.assert_array_equal(read_segmentation(out), reference)
    attrs = store_attrs(out)
    assert attrs["complete"] is True
    assert attrs["provenance"]["n_objects"] == store_attrs(tmp_path / "reference.zarr")["provenance"]["n_objects"]
    assert attrs["provenance"]["n_objects"] == int(reference.max()) > 1
    assert not partial.exists()
    assert not [name for name in SCRATCH if (out / name).exists()]


def test_relabel_without_stitch_table_fails_and_an_interrupted_stitch_is_redone(tmp_path: Path, affs: Path) -> None:
    decoder = _decoder()
    out = tmp_path / "seg.zarr"
    partial = prepare_decoding(affs, partial_path(out), decoder, SETTINGS)
    decode_blocks(affs, partial_path(out), range(len(GRID)), decoder)
    leftover = stitch_dir(partial).with_name("stitch.tmp")  # a stitch killed while writing its table
    leftover.mkdir()
    (leftover / "final.npy").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="no stitch table"):
        relabel_blocks(partial_path(out), range(len(GRID)))
    with pytest.raises(RuntimeError, match="no stitch table"):
        finish_decoding(partial_path(out))
    n_objects = stitch_blocks(partial_path(out), decoder)
    assert not leftover.exists() and stitch_dir(partial).exists()
    assert stitch_blocks(partial_path(out), decoder) == n_objects  # done: not redone
    relabel_blocks(partial_path(out), range(len(GRID)))
    finish_decoding(partial_path(out))
    assert read_segmentation(out).max() == n_objects


def test_stitch_names_blocks_not_decoded(tmp_path: Path, affs: Path) -> None:
    decoder = _decoder()
    out = tmp_path / "seg.zarr"
    prepare_decoding(affs, partial_path(out), decoder, SETTINGS)
    decode_blocks(affs, partial_path(out), [b for b in range(len(GRID)) if b != 4], decoder)
    with pytest.raises(RuntimeError, match=r"blocks \[4\] were not decoded"):
        stitch_blocks(partial_path(out), decoder)
    assert not stitch_dir(partial_path(out)).exists()


def test_interrupted_publication_is_finished_by_a_rerun(tmp_path: Path, affs: Path, monkeypatch) -> None:
    decoder = _decoder()
    decode_volume(affs, tmp_path / "reference.zarr", decoder, SETTINGS)
    out = tmp_path / "seg.zarr"
    partial = _decode_and_stitch(affs, out, decoder)
    relabel_blocks(partial_path(out), range(len(GRID)))

    def killed(*args: object) -> None:
        raise OSError("killed before the rename")

    monkeypatch.setattr("pipeline_lib.blockstore.commit", killed)
    with pytest.raises(OSError, match="killed"):
        finish_decoding(partial_path(out))
    monkeypatch.undo()
    assert store_attrs(partial)["complete"] is True and not out.exists()
    (partial / "relabelled").mkdir()  # scratch half deleted
    decode_volume(affs, out, decoder, SETTINGS)  # resumes: nothing left but the publication
    np.testing.assert_array_equal(read_segmentation(out), read_segmentation(tmp_path / "reference.zarr"))
    assert not [name for name in SCRATCH if (out / name).exists()]


def test_decode_volume_resumes_a_partial_store_of_the_same_settings_only(
    tmp_path: Path, affs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "seg.zarr"
    decoder = _decoder()
    _decode_and_stitch(affs, out, decoder)
    relabel_blocks(partial_path(out), range(6))
    with caplog.at_level("INFO"):
        decode_volume(affs, out, decoder, SETTINGS)  # resumes the store left there
    assert "resuming the decoding" in caplog.text
    assert [f"block {b} already relabelled" in caplog.text for b in (0, 5, 6)] == [True, True, False]
    decode_volume(affs, tmp_path / "reference.zarr", decoder, SETTINGS)
    np.testing.assert_array_equal(read_segmentation(out), read_segmentation(tmp_path / "reference.zarr"))

    other = _decoder(min_size=40)  # another decoder: a store left by the first is replaced
    _decode_and_stitch(affs, out, decoder)
    decode_volume(affs, out, other, SETTINGS)
    decode_volume(affs, tmp_path / "other.zarr", other, SETTINGS)
    np.testing.assert_array_equal(read_segmentation(out), read_segmentation(tmp_path / "other.zarr"))
    assert not np.array_equal(read_segmentation(out), read_segmentation(tmp_path / "reference.zarr"))


def test_a_long_list_of_missing_blocks_is_cut_to_twenty(tmp_path: Path, affs: Path) -> None:
    decoder, settings = _decoder(), decode_settings((4, 4, 4))  # 96 blocks
    out = tmp_path / "seg.zarr"
    prepare_decoding(affs, partial_path(out), decoder, settings)
    decode_blocks(affs, partial_path(out), [0], decoder)
    with pytest.raises(RuntimeError, match=r"blocks \[1, 2, .*, 20\] and 75 more were not decoded"):
        stitch_blocks(partial_path(out), decoder)


@pytest.mark.parametrize("method", ["connected_components", "waterz", "seeded_watershed", "mutex_watershed"])
def test_a_killed_decode_job_reruns_only_its_missing_blocks(tmp_path: Path, affs: Path, method: str) -> None:
    decoder = _decoder(method=method)
    partial = prepare_decoding(affs, partial_path(tmp_path / "seg.zarr"), decoder, SETTINGS)
    store = BlockStore.open(partial, DECODED)
    shares = [store.share(job, 3) for job in range(3)]  # decode.max_jobs = 3: blocks 0-3, 4-7, 8-11
    decode_blocks(affs, partial, shares[0], decoder)
    decode_blocks(affs, partial, [4, 5], decoder)  # the second job was killed after two blocks
    assert store.missing() == [6, 7, 8, 9, 10, 11]
    before = {i: store.marker(i).stat().st_mtime_ns for i in range(6)}
    for share in shares:  # the rerun: every job again, the first finds all its blocks marked
        decode_blocks(affs, partial, share, decoder)
    assert store.missing() == []
    assert {i: store.marker(i).stat().st_mtime_ns for i in range(6)} == before
    stitch_blocks(partial, decoder)
    relabel_blocks(partial, range(len(GRID)))
    finish_decoding(partial)
    decode_volume(affs, tmp_path / "reference.zarr", decoder, SETTINGS)
    np.testing.assert_array_equal(
        read_segmentation(tmp_path / "seg.zarr"), read_segmentation(tmp_path / "reference.zarr")
    )
