"""Tiled volumes described by a tile JSON (explicit or PyTorch Connectomics pattern form).

Both forms are documented in ``docs/tiles.md`` and validated against
``pipeline_lib/schemas/tiles.schema.json``. :func:`load_tile_json` checks the JSON, that every
tile file exists and (explicit form) that tiles lie inside the volume without overlapping;
:meth:`TiledVolume.read` then reads only the tiles that intersect the region.

Pattern form (the layout of ``connectomics/data/utils/data_io.py:tile2volume``)::

    section z, cell (r, c) -> file image[z].format(row=r + tile_st[0], column=c + tile_st[1])
    cell (r, c) covers y in [r*T, min((r+1)*T, height)), x in [c*T, min((c+1)*T, width))
    the file is zoomed by tile_ratio (order 1 for images, nearest for labels), then cropped

Unlike the reference, section z always reads ``image[z]`` (its MONAI tile loader passes
``image[z0:z1]`` but indexes it with absolute z, so regions starting at z > 0 read the
wrong sections).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Formatter
from typing import Any

import jsonschema
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import zoom

from pipeline_lib.io.files import Region, Shape3, SourceError, normalize_region, probe_file, read_file

#: The tile JSON schema, beside the config schemas.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "tiles.schema.json"
Bounds = tuple[tuple[int, int], ...]


class TileError(SourceError):
    """A tile JSON or one of its tiles is unusable; the message names the file and field."""


@dataclass(frozen=True)
class Tile:
    """One tile: ``file`` supplies the volume voxels ``[offset, offset + shape)``."""

    name: str  # "tiles[3]" or "image[12] row 0 column 2": the JSON field, for messages
    file: Path
    offset: Shape3
    shape: Shape3
    key: str | None = None


@cache
def tile_schema() -> dict[str, Any]:
    """The tile JSON schema (one ``oneOf``: explicit, pattern)."""
    return dict(json.loads(SCHEMA_PATH.read_text()))


def _branch(form: str) -> dict[str, Any]:
    schema = tile_schema()
    (sub,) = [b for b in schema["oneOf"] if b["title"] == form]
    return {**sub, "$defs": schema["$defs"]}


def _get(data: dict[str, Any], key: str) -> Any:
    """``data[key]`` or the pattern form's schema default (the one place defaults live)."""
    return data[key] if key in data else _branch("pattern")["properties"][key]["default"]


