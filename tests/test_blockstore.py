"""The block lifecycle: grid recorded at prepare, markers, missing blocks, job shares, publication."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr

from pipeline_lib.blockstore import BlockStore, Step, job_count, job_share, listed
from pipeline_lib.geometry import BlockGrid
from pipeline_lib.io.volumes import store_attrs

DONE = Step(folder="blocks", suffix=".done", verb="compute", past="computed")
OTHER = Step(folder="second", suffix="", verb="write", past="written")
GRID = BlockGrid((10, 8, 8), (4, 8, 4))  # 3 x 1 x 2 = 6 blocks


def _store(tmp_path: Path) -> BlockStore:
    partial = tmp_path / "out.zarr.partial"
    zarr.open_group(str(partial), mode="w")
    return BlockStore.create(partial, GRID, (2, 4, 4), DONE, halo=(1, 2, 2), steps=[OTHER])


def test_the_grid_recorded_at_prepare_is_read_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    again = BlockStore.open(store.partial, DONE)
    assert again == store
    assert (again.grid.shape, again.grid.block_shape, again.chunk_shape, again.halo) == (
        (10, 8, 8),
        (4, 8, 4),
        (2, 4, 4),
        (1, 2, 2),
    )
    assert store_attrs(store.partial)["block_grid"]["shape"] == [10, 8, 8]
    assert len(store) == 6 and store.final == tmp_path / "out.zarr"
    assert (store.partial / "blocks").is_dir() and (store.partial / "second").is_dir()


def test_a_store_without_a_recorded_grid_is_named(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "old.zarr.partial"), mode="w")
    with pytest.raises(RuntimeError, match="no recorded block grid"):
        BlockStore.open(tmp_path / "old.zarr.partial", DONE)


def test_markers_missing_blocks_and_steps(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.missing() == [0, 1, 2, 3, 4, 5]
    store.mark(1, "one")
    store.mark(4, b"\x00four")
    assert [store.done(i) for i in range(6)] == [False, True, False, False, True, False]
    assert store.marker(1).read_text() == "one" and store.marker(4).read_bytes() == b"\x00four"
    assert store.missing() == [0, 2, 3, 5]
    assert not list(store.marker(1).parent.glob(".*"))  # no temporary file left
    second = store.at(OTHER)
    assert second.grid == store.grid and second.missing() == list(range(6))
    second.mark(0)
    assert second.marker(0) == store.partial / "second" / "0" and second.done(0) and not store.done(0)
    with pytest.raises(RuntimeError, match=r"blocks \[0, 2, 3, 5\] were not computed; rerun the workflow to compute"):
        store.check()


def test_publish_checks_every_block_then_renames(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.partial / "scratch").mkdir()
    for i in range(5):
        store.mark(i)
    with pytest.raises(RuntimeError, match=r"blocks \[5\] were not computed"):
        store.publish()
    assert store.partial.exists() and not store.final.exists() and not store.complete
    store.mark(5)
    assert store.publish({"n": 3}, scratch=["scratch"]) == tmp_path / "out.zarr"
    assert not store.partial.exists()
    attrs = store_attrs(tmp_path / "out.zarr")
    assert attrs["complete"] is True and attrs["n"] == 3
    assert not (tmp_path / "out.zarr" / "scratch").exists()


def test_a_store_marked_complete_is_published_without_its_markers(tmp_path: Path) -> None:
    """An interruption between 'complete' and the rename: the markers may be gone already."""
    store = _store(tmp_path)
    zarr.open_group(str(store.partial), mode="a").attrs["complete"] = True
    assert store.complete
    store.publish(scratch=["blocks"])
    assert (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(("n_blocks", "max_jobs"), [(6, 256), (6, 4), (1000, 7), (5, 5), (1, 3)])
def test_job_shares_cover_every_block_once_in_at_most_max_jobs(n_blocks: int, max_jobs: int) -> None:
    n_jobs = job_count(n_blocks, max_jobs)
    assert n_jobs == min(n_blocks, max_jobs)
    shares = [job_share(n_blocks, n_jobs, j) for j in range(n_jobs)]
    assert [b for share in shares for b in share] == list(range(n_blocks))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1 and min(map(len, shares)) >= 1


def test_job_share_by_hand_and_bad_arguments(tmp_path: Path) -> None:
    assert [list(job_share(10, 4, j)) for j in range(4)] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    assert _store(tmp_path).share(1, 4) == job_share(6, 4, 1) == range(1, 3)
    with pytest.raises(ValueError, match="max_jobs"):
        job_count(5, 0)
    with pytest.raises(IndexError):
        job_share(10, 4, 4)


def test_listed_cuts_long_lists() -> None:
    assert listed([1, 2]) == "[1, 2]"
    assert listed(list(range(25)), shown=3) == "[0, 1, 2] and 22 more"
