"""Tests for pipeline_lib.io.tiles: tile JSON round trips (both forms) and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import imageio.v3 as iio
import jsonschema
import numpy as np
import pytest
import tifffile
from scipy.ndimage import zoom

from pipeline_lib.io import tiles
from pipeline_lib.io.tiles import SCHEMA_PATH, TiledVolume, TileError, load_tile_json

ALL = (slice(None),) * 3


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, arr)
    elif path.suffix == ".png":
        iio.imwrite(path, arr)
    elif path.suffix == ".h5":
        with h5py.File(path, "w") as f:
            f.create_dataset("block", data=arr)
    else:
        tifffile.imwrite(path, arr, photometric="minisblack")


def write_explicit(d: Path, vol: np.ndarray, block: tuple[int, int, int], ext: str, with_shape: bool) -> Path:
    """Cut ``vol`` into blocks (2-D slices when ext is .png) and write an explicit tile JSON."""
    entries = []
    bz = 1 if ext == ".png" else block[0]
    for z in range(0, vol.shape[0], bz):
        for y in range(0, vol.shape[1], block[1]):
            for x in range(0, vol.shape[2], block[2]):
                part = vol[z : z + bz, y : y + block[1], x : x + block[2]]
                name = f"t/{z}_{y}_{x}{ext}"
                _save(d / name, part[0] if ext == ".png" else part)
                entry = {"file": name, "offset": [z, y, x]}
                if with_shape:
                    entry["shape"] = list(part.shape)
                entries.append(entry)
    spec = {"shape": list(vol.shape), "dtype": str(vol.dtype), "voxel_size": [40, 4, 4], "tiles": entries}
    (d / "tiles.json").write_text(json.dumps(spec, indent=1))
    return d / "tiles.json"


def write_pattern(d: Path, disk: np.ndarray, tile: int, tile_st=(0, 0), rgb=False, **extra) -> Path:
    """Write ``disk`` (sections as stored, before zoom) as PyTorch Connectomics-style tiles."""
    depth, h, w = disk.shape
    ratio = extra.get("tile_ratio", 1)
    t_disk = int(tile / ratio)
    for z in range(depth):
        for r in range(-(-h // t_disk)):
            for c in range(-(-w // t_disk)):
                part = disk[z, r * t_disk : (r + 1) * t_disk, c * t_disk : (c + 1) * t_disk]
                if rgb:
                    p = part.astype(np.uint32)
                    part = np.stack([(p >> 16) & 255, (p >> 8) & 255, p & 255], -1).astype(np.uint8)
                _save(d / f"sec_{z:03d}" / f"{r + tile_st[0]}_{c + tile_st[1]}.png", part)
    spec = {
        "ndim": 3 if rgb else 1,
        "dtype": extra.pop("dtype", "uint8"),
        "image": [f"sec_{z:03d}/{{row}}_{{column}}.png" for z in range(depth)],
        "depth": depth,
        "height": extra.pop("height", round(h * ratio)),
        "width": extra.pop("width", round(w * ratio)),
        "n_columns": -(-w // t_disk),
        "n_rows": -(-h // t_disk),
        "tile_size": tile,
        "tile_ratio": ratio,
        "tile_st": list(tile_st),
        **extra,
    }
    (d / "pattern.json").write_text(json.dumps(spec))
    return d / "pattern.json"


def _regions(shape, rng, n=6):
    out = [ALL, (slice(shape[0] - 1, None), slice(0, 1), slice(shape[2] - 3, None))]
    for _ in range(n):
        lo = [int(rng.integers(0, s)) for s in shape]
        out.append(tuple(slice(a, int(rng.integers(a + 1, s + 1))) for a, s in zip(lo, shape, strict=True)))
    return out


@pytest.mark.parametrize(
    "ext, block, with_shape",
    [
        (".png", (1, 10, 12), False),
        (".npy", (3, 8, 8), True),
        (".tif", (4, 16, 7), False),
        (".npy", (6, 23, 31), False),
        (".h5", (2, 9, 40), True),
    ],
)
def test_explicit_round_trip(tmp_path: Path, ext, block, with_shape) -> None:
    rng = _rng(1)
    vol = rng.integers(0, 255, (6, 23, 31)).astype(np.uint8)
    tv = load_tile_json(write_explicit(tmp_path, vol, block, ext, with_shape))
    assert isinstance(tv, TiledVolume) and tv.shape == vol.shape and tv.dtype == np.uint8
    assert tv.voxel_size == (40, 4, 4)
    for region in _regions(vol.shape, rng):
        np.testing.assert_array_equal(tv.read(region), vol[region], err_msg=str(region))


@pytest.mark.parametrize(
    "shape, tile, tile_st",
    [((4, 20, 20), 10, (0, 0)), ((5, 23, 37), 8, (1, 1)), ((3, 9, 40), 16, (2, 5)), ((2, 7, 7), 32, (0, 0))],
)
def test_pattern_round_trip(tmp_path: Path, shape, tile, tile_st) -> None:
    rng = _rng(2)
    vol = rng.integers(0, 255, shape).astype(np.uint8)
    tv = load_tile_json(write_pattern(tmp_path, vol, tile, tile_st))
    assert tv.shape == vol.shape
    for region in _regions(vol.shape, rng):
        np.testing.assert_array_equal(tv.read(region), vol[region], err_msg=str(region))


def test_pattern_region_starting_at_z_gt_0_reads_its_own_sections(tmp_path: Path) -> None:
    vol = np.broadcast_to(np.arange(6, dtype=np.uint8)[:, None, None] * 40, (6, 12, 12)).copy()
    tv = load_tile_json(write_pattern(tmp_path, vol, 5))
    np.testing.assert_array_equal(tv.read((slice(3, 5), slice(2, 9), slice(4, 12))), vol[3:5, 2:9, 4:12])


def test_read_touches_only_intersecting_tiles(tmp_path: Path, monkeypatch) -> None:
    vol = _rng().integers(0, 255, (4, 30, 30)).astype(np.uint8)
    tv = load_tile_json(write_pattern(tmp_path, vol, 10, (1, 1)))
    seen: list[str] = []
    real = tiles.read_file
    monkeypatch.setattr(tiles, "read_file", lambda p, *a: seen.append(f"{p.parent.name}/{p.name}") or real(p, *a))
    np.testing.assert_array_equal(tv.read((slice(2, 3), slice(5, 12), slice(25, 30))), vol[2:3, 5:12, 25:30])
    assert sorted(seen) == ["sec_002/1_3.png", "sec_002/2_3.png"]


def test_read_unit_is_the_tile_grid(tmp_path: Path) -> None:
    vol = _rng().integers(0, 255, (3, 20, 30), dtype=np.uint8)
    assert load_tile_json(write_pattern(tmp_path / "p", vol, 8)).read_unit == (1, 8, 8)
    assert load_tile_json(write_explicit(tmp_path / "e", vol, (2, 12, 16), ".npy", False)).read_unit == (2, 12, 16)
    doc = json.loads((tmp_path / "p" / "pattern.json").read_text())
    doc["image"][1] = "sec_001/0_0.png"  # one section as one file: no common tile grid
    (tmp_path / "p" / "pattern.json").write_text(json.dumps(doc))
    assert load_tile_json(tmp_path / "p" / "pattern.json").read_unit == (1, 20, 30)


def test_pattern_rectangular_tiles_whole_sections_and_z_placeholder(tmp_path: Path) -> None:
    vol = _rng(3).integers(0, 255, (3, 11, 17)).astype(np.uint8)
    for z in range(3):
        for r in range(3):
            for c in range(2):
                _save(tmp_path / f"g{z}" / f"r{r:02d}c{c}.png", vol[z, r * 4 : r * 4 + 4, c * 10 : c * 10 + 10])
        _save(tmp_path / f"whole_{z}.png", vol[z])
    images = ["whole_0.png", "g{z}/r{row:02d}c{column}.png", "whole_2.png"]
    spec = {"image": images, "depth": 3, "height": 11, "width": 17, "tile_size": [4, 10]}
    (tmp_path / "p.json").write_text(json.dumps(spec))
    tv = load_tile_json(tmp_path / "p.json")
    np.testing.assert_array_equal(tv.read(ALL), vol)
    np.testing.assert_array_equal(tv.read((slice(1, 3), slice(3, 9), slice(8, 12))), vol[1:3, 3:9, 8:12])


@pytest.mark.parametrize("height, width", [(26, 30), (25, 29)])
def test_tile_ratio_2_labels_are_exact_with_nearest_zoom(tmp_path: Path, height, width) -> None:
    low = _rng(4).integers(1, 2**24, (3, 13, 15)).astype(np.uint32)  # RGB-encoded 24-bit ids
    full = low.repeat(2, 1).repeat(2, 2)[:, :height, :width]
    path = write_pattern(tmp_path, low, 16, (1, 1), rgb=True, tile_ratio=2, dtype="uint32", height=height, width=width)
    tv = load_tile_json(path, is_label=True)
    assert tv.shape == full.shape and tv.dtype == np.uint32
    np.testing.assert_array_equal(tv.read(ALL), full)
    np.testing.assert_array_equal(tv.read((slice(1, 3), slice(7, 20), slice(15, 29))), full[1:3, 7:20, 15:29])


def test_tile_ratio_2_images_use_linear_zoom_per_tile(tmp_path: Path) -> None:
    low = _rng(5).integers(0, 255, (2, 12, 8)).astype(np.uint8)
    tv = load_tile_json(write_pattern(tmp_path, low, 16, tile_ratio=2))
    expected = np.zeros((2, 24, 16), np.uint8)
    for z in range(2):
        for r in range(2):
            expected[z, r * 16 : r * 16 + 16] = zoom(low[z, r * 8 : r * 8 + 8], 2, order=1)[: 24 - r * 16]
    np.testing.assert_array_equal(tv.read(ALL), expected)


def test_rgb_image_tiles_use_first_channel(tmp_path: Path) -> None:
    vol = _rng(6).integers(0, 255, (2, 6, 6)).astype(np.uint8)
    for z in range(2):
        _save(tmp_path / f"s{z}" / "0_0.png", np.stack([vol[z], vol[z] // 2, vol[z] // 3], -1))
    spec = {
        "image": ["s0/{row}_{column}.png", "s1/{row}_{column}.png"],
        "depth": 2,
        "height": 6,
        "width": 6,
        "tile_size": 8,
        "ndim": 3,
    }
    (tmp_path / "p.json").write_text(json.dumps(spec))
    np.testing.assert_array_equal(load_tile_json(tmp_path / "p.json").read(ALL), vol)


def test_schema_file_is_valid_and_describes_every_field() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert [b["title"] for b in schema["oneOf"]] == ["explicit", "pattern"]
    for branch in schema["oneOf"]:
        for name, prop in branch["properties"].items():
            described = "description" in prop or "description" in schema["$defs"].get(
                prop.get("$ref", "#/$defs/x").split("/")[-1], {}
            )
            assert described, name
    item = schema["oneOf"][0]["properties"]["tiles"]["items"]["properties"]
    assert all("description" in p for p in item.values())


# --- errors ---------------------------------------------------------------------------------


def _explicit_json(d: Path, tiles_: list[dict], shape=(2, 8, 8), dtype="uint8") -> Path:
    (d / "t.json").write_text(json.dumps({"shape": list(shape), "dtype": dtype, "tiles": tiles_}))
    return d / "t.json"


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{\n  "shape": [1, 2, 3],\n  "dtype": "uint8"\n  "tiles": []\n}')
    with pytest.raises(TileError, match=r"t\.json:4:3: malformed JSON"):
        load_tile_json(tmp_path / "t.json")


@pytest.mark.parametrize(
    "content, match",
    [
        (
            {"shape": [1, 2, 3], "dtype": "uint8", "tiles": [{"file": "a.png", "offset": [0, -1, 0]}]},
            r"tiles\[0\]\.offset\[1\]: -1 is less than",
        ),
        (
            {"shape": [1, 2], "dtype": "uint8", "tiles": [{"file": "a.png", "offset": [0, 0, 0]}]},
            r"shape: \[1, 2\] is too short",
        ),
        (
            {"shape": [1, 2, 3], "dtype": "int7", "tiles": [{"file": "a.png", "offset": [0, 0, 0]}]},
            r"dtype: 'int7' is not one of",
        ),
        (
            {"shape": [1, 2, 3], "dtype": "uint8", "tiles": [{"file": "a.png", "ofset": [0, 0, 0]}]},
            r"tiles\[0\]: 'offset' is a required property",
        ),
        ({"image": ["a.png"], "depth": 1, "height": 4, "width": 4, "tile_size": 0}, r"tile_size: 0 is not valid"),
        ({"image": ["a.png"], "depth": 1, "width": 4, "tile_size": 4}, r"'height' is a required property"),
        ({"stuff": 1}, r"'tiles' \(explicit form\) or 'image' \(pattern form\)"),
    ],
)
def test_schema_errors_name_the_field(tmp_path: Path, content, match) -> None:
    (tmp_path / "t.json").write_text(json.dumps(content))
    with pytest.raises(TileError, match=match):
        load_tile_json(tmp_path / "t.json")


def test_missing_tiles_are_all_named_or_filled(tmp_path: Path) -> None:
    vol = _rng(7).integers(1, 255, (3, 20, 20)).astype(np.uint8)
    path = write_pattern(tmp_path, vol, 10)
    gone = [tmp_path / "sec_000/0_1.png", tmp_path / "sec_002/1_0.png", tmp_path / "sec_002/1_1.png"]
    for f in gone:
        f.unlink()
    with pytest.raises(TileError, match="3 tile file") as err:
        load_tile_json(path)
    assert all(str(f) in str(err.value) for f in gone)
    out = load_tile_json(path, fill_value=0).read(ALL)
    expected = vol.copy()
    expected[0, 0:10, 10:20] = 0
    expected[2, 10:20, :] = 0
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(TileError, match="fill_value 300 does not fit"):
        load_tile_json(path, fill_value=300)


def test_explicit_missing_tile_with_fill_and_uncovered_voxels(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((1, 4, 4), 9, np.uint8))
    path = _explicit_json(tmp_path, [{"file": "a.npy", "offset": [0, 0, 0]}, {"file": "b.npy", "offset": [1, 0, 0]}])
    with pytest.raises(TileError, match=r"1 tile file\(s\) missing.*b\.npy"):
        load_tile_json(path)
    out = load_tile_json(path, fill_value=5).read(ALL)
    assert (out[0, :4, :4] == 9).all() and (out[0, 4:] == 5).all() and (out[1] == 5).all()


@pytest.mark.parametrize(
    "entries, match",
    [
        (
            [{"file": "a.npy", "offset": [0, 0, 0]}, {"file": "b.npy", "offset": [0, 3, 3]}],
            r"tiles\[1\] \(.*b\.npy\) overlaps tiles\[0\]",
        ),
        (
            [{"file": "a.npy", "offset": [0, 0, 5]}],
            r"tiles\[0\] \(.*a\.npy\) at field 'tiles\[0\]\.offset' \(0, 0, 5\).*outside the volume",
        ),
        ([{"file": "a.npy", "offset": [1, 0, 0], "shape": [2, 4, 4]}], r"tiles\[0\].*outside the volume"),
    ],
)
def test_bad_geometry_names_the_tile(tmp_path: Path, entries, match) -> None:
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(TileError, match=match):
        load_tile_json(_explicit_json(tmp_path, entries))


def test_explicit_shape_and_dtype_mismatch_name_the_tile_and_field(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 4, 4), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((1, 4, 4), np.uint16))
    _save(tmp_path / "c.png", np.zeros((4, 4, 3), np.uint8))
    tv = load_tile_json(_explicit_json(tmp_path, [{"file": "a.npy", "offset": [0, 0, 0], "shape": [1, 4, 5]}]))
    with pytest.raises(
        TileError, match=r"tiles\[0\] \(.*a\.npy\): file shape \(1, 4, 4\) disagrees with field 'tiles\[0\]\.shape'"
    ):
        tv.read(ALL)
    tv = load_tile_json(_explicit_json(tmp_path, [{"file": "b.npy", "offset": [0, 0, 0]}]))
    with pytest.raises(TileError, match=r"tiles\[0\] \(.*b\.npy\): data type uint16 .*field 'dtype' uint8"):
        tv.read(ALL)
    tv = load_tile_json(_explicit_json(tmp_path, [{"file": "c.png", "offset": [0, 0, 0]}]))
    with pytest.raises(TileError, match=r"tiles\[0\] \(.*c\.png\): 3 channels"):
        tv.read(ALL)


def test_pattern_tile_size_and_dtype_mismatch(tmp_path: Path) -> None:
    vol = _rng(8).integers(0, 255, (2, 16, 16)).astype(np.uint8)
    path = write_pattern(tmp_path, vol, 8)
    _save(tmp_path / "sec_001/0_1.png", np.zeros((8, 6), np.uint8))
    _save(tmp_path / "sec_000/1_1.png", np.zeros((8, 8), np.uint16))
    tv = load_tile_json(path)
    with pytest.raises(
        TileError, match=r"image\[1\] row 0 column 1 \(.*0_1\.png\): width 6 .*'tile_size'/'width' \(expected 8\)"
    ):
        tv.read((slice(1, 2), slice(None), slice(None)))
    with pytest.raises(
        TileError, match=r"image\[0\] row 1 column 1 \(.*1_1\.png\): data type uint16 .*field 'dtype' uint8"
    ):
        tv.read((slice(0, 1), slice(None), slice(None)))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"n_rows": 1}, r"field 'n_rows' 1 x tile_size 8 does not cover 16"),
        ({"depth": 5}, r"field 'image' has 2 patterns, fewer than field 'depth' 5"),
        (
            {"image": ["sec_000/{row}_{col}.png", "s/{row}_{column}.png"]},
            r"'image\[0\]' .*unknown placeholders \['col'\]",
        ),
        (
            {"image": ["sec_000/{row}_{column}.png", "s/{row_{column}.png"]},
            r"'image\[1\]' 's/\{row_\{column}\.png': bad pattern",
        ),
    ],
)
def test_pattern_json_inconsistencies(tmp_path: Path, change, match) -> None:
    vol = np.zeros((2, 16, 16), np.uint8)
    path = write_pattern(tmp_path, vol, 8)
    spec = json.loads(path.read_text()) | change
    path.write_text(json.dumps(spec))
    with pytest.raises(TileError, match=match):
        load_tile_json(path)
