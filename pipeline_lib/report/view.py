"""Open an output in a viewer: a neuroglancer state/link or a napari script (``view`` command).

Neither viewer is needed to write these. From an output store the stores it was made from are
found through the ``inputs`` of its provenance (segmentation → affinities → volume), so viewing
a segmentation also shows the image, the affinities and the ground truth.

Neuroglancer reads the stores over HTTP: serve the directory that holds ``results/`` with
CORS headers (``python -m pipeline_lib serve``) and open the printed link.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from pipeline_lib.errors import UserError
from pipeline_lib.io.volumes import SCALE0, has_array, store_attrs, voxel_size
from pipeline_lib.offsets import shown_channels

NEUROGLANCER = "https://neuroglancer-demo.appspot.com"
URL_BASE = "http://localhost:8000"

# array name → (layer name, layer kind); layers are listed in this order
ARRAYS = {
    "image": ("image", "image"),
    "affinities": ("affinities", "affinities"),
    "uncertainty": ("uncertainty", "image"),
    "mask": ("mask", "segmentation"),
    "labels": ("ground truth", "segmentation"),
    "segmentation": ("segmentation", "segmentation"),
}


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # image, affinities or segmentation
    store: Path
    array: str
    voxel_size: tuple[float, float, float]  # nm (z, y, x)
    shape: tuple[int, ...]
    dtype: str
    offsets: tuple[tuple[int, ...], ...] = ()


def _stores(store: Path, follow_inputs: bool) -> list[Path]:
    """``store`` and, following provenance inputs, the zarr stores it was made from."""
    found: list[Path] = []
    todo = [store]
    while todo:
        current = todo.pop(0)
        if current in found or not (current / "zarr.json").exists():
            continue
        found.append(current)
        if follow_inputs:
            inputs = store_attrs(current).get("provenance", {}).get("inputs", [])
            todo += [Path(p) for p in inputs if str(p).endswith(".zarr")]
    return found


def layers(store: str | Path, follow_inputs: bool = True) -> list[Layer]:
    """The viewable arrays of ``store`` (and of the stores it was made from), image first."""
    store = Path(store).resolve()
    if not (store / "zarr.json").exists():
        raise UserError(f"{store}: not a zarr store")
    found: list[Layer] = []
    for array_name, (layer_name, kind) in ARRAYS.items():
        for s in _stores(store, follow_inputs):
            if has_array(s, array_name) and all(layer.array != array_name for layer in found):
                array = zarr.open_array(str(s / array_name / SCALE0), mode="r")
                offsets = tuple(tuple(int(v) for v in o) for o in array.attrs.get("offsets", []))  # type: ignore[union-attr, arg-type]
                found.append(
                    Layer(
                        layer_name,
                        kind,
                        s,
                        array_name,
                        voxel_size(s, array_name),
                        tuple(array.shape),
                        str(array.dtype),
                        offsets,
                    )
                )
    if not found:
        raise UserError(f"{store}: no viewable arrays")
    return found


def _url(layer: Layer, root: Path, url_base: str) -> str:
    try:
        relative = (layer.store / layer.array).relative_to(root.resolve())
    except ValueError:
        raise UserError(f"{layer.store} is not under the served directory {root}; pass another root") from None
    return f"zarr3://{url_base.rstrip('/')}/{relative.as_posix()}/"


def _m(nm: float) -> list[Any]:
    return [nm * 1e-9, "m"]


AFFINITY_SHADER = """void main() {
  emitRGB(vec3(toNormalized(getDataValue(%d)), toNormalized(getDataValue(%d)), toNormalized(getDataValue(%d))));
}
"""


def _ng_layer(layer: Layer, root: Path, url_base: str) -> dict[str, Any]:
    url = _url(layer, root, url_base)
    if layer.kind == "segmentation":
        return {"type": "segmentation", "name": layer.name, "source": url, "visible": layer.array != "mask"}
    if layer.kind == "affinities":
        channels = (shown_channels(layer.offsets) if layer.offsets else list(range(layer.shape[0])))[:3]
        channels += [channels[-1]] * (3 - len(channels))
        vz, vy, vx = layer.voxel_size
        transform = {"outputDimensions": {"c^": [1, ""], "z": _m(vz), "y": _m(vy), "x": _m(vx)}}
        return {
            "type": "image",
            "name": layer.name,
            "source": {"url": url, "transform": transform},
            "shader": AFFINITY_SHADER % tuple(channels),
            "opacity": 0.6,
            "visible": False,
        }
    return {"type": "image", "name": layer.name, "source": url, "visible": layer.array == "image"}


def neuroglancer_state(
    store: str | Path, root: str | Path = ".", url_base: str = URL_BASE, follow_inputs: bool = True
) -> dict[str, Any]:
    """A neuroglancer viewer state showing ``store`` (and its input stores) served from ``root``
    at ``url_base``: dimensions in metres from the voxel size, position at the volume centre."""
    found = layers(store, follow_inputs)
    root = Path(root).resolve()
    first = found[0]
    vz, vy, vx = first.voxel_size
    z, y, x = first.shape[-3:]
    selected = found[-1].name
    return {
        "dimensions": {"x": _m(vx), "y": _m(vy), "z": _m(vz)},
        "position": [x / 2, y / 2, z / 2],
        "crossSectionScale": 1,
        "layers": [_ng_layer(layer, root, url_base) for layer in found],
        "selectedLayer": {"layer": selected, "visible": True},
        "layout": "4panel",
    }


def neuroglancer_link(state: dict[str, Any], viewer: str = NEUROGLANCER) -> str:
    """A URL of ``viewer`` that opens ``state``."""
    return f"{viewer.rstrip('/')}/#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")), safe="")


def napari_script(store: str | Path, follow_inputs: bool = True) -> str:
    """Python source that opens ``store`` (and its input stores) in napari, lazily from zarr, at
    the voxel size in nm. Run it with napari and zarr installed."""
    found = layers(store, follow_inputs)
    lines = [
        f'"""Open {Path(store).resolve()} in napari (written by `python -m pipeline_lib view --napari`)."""',
        "import napari",
        "import zarr",
        "",
        "viewer = napari.Viewer()",
    ]
    for layer in found:
        data = f"zarr.open_array({str(layer.store / layer.array / SCALE0)!r}, mode='r')"
        scale = (1.0, *layer.voxel_size) if len(layer.shape) == 4 else layer.voxel_size  # channel slider
        if layer.kind == "segmentation":
            visible = layer.array != "mask"
            lines.append(f"viewer.add_labels({data}, name={layer.name!r}, scale={scale!r}, visible={visible!r})")
        else:
            limits = (0, 255) if layer.dtype == "uint8" else (0.0, 1.0)
            visible = layer.array == "image"
            options = f"scale={scale!r}, contrast_limits={limits!r}, visible={visible!r}"
            lines.append(f"viewer.add_image({data}, name={layer.name!r}, {options})")
    lines += ["napari.run()", ""]
    return "\n".join(lines)


class _CORSHandler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()


def cors_server(
    directory: str | Path = ".", port: int = 8000, host: str = "127.0.0.1"
) -> http.server.ThreadingHTTPServer:
    """An HTTP server of ``directory`` that neuroglancer (another origin) may read; call
    ``serve_forever()`` on it."""
    handler = functools.partial(_CORSHandler, directory=os.fspath(directory))
    return http.server.ThreadingHTTPServer((host, port), handler)


__all__ = ["Layer", "cors_server", "layers", "napari_script", "neuroglancer_link", "neuroglancer_state"]
