"""Decoder parameter sweep: table, plot and best threshold on a synthetic validation volume."""

from __future__ import annotations

import csv
import importlib
import json

import numpy as np
import pytest
from decoding_helpers import LONG_OFFSETS, write_affinities

from pipeline_lib.data.synthetic import generate
from pipeline_lib.decoding.registry import decoder_settings
from pipeline_lib.decoding.sweep import COLUMNS, sweep
from pipeline_lib.io.volumes import create_array
from pipeline_lib.targets import affinities


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sweep")
    labels = generate((16, 48, 48), seed=6, cell_size=14).labels
    create_array(root / "volume.zarr", "labels", labels.shape, labels.dtype, (16, 48, 48), (8.0, 8.0, 8.0))[...] = (
        labels
    )
    affs, _ = affinities(labels, LONG_OFFSETS)
    rng = np.random.default_rng(1)
    noisy = np.clip(affs + rng.normal(0, 0.25, affs.shape), 0, 1)
    write_affinities(root / "affs.zarr", noisy, LONG_OFFSETS, (16, 48, 48), dtype="uint8")
    return root


@pytest.mark.parametrize("method", ["waterz", "mutex_watershed", "connected_components"])
def test_sweep_writes_table_plot_and_best(stores, tmp_path, method: str) -> None:
    thresholds = [0.9, 0.1, 0.5, 0.3, 0.7]
    decoder = decoder_settings({"method": method, "min_size": 10})
    best = sweep(
        stores / "affs.zarr", stores / "volume.zarr", decoder, thresholds,
        tmp_path / "t.csv", tmp_path / "t.png", out_json=tmp_path / "best.json",
    )  # fmt: skip
    with open(tmp_path / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [float(r["threshold"]) for r in rows] == sorted(thresholds)
    arand = [float(r["arand"]) for r in rows]
    assert best["threshold"] in thresholds and best["arand"] == min(arand)
    assert json.loads((tmp_path / "best.json").read_text())["threshold"] == best["threshold"]
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    merge = [float(r["voi_merge"]) for r in rows]
    assert merge[0] >= merge[-1]  # the lowest threshold merges at least as much as the highest
    if method != "connected_components":
        assert min(arand) < 0.1


def test_sweep_rejects_bad_thresholds(stores, tmp_path) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        sweep(
            stores / "affs.zarr",
            stores / "volume.zarr",
            decoder_settings({"method": "waterz"}),
            [1.5],
            tmp_path / "a",
            tmp_path / "b",
        )


@pytest.mark.parametrize(("method", "n_channels"), [("waterz", 3), ("seeded_watershed", 3), ("mutex_watershed", 6)])
def test_sweep_reads_only_the_decoders_channels(stores, tmp_path, monkeypatch, method: str, n_channels: int) -> None:
    sweep_module = importlib.import_module("pipeline_lib.decoding.sweep")  # the package exports the function

    original = sweep_module.segmentations
    seen = []

    def spy(affinities_in, offsets_in, decoder, thresholds):  # type: ignore[no-untyped-def]
        seen.append((len(affinities_in), [list(o) for o in offsets_in]))
        return original(affinities_in, offsets_in, decoder, thresholds)

    monkeypatch.setattr(sweep_module, "segmentations", spy)
    decoder = decoder_settings({"method": method, "min_size": 10})
    best = sweep(
        stores / "affs.zarr", stores / "volume.zarr", decoder, [0.3, 0.6], tmp_path / "t.csv", tmp_path / "t.png"
    )
    assert seen == [(n_channels, LONG_OFFSETS[:n_channels])]  # nearest-neighbour channels first in this store
    assert best["threshold"] in (0.3, 0.6)