def _resolve(base: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else base / name


def _field(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _read_json(path: Path) -> tuple[str, dict[str, Any]]:
    """Parse and schema-check ``path``; return its form ("explicit"/"pattern") and content."""
    if not path.is_file():
        raise TileError(f"{path}: tile JSON not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TileError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise TileError(f"{path}: not a text (JSON) file: {e}") from e
    if not isinstance(data, dict) or not ({"tiles", "image"} & set(data)):
        raise TileError(f"{path}: expected an object with 'tiles' (explicit form) or 'image' (pattern form)")
    form = "pattern" if "image" in data else "explicit"
    validator = jsonschema.Draft202012Validator(_branch(form))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(f"{_field(e.absolute_path)}: {e.message}" for e in errors)
        raise TileError(f"{path}: invalid tile JSON ({form} form): {problems}")
    return form, data


@dataclass
class _Explicit:
    tiles: list[Tile]
    lo: NDArray[np.int64] = field(init=False, repr=False)
    hi: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lo = np.array([t.offset for t in self.tiles], np.int64).reshape(-1, 3)
        shapes = np.array([t.shape for t in self.tiles], np.int64).reshape(-1, 3)
        self.hi = self.lo + shapes

    def tiles_in(self, b: Bounds) -> Iterator[Tile]:
        r0, r1 = np.array([v[0] for v in b]), np.array([v[1] for v in b])
        hit = np.all((self.lo < r1) & (self.hi > r0), axis=1)
        return (self.tiles[i] for i in np.flatnonzero(hit))


@dataclass
class _Pattern:
    images: list[str]
    base: Path
    shape: Shape3
    tile_hw: tuple[int, int]
    tile_st: tuple[int, int]
    grid: list[bool] = field(init=False, repr=False)  # per section: has {row}/{column}

    def __post_init__(self) -> None:
        self.grid = []
        for z, p in enumerate(self.images[: self.shape[0]]):
            try:
                names = {f for _, f, _, _ in Formatter().parse(p) if f is not None}
            except ValueError as e:
                raise TileError(f"field 'image[{z}]' {p!r}: bad pattern ({e})") from e
            if names - {"row", "column", "z"}:
                raise TileError(
                    f"field 'image[{z}]' {p!r}: unknown placeholders {sorted(names - {'row', 'column', 'z'})}"
                )
            self.grid.append(bool(names & {"row", "column"}))

    def tile(self, z: int, r: int, c: int) -> Tile:
        (th, tw), (_, h, w) = self.tile_hw, self.shape
        name = self.images[z].format(row=r + self.tile_st[0], column=c + self.tile_st[1], z=z)
        f = _resolve(self.base, name)
        if not self.grid[z]:  # one file holds the whole section
            return Tile(f"image[{z}]", f, (z, 0, 0), (1, h, w))
        y0, x0 = r * th, c * tw
        shape = (1, min(th, h - y0), min(tw, w - x0))
        return Tile(f"image[{z}] row {r} column {c}", f, (z, y0, x0), shape)

    def tiles_in(self, b: Bounds) -> Iterator[Tile]:
        (th, tw), (_, (y0, y1), (x0, x1)) = self.tile_hw, b
        for z in range(*b[0]):
            if not self.grid[z]:
                yield self.tile(z, 0, 0)
                continue
            for r in range(y0 // th, -(-y1 // th)):
                for c in range(x0 // tw, -(-x1 // tw)):
                    yield self.tile(z, r, c)


@dataclass
class TiledVolume:
    """A tile JSON's volume; implements ``VolumeSource`` (``shape``, ``dtype``, ``read``).

    Voxels of missing tiles (allowed only when ``fill_value`` is set) and, in the explicit
    form, voxels no tile covers read as ``fill_value`` (0 when unset). Tile files are
    checked when read: explicit tiles must match their shape and dtype exactly; pattern
    tiles must fill their grid cell after zooming and cast safely to ``dtype`` (labels:
    their values must fit).
    """

    path: Path
    shape: Shape3
    dtype: np.dtype[Any]
    layout: _Explicit | _Pattern = field(repr=False)
    is_label: bool = False
    fill_value: float | None = None
    tile_ratio: float = 1.0
    voxel_size: tuple[float, float, float] | None = None
    missing: frozenset[Path] = frozenset()

    @property
    def read_unit(self) -> Shape3 | None:
        """The tile grid spacing (pattern form; a whole section if some section is one
        file), or the largest tile extent (explicit form): see ``VolumeSource.read_unit``."""
        if isinstance(self.layout, _Pattern):
            gridded = all(self.layout.grid[: self.shape[0]])
            return (1, *self.layout.tile_hw) if gridded else (1, self.shape[1], self.shape[2])
        if not self.layout.tiles:
            return None
        z, y, x = (int(v) for v in (self.layout.hi - self.layout.lo).max(axis=0))
        return (z, y, x)

    @property
    def files(self) -> list[Path]:
        """Every tile file the JSON names, in order (existing or not)."""
        whole = tuple((0, n) for n in self.shape)
        return [t.file for t in self.layout.tiles_in(whole)]

    def read(self, region: Region) -> NDArray[Any]:
        """Assemble ``region`` (clipped to ``shape``) from the tiles that intersect it."""
        b = normalize_region(region, self.shape)
        fill = 0 if self.fill_value is None else self.fill_value
        out = np.full(tuple(e - s for s, e in b), fill, self.dtype)
        for tile in self.layout.tiles_in(b):
            if tile.file in self.missing:
                continue
            lo = [max(s, o) for (s, _), o in zip(b, tile.offset, strict=True)]
            hi = [min(e, o + n) for (_, e), o, n in zip(b, tile.offset, tile.shape, strict=True)]
            if all(h > a for a, h in zip(lo, hi, strict=True)):
                inner = tuple(slice(a - o, h - o) for a, h, o in zip(lo, hi, tile.offset, strict=True))
                dst = tuple(slice(a - s, h - s) for a, h, (s, _) in zip(lo, hi, b, strict=True))
                out[dst] = self._load(tile, inner)
        return out

    def _error(self, tile: Tile, what: str) -> TileError:
        return TileError(f"{self.path}: {tile.name} ({tile.file}): {what}")

    def _load(self, tile: Tile, inner: tuple[slice, ...]) -> NDArray[Any]:
        """Read ``tile`` and return its part ``inner`` (tile coordinates) as ``dtype``."""
        pattern = isinstance(self.layout, _Pattern)
        if not pattern:  # explicit: the header must match exactly; read only the part
            info = probe_file(tile.file, tile.key)
            if info.shape != tile.shape:
                raise self._error(
                    tile, f"file shape {info.shape} disagrees with field '{tile.name}.shape' {tile.shape}"
                )
        arr = read_file(tile.file, tile.key, None if pattern else inner)
        rgb = arr.ndim == 4  # one RGB(A) image (1, y, x, c)
        if rgb and self.is_label:
            c = arr[..., :3].astype(np.uint32)
            arr = c[..., 0] * 65536 + c[..., 1] * 256 + c[..., 2]
        elif rgb and pattern:
            arr = arr[..., 0]  # as the reference: image tiles keep their first channel
        elif rgb:
            raise self._error(
                tile, f"{arr.shape[-1]} channels; expected a single-channel image of field 'dtype' {self.dtype}"
            )
        self._check_dtype(tile, arr, by_value=self.is_label and (rgb or pattern))
        if pattern:
            arr = self._fit(tile, arr)[inner]
        return arr.astype(self.dtype, copy=False)

    def _check_dtype(self, tile: Tile, arr: NDArray[Any], by_value: bool) -> None:
        if by_value and arr.dtype.kind in "uib" and self.dtype.kind in "ui":
            lim = np.iinfo(self.dtype)
            ok = arr.size == 0 or (lim.min <= int(arr.min()) and int(arr.max()) <= lim.max)
        elif isinstance(self.layout, _Pattern):
            ok = bool(np.can_cast(arr.dtype, self.dtype, "safe"))
        else:
            ok = arr.dtype == self.dtype
        if not ok:
            values = f" (values {arr.min()}..{arr.max()})" if arr.size else ""
            raise self._error(tile, f"data type {arr.dtype}{values} disagrees with field 'dtype' {self.dtype}")

    def _fit(self, tile: Tile, arr: NDArray[Any]) -> NDArray[Any]:
        """Zoom a pattern tile by ``tile_ratio`` and crop it to its grid cell."""
        r = self.tile_ratio
        if r != 1 and self.is_label:  # scipy's order-0 zoom as indices: exact for any dtype
            rows, cols = (zoom(np.arange(n, dtype=float), r, order=0).astype(np.intp) for n in arr.shape[1:])
            arr = arr[:, rows][:, :, cols]
        elif r != 1:
            arr = np.stack([zoom(s, r, order=1) for s in arr])
        assert isinstance(self.layout, _Pattern)
        full = (1, *self.layout.tile_hw) if self.layout.grid[tile.offset[0]] else tile.shape
        slack = 0 if r == 1 else max(1, math.ceil(r))  # rounding of zoomed edge tiles
        for ax, what in ((1, "height"), (2, "width")):
            need, most = tile.shape[ax], max(tile.shape[ax], full[ax]) + slack
            if not need <= arr.shape[ax] <= most:
                expected = f"{need}..{most}" if most > need else f"{need}"
                raise self._error(
                    tile,
                    f"{what} {arr.shape[ax]} after zoom by tile_ratio "
                    f"{r} disagrees with fields 'tile_size'/'{what}' "
                    f"(expected {expected})",
                )
        return arr[:, : tile.shape[1], : tile.shape[2]]


def _explicit(path: Path, data: dict[str, Any], missing: set[Path]) -> _Explicit:
    shape = np.array(data["shape"])
    tiles = []
    for i, t in enumerate(data["tiles"]):
        f = _resolve(path.parent, t["file"])
        if "shape" not in t and f in missing:
            continue  # extent unknown: its voxels read as fill_value
        tshape = tuple(t["shape"]) if "shape" in t else probe_file(f, t.get("key")).shape
        tiles.append(Tile(f"tiles[{i}]", f, tuple(t["offset"]), tshape, t.get("key")))  # type: ignore[arg-type]
    layout = _Explicit(tiles)
    for t, end in zip(tiles, layout.hi, strict=True):
        if np.any(end > shape):
            raise TileError(
                f"{path}: {t.name} ({t.file}) at field '{t.name}.offset' "
                f"{t.offset} with shape {t.shape} ends at {tuple(end.tolist())}, "
                f"outside the volume (field 'shape' {tuple(data['shape'])})"
            )
    for i in range(len(tiles) - 1):
        lo, hi = layout.lo, layout.hi
        hit = np.all((lo[i] < hi[i + 1 :]) & (lo[i + 1 :] < hi[i]), axis=1)
        if hit.any():
            a, b = tiles[i], tiles[i + 1 + int(np.flatnonzero(hit)[0])]
            raise TileError(f"{path}: {b.name} ({b.file}) overlaps {a.name} ({a.file}); check fields 'offset'/'shape'")
    return layout


def _pattern(path: Path, data: dict[str, Any]) -> _Pattern:
    shape = (int(data["depth"]), int(data["height"]), int(data["width"]))
    ts = data["tile_size"]
    tile_hw = (ts, ts) if isinstance(ts, int) else (ts[0], ts[1])
    if len(data["image"]) < shape[0]:
        raise TileError(f"{path}: field 'image' has {len(data['image'])} patterns, fewer than field 'depth' {shape[0]}")
    for key, size, t in (("n_rows", shape[1], tile_hw[0]), ("n_columns", shape[2], tile_hw[1])):
        if key in data and data[key] * t < size:
            raise TileError(
                f"{path}: field '{key}' {data[key]} x tile_size {t} does not "
                f"cover {size} voxels (needs {-(-size // t)})"
            )
    st = _get(data, "tile_st")
    try:
        return _Pattern(list(data["image"]), path.parent, shape, tile_hw, (st[0], st[1]))
    except TileError as e:
        raise TileError(f"{path}: {e}") from None


def _tile_files(path: Path, form: str, data: dict[str, Any]) -> list[Path]:
    if form == "explicit":
        return [_resolve(path.parent, t["file"]) for t in data["tiles"]]
    shape = (data["depth"], data["height"], data["width"])
    return [t.file for t in _pattern(path, data).tiles_in(tuple((0, n) for n in shape))]


def tile_json_files(path: Path) -> list[Path]:
    """Every tile file a tile JSON names (existing or not), after checking the JSON."""
    return _tile_files(Path(path), *_read_json(Path(path)))


def load_tile_json(path: Path | str, is_label: bool = False, fill_value: float | None = None) -> TiledVolume:
    """Open the tile JSON at ``path`` as a lazy :class:`TiledVolume`.

    ``is_label`` selects nearest zoom and RGB decoding (R*65536 + G*256 + B). Missing tile
    files raise one :class:`TileError` naming all of them, unless ``fill_value`` is given:
    then their voxels read as ``fill_value``. Malformed JSON (file:line:column), schema
    violations (field path), tiles outside the volume or overlapping raise
    :class:`TileError` naming the file and the field.
    """
    path = Path(path)
    form, data = _read_json(path)
    dtype = np.dtype(_get(data, "dtype"))
    if fill_value is not None and dtype.kind != "f" and np.array(fill_value).astype(dtype) != fill_value:
        raise TileError(f"{path}: fill_value {fill_value} does not fit field 'dtype' {dtype}")
    files = _tile_files(path, form, data)
    missing = {f for f in dict.fromkeys(files) if not f.is_file()}
    if missing and fill_value is None:
        listed = [str(f) for f in files if f in missing]
        names = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
        raise TileError(f"{path}: {len(missing)} tile file(s) missing (or set fill_value): {names}")
    layout = _pattern(path, data) if form == "pattern" else _explicit(path, data, missing)
    ratio = float(_get(data, "tile_ratio")) if form == "pattern" else 1.0
    vs = data.get("voxel_size")
    shape = tuple(data["shape"]) if form == "explicit" else layout.shape  # type: ignore[union-attr]
    voxel_size = (float(vs[0]), float(vs[1]), float(vs[2])) if vs else None
    return TiledVolume(
        path,
        shape,
        dtype,
        layout,
        is_label,
        fill_value,
        ratio,  # type: ignore[arg-type]
        voxel_size,
        frozenset(missing),
    )
