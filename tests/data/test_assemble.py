import itertools
import json
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

from pipeline_lib.config import DatasetSpec
from pipeline_lib.config.settings import Roi, SyntheticSpec
from pipeline_lib.data import assemble
from pipeline_lib.data.assemble import assemble_dataset, super_blocks
from pipeline_lib.data.synthetic import generate
from pipeline_lib.errors import UserError
from pipeline_lib.io import tiles
from pipeline_lib.io.sources import open_source
from pipeline_lib.io.volumes import open_array, partial_path, store_attrs, voxel_size
from pipeline_lib.startup import dataset_header


def _spec(**kw) -> DatasetSpec:
    base = dict(name="d", voxel_size=(40.0, 4.0, 4.0), roles=("train",), image=None, labels=None, mask=None)
    base |= dict(synthetic=None, roi=None)
    base.update(kw)
    return DatasetSpec(**base)


def test_synthetic_assembles_to_ome_zarr(tmp_path):
    spec = _spec(synthetic=SyntheticSpec((16, 40, 40), 3, 14.0, 0.05))
    out = tmp_path / "d.zarr"
    assemble_dataset(spec, out, (8, 16, 16))
    expected = generate((16, 40, 40), 3, 14.0, 0.05)
    assert np.array_equal(open_array(out, "image")[:], expected.image)
    assert np.array_equal(open_array(out, "labels")[:], expected.labels)
    assert open_array(out, "image").chunks == (8, 16, 16)
    assert voxel_size(out, "labels") == (40.0, 4.0, 4.0)
    assert store_attrs(out)["provenance"]["stage"] == "assemble"
    assert not partial_path(out).exists()
    assert dataset_header(spec).shape == (16, 40, 40)


def test_hdf5_with_roi_mask_and_signed_labels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (12, 30, 30), dtype=np.uint8)
    labels = rng.integers(0, 50, (12, 30, 30)).astype(np.int32)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = image
        f["gt"] = labels
        f["mask"] = (labels > 10).astype(np.uint8) * 255
    src = lambda key: {"format": "hdf5", "path": str(tmp_path / "v.h5"), "key": key}  # noqa: E731
    spec = _spec(image=src("raw"), labels=src("gt"), mask=src("mask"), roi=Roi((2, 5, 0), (8, 20, 30)))
    out = tmp_path / "v.zarr"
    assemble_dataset(spec, out, (4, 8, 8))
    region = (slice(2, 10), slice(5, 25), slice(0, 30))
    assert np.array_equal(open_array(out, "image")[:], image[region])
    assert open_array(out, "labels").dtype == np.uint32
    assert np.array_equal(open_array(out, "labels")[:], labels[region])
    assert np.array_equal(open_array(out, "mask")[:], (labels[region] > 10).astype(np.uint8))
    assert dataset_header(spec).shape == (8, 20, 30)


def test_roi_outside_volume_and_failed_assembly_leaves_nothing(tmp_path):
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = np.zeros((4, 8, 8), np.uint8)
    spec = _spec(image={"format": "hdf5", "path": str(tmp_path / "v.h5"), "key": "raw"}, roi=Roi((0, 0, 0), (4, 9, 8)))
    with pytest.raises(UserError, match="outside the volume"):
        assemble_dataset(spec, tmp_path / "v.zarr", (4, 8, 8))
    assert not (tmp_path / "v.zarr").exists() and not partial_path(tmp_path / "v.zarr").exists()


