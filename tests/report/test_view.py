"""Viewer helpers: neuroglancer state/link and napari script, without either viewer installed."""

from __future__ import annotations

import json
import sys
import threading
import types
import urllib.parse
import urllib.request

import numpy as np
import pytest

from pipeline_lib.__main__ import main
from pipeline_lib.errors import UserError
from pipeline_lib.report import cors_server, napari_script, neuroglancer_link, neuroglancer_state


def test_neuroglancer_state_of_a_segmentation_follows_its_inputs(synthetic_run):
    state = neuroglancer_state(synthetic_run.segmentations["cc"], root=synthetic_run.workdir)
    assert state["dimensions"] == {"x": [8e-9, "m"], "y": [8e-9, "m"], "z": [4e-8, "m"]}
    assert state["position"] == [20.0, 24.0, 8.0]
    layers = {layer["name"]: layer for layer in state["layers"]}
    assert list(layers) == ["image", "affinities", "mask", "ground truth", "segmentation"]
    assert [layers[n]["type"] for n in layers] == ["image", "image", "segmentation", "segmentation", "segmentation"]
    base = "zarr3://http://localhost:8000/results"
    assert layers["image"]["source"] == f"{base}/volumes/d.zarr/image/"
    assert layers["ground truth"]["source"] == f"{base}/volumes/d.zarr/labels/"
    assert layers["segmentation"]["source"] == f"{base}/segmentations/m/cc/d.zarr/segmentation/"
    affinities = layers["affinities"]["source"]
    assert affinities["url"] == f"{base}/predictions/m/d.zarr/affinities/"
    assert affinities["transform"]["outputDimensions"] == {
        "c^": [1, ""],
        "z": [4e-8, "m"],
        "y": [8e-9, "m"],
        "x": [8e-9, "m"],
    }
    assert "getDataValue(2)" in layers["affinities"]["shader"]  # the three nearest-neighbour channels
    assert state["selectedLayer"]["layer"] == "segmentation"
    # every source is a path that exists under the served root
    for layer in state["layers"]:
        url = layer["source"]["url"] if isinstance(layer["source"], dict) else layer["source"]
        assert (synthetic_run.workdir / url.removeprefix("zarr3://http://localhost:8000/")).is_dir()


def test_neuroglancer_state_of_one_store_only(synthetic_run):
    state = neuroglancer_state(
        synthetic_run.volume, root=synthetic_run.workdir, url_base="http://h:9/x/", follow_inputs=False
    )
    assert [layer["name"] for layer in state["layers"]] == ["image", "mask", "ground truth"]
    assert state["layers"][0]["source"] == "zarr3://http://h:9/x/results/volumes/d.zarr/image/"


def test_store_outside_the_served_root_is_refused(synthetic_run, tmp_path):
    with pytest.raises(UserError, match="not under the served directory"):
        neuroglancer_state(synthetic_run.volume, root=tmp_path)


def test_link_encodes_the_state(synthetic_run):
    state = neuroglancer_state(synthetic_run.volume, root=synthetic_run.workdir)
    link = neuroglancer_link(state)
    assert link.startswith("https://neuroglancer-demo.appspot.com/#!")
    assert json.loads(urllib.parse.unquote(link.split("#!", 1)[1])) == state


def test_view_command_writes_state_and_prints_link(synthetic_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(synthetic_run.workdir)
    out = tmp_path / "state.json"
    assert main(["view", "results/segmentations/m/merged/d.zarr", "--neuroglancer", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith("https://")
    assert json.loads(out.read_text())["layers"][-1]["source"].endswith("/segmentations/m/merged/d.zarr/segmentation/")


def test_napari_script_opens_every_layer_at_its_scale(synthetic_run, monkeypatch):
    """Run the script against a stand-in napari module that records the layers it adds."""
    script = napari_script(synthetic_run.segmentations["cc"])
    added = []
    viewer = types.SimpleNamespace(
        add_image=lambda data, **kw: added.append(("image", data, kw)),
        add_labels=lambda data, **kw: added.append(("labels", data, kw)),
    )
    fake = types.ModuleType("napari")
    fake.Viewer = lambda: viewer
    fake.run = lambda: None
    monkeypatch.setitem(sys.modules, "napari", fake)
    exec(compile(script, "view_napari.py", "exec"), {})
    names = {kw["name"]: (kind, data, kw) for kind, data, kw in added}
    assert list(names) == ["image", "affinities", "mask", "ground truth", "segmentation"]
    assert names["image"][2]["scale"] == (40.0, 8.0, 8.0)
    assert names["affinities"][2]["scale"] == (1.0, 40.0, 8.0, 8.0)
    assert names["segmentation"][0] == "labels" and names["segmentation"][1].shape == (16, 48, 40)
    assert names["segmentation"][1].dtype == np.uint32  # as stored


def test_napari_command_writes_a_script(synthetic_run, tmp_path):
    out = tmp_path / "open.py"
    assert main(["view", str(synthetic_run.volume), "--napari", "--no-inputs", "-o", str(out)]) == 0
    compile(out.read_text(), str(out), "exec")
    assert "add_labels" in out.read_text() and "napari.run()" in out.read_text()


def test_cors_server_serves_stores_to_other_origins(synthetic_run):
    server = cors_server(synthetic_run.workdir, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/results/volumes/d.zarr/image/zarr.json", timeout=10) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert "multiscales" in r.read().decode()
    finally:
        server.shutdown()
        server.server_close()
