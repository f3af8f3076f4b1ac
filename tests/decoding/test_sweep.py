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
from pipeline_lib.decoding.sweep import COLUMNS, choose, sweep
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
    tolerant = sweep(
        stores / "affs.zarr", stores / "volume.zarr", decoder, thresholds,
        tmp_path / "t.csv", tmp_path / "t.png", tolerance=1.0,
    )  # fmt: skip
    within = [float(r["threshold"]) for r, a in zip(rows, arand, strict=True) if a <= 2 * min(arand)]
    assert tolerant["threshold"] == max(within) and tolerant["tolerance"] == 1.0
    assert tolerant["lowest"] == min(arand)


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

    def spy(affinities_in, offsets_in, decoder, thresholds, image):  # type: ignore[no-untyped-def]
        seen.append((len(affinities_in), [list(o) for o in offsets_in]))
        return original(affinities_in, offsets_in, decoder, thresholds, image)

    monkeypatch.setattr(sweep_module, "segmentations", spy)
    decoder = decoder_settings({"method": method, "min_size": 10})
    best = sweep(
        stores / "affs.zarr", stores / "volume.zarr", decoder, [0.3, 0.6], tmp_path / "t.csv", tmp_path / "t.png"
    )
    assert seen == [(n_channels, LONG_OFFSETS[:n_channels])]  # nearest-neighbour channels first in this store
    assert best["threshold"] in (0.3, 0.6)


def test_sweep_warns_when_the_best_threshold_is_an_end_of_its_grid(stores, tmp_path, caplog) -> None:
    """Issue 22, item 4: the optimum t* of a full grid, swept again on the part of the grid up to
    t* (and from t* on), is that grid's highest (lowest) value: the sweep warns in the log, the
    JSON and the plot, naming the key to extend; a best inside the grid gets no warning."""
    decoder = decoder_settings({"method": "waterz", "min_size": 10})
    full = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]

    def run(grid: list[float], name: str) -> dict:
        out = tmp_path / name
        sweep(stores / "affs.zarr", stores / "volume.zarr", decoder, grid, out.with_suffix(".csv"),
              out.with_suffix(".png"), out_json=out.with_suffix(".json"))  # fmt: skip
        return json.loads(out.with_suffix(".json").read_text())

    best = run(full, "full")
    optimum = best["threshold"]
    assert 0.1 < optimum < 0.9, "the synthetic case should have an optimum inside the grid"
    assert best["grid_edge"] is None and best["warning"] is None and best["thresholds"] == full

    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline_lib.decoding.sweep"):
        below = run([t for t in full if t <= optimum], "below")
    assert below["threshold"] == optimum and below["grid_edge"] == "highest"
    assert f"at threshold {optimum:g}, the highest of the grid" in below["warning"]
    assert "the optimum may lie above it: extend evaluate.sweep_thresholds.waterz" in below["warning"]
    assert [r.getMessage() for r in caplog.records] == [below["warning"]]

    above = run([t for t in full if t >= optimum], "above")
    assert above["threshold"] == optimum and above["grid_edge"] == "lowest"
    assert "the optimum may lie below it" in above["warning"]
    assert run([optimum], "single")["warning"] is None  # one threshold: nothing to extend


def test_grid_edge_of_hand_made_grids() -> None:
    from pipeline_lib.decoding.sweep import grid_edge

    assert grid_edge(0.95, [0.5, 0.95, 0.9]) == "highest"
    assert grid_edge(0.5, [0.9, 0.5, 0.95]) == "lowest"
    assert grid_edge(0.9, [0.5, 0.9, 0.95]) is None
    assert grid_edge(0.5, [0.5, 0.5]) is None


def test_default_grids_reach_each_methods_optimum() -> None:
    """Every decoder method has its grid; seeded watershed and connected components, whose optimum
    on real data lies near 1 (0.995 on a FIB-SEM slab), reach 0.999 in steps of at most 0.005
    above 0.99; the agglomerating methods span 0.01..0.99 (the demo's waterz optimum lies at 0.05 or below)."""
    from pipeline_lib.config.schema import load_schema, validate_with_defaults

    methods = load_schema("config")["$defs"]["decoder"]["properties"]["method"]["enum"]
    config = {"datasets": ["x"], "models": {"m": {"architecture": "unet"}}, "decoders": {"d": {"method": "waterz"}}}
    grids = validate_with_defaults(config, "config", "config")["evaluate"]["sweep_thresholds"]
    assert set(grids) == set(methods)
    for method in ("seeded_watershed", "connected_components"):
        near_one = [t for t in grids[method] if t >= 0.99]
        assert max(grids[method]) >= 0.999 and 0.995 in near_one
        assert max(np.diff(near_one)) <= 0.005 + 1e-9
    for method in ("waterz", "mutex_watershed"):
        assert min(grids[method]) <= 0.01 and max(grids[method]) >= 0.99


def test_choose_takes_the_highest_threshold_within_the_tolerance() -> None:
    """Seed 0's validation curve on gala (docs/results/gala.md): flat from 0.4 to 0.7."""
    arand = {0.3: 0.048, 0.4: 0.042, 0.5: 0.0416, 0.6: 0.042, 0.7: 0.044, 0.8: 0.049, 0.9: 0.060}
    rows = [{"threshold": t, "arand": a} for t, a in arand.items()]
    assert choose(rows, "arand")["threshold"] == 0.5
    assert choose(rows, "arand", tolerance=0.02)["threshold"] == 0.6  # 0.042 <= 0.0416 * 1.02
    assert choose(rows, "arand", tolerance=0.2)["threshold"] == 0.8
    assert choose(rows, "arand", margin=0.01)["threshold"] == 0.8  # 0.049 <= 0.0416 + 0.01
    assert choose(rows, "arand", margin=0.02)["threshold"] == 0.9  # 0.060 <= 0.0616
    ties = [{"threshold": t, "voi": 1.0} for t in (0.2, 0.6, 0.4)]
    assert choose(ties, "voi")["threshold"] == 0.6  # exact ties: the higher threshold, as before