# --- super blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, chunk, unit, begin, max_bytes",
    [
        ((64, 2048, 2048), (32, 128, 128), (1, 512, 512), (0, 0, 0), 2**26),  # the benchmark
        ((37, 300, 517), (8, 32, 48), (1, 64, 100), (3, 70, 13), 2**26),  # off the tile grid
        ((37, 300, 517), (8, 32, 48), (1, 64, 100), (3, 64, 100), 2**26),  # on it, odd region
        ((20, 90, 90), (7, 16, 16), (1, 90, 90), (0, 0, 0), 7 * 32 * 32),  # whole sections, tight budget
        ((20, 90, 90), (4, 16, 16), (6, 25, 40), (1, 2, 3), 2**20),  # 3-D units (e.g. zarr chunks)
        ((5, 9, 13), (2, 4, 4), None, (0, 0, 0), 1),  # no unit: one chunk per block
        ((0, 9, 13), (2, 4, 4), (1, 9, 13), (0, 0, 0), 2**20),  # empty region
    ],
)
def test_super_blocks_cover_region_once_in_whole_chunks(shape, chunk, unit, begin, max_bytes):
    blocks = super_blocks(shape, chunk, unit, begin, 1, max_bytes)
    coarse = [-(-n // c) for n, c in zip(shape, chunk, strict=True)]  # count per chunk, not per voxel
    seen = np.zeros(coarse, np.int64)
    for box in blocks:
        assert all(b % c == 0 for b, c in zip(box.begin, chunk, strict=True)), box
        assert all(e % c == 0 or e == n for e, c, n in zip(box.end, chunk, shape, strict=True)), box
        assert box.size <= max(max_bytes, int(np.prod(chunk))), box
        seen[tuple(slice(b // c, -(-e // c)) for b, e, c in zip(box.begin, box.end, chunk, strict=True))] += 1
    assert np.all(seen == 1)
    assert [b.begin for b in blocks] == sorted(b.begin for b in blocks)  # C order


def _tiles_per_block(blocks, unit, begin):
    """How many blocks touch each unit of the source (units indexed in source coordinates)."""
    hits: dict[tuple[int, ...], int] = {}
    for box in blocks:
        lo = [(b + o) // u for b, o, u in zip(box.begin, begin, unit, strict=True)]
        hi = [-(-(e + o) // u) for e, o, u in zip(box.end, begin, unit, strict=True)]
        for key in itertools.product(*(range(a, b) for a, b in zip(lo, hi, strict=True))):
            hits[key] = hits.get(key, 0) + 1
    return hits


@pytest.mark.parametrize("begin", [(0, 0, 0), (3, 64, 100), (0, 96, 300)])
def test_super_blocks_decode_each_tile_once_when_chunk_and_tile_edges_meet(begin):
    shape, chunk, unit = (37, 300, 517), (8, 32, 50), (1, 64, 100)
    blocks = super_blocks(shape, chunk, unit, begin, 1, 2**26)
    assert set(_tiles_per_block(blocks, unit, begin).values()) == {1}
    assert max(b.size for b in blocks) <= 8 * 64 * 100  # lcm(chunk, tile) per axis, no more


def test_super_blocks_shrink_to_the_budget_in_whole_chunks():
    blocks = super_blocks((64, 2048, 2048), (32, 128, 128), (1, 2048, 2048), (0, 0, 0), 4, 2**24)
    assert {b.shape for b in blocks} == {(32, 256, 512)}  # 4 MiB of 4-byte voxels: 16 MiB
    assert max(_tiles_per_block(blocks, (1, 2048, 2048), (0, 0, 0)).values()) == 32


# --- assembling a tiled volume ------------------------------------------------------------


def _write_tiles(d: Path, vol: np.ndarray, tile: int, rgb: bool = False) -> dict:
    """``vol`` as pattern-form PNG tiles under ``d``; returns its source spec."""
    depth, h, w = vol.shape
    for z, r, c in itertools.product(range(depth), range(-(-h // tile)), range(-(-w // tile))):
        part = vol[z, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
        if rgb:
            p = part.astype(np.uint32)
            part = np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], -1).astype(np.uint8)
        (d / f"{z}").mkdir(parents=True, exist_ok=True)
        iio.imwrite(d / f"{z}/{r}_{c}.png", part)
    doc = {"image": [f"{z}/{{row}}_{{column}}.png" for z in range(depth)], "depth": depth, "height": h, "width": w}
    doc |= {"tile_size": tile, "dtype": "uint32" if rgb else str(vol.dtype), "ndim": 3 if rgb else 1}
    (d / "tiles.json").write_text(json.dumps(doc))
    return {"format": "tiles", "path": str(d / "tiles.json")}


def _per_chunk(source_spec: dict, roi: Roi, chunk, is_label=False) -> np.ndarray:
    """The previous assembly path: one source read per output chunk."""
    src = open_source(source_spec, Path("/"), is_label=is_label)
    out = np.zeros(roi.shape, src.dtype)
    for idx in itertools.product(*(range(0, n, c) for n, c in zip(roi.shape, chunk, strict=True))):
        box = tuple(slice(i, min(i + c, n)) for i, c, n in zip(idx, chunk, roi.shape, strict=True))
        region = tuple(slice(s.start + b, s.stop + b) for s, b in zip(box, roi.begin, strict=True))
        out[box] = src.read(region)
    return out


@pytest.mark.parametrize(
    "begin, max_bytes, most_decodes",
    [
        ((1, 8, 24), 2**26, 1),  # off the tile grid (16), but chunk edges (8) meet tile edges
        ((1, 5, 7), 2**26, 4),  # they never meet: tiles cut by a block edge decode twice per axis
        ((1, 5, 7), 256, 9),  # budget of one chunk: blocks smaller than tiles, 3 per tile and axis
    ],
)
def test_tiled_roi_off_the_tile_grid_equals_per_chunk_path(tmp_path, monkeypatch, begin, max_bytes, most_decodes):
    vol = np.random.default_rng(1).integers(0, 256, (9, 70, 90), dtype=np.uint8)
    roi = Roi(begin, (7, 61 - begin[1], 80 - begin[2]))  # ends at (8, 61, 80)
    spec = _spec(image=_write_tiles(tmp_path / "t", vol, 16), roi=roi)
    decoded: list[Path] = []
    real = tiles.read_file
    monkeypatch.setattr(tiles, "read_file", lambda p, *a: decoded.append(p) or real(p, *a))
    assemble_dataset(spec, tmp_path / "o.zarr", (4, 8, 8), max_block_bytes=max_bytes)
    counts = [decoded.count(f) for f in set(decoded)]
    got = open_array(tmp_path / "o.zarr", "image")[:]
    assert np.array_equal(got, vol[1:8, begin[1] : 61, begin[2] : 80])
    assert np.array_equal(got, _per_chunk(spec.image, roi, (4, 8, 8)))
    assert max(counts) == most_decodes


def test_tiled_labels_are_decoded_as_labels(tmp_path):
    labels = np.random.default_rng(2).integers(0, 2**24, (3, 20, 30)).astype(np.uint32)
    spec = _spec(image=_write_tiles(tmp_path / "i", (labels % 251).astype(np.uint8), 8),
                 labels=_write_tiles(tmp_path / "l", labels, 8, rgb=True))  # fmt: skip
    assemble_dataset(spec, tmp_path / "o.zarr", (2, 8, 8))
    assert open_array(tmp_path / "o.zarr", "labels").dtype == np.uint32
    assert np.array_equal(open_array(tmp_path / "o.zarr", "labels")[:], labels)


def test_failed_background_write_leaves_nothing(tmp_path, monkeypatch):
    class Failing:
        def __init__(self, array):
            self.array, self.calls = array, 0

        def __setitem__(self, key, value):
            self.calls += 1
            if self.calls == 2:
                raise OSError("disk full")
            self.array[key] = value

    real = assemble.create_array
    monkeypatch.setattr(assemble, "create_array", lambda *a, **k: Failing(real(*a, **k)))
    spec = _spec(synthetic=SyntheticSpec((16, 40, 40), 3, 14.0, 0.05))
    with pytest.raises(OSError, match="disk full"):
        assemble_dataset(spec, tmp_path / "d.zarr", (8, 16, 16))
    assert not (tmp_path / "d.zarr").exists() and not partial_path(tmp_path / "d.zarr").exists()
