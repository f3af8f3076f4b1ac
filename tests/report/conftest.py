"""Small synthetic outputs in the results layout, made without running the workflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
import pytest

from pipeline_lib.config.settings import EvaluateSettings
from pipeline_lib.data.synthetic import generate
from pipeline_lib.evaluation import evaluate_segmentation
from pipeline_lib.io.volumes import create_array, set_store_attrs
from pipeline_lib.provenance import provenance
from pipeline_lib.targets import affinities

SHAPE = (16, 48, 40)
VOXEL = (40.0, 8.0, 8.0)
CHUNKS = (8, 24, 24)
OFFSETS = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -3, 0]]
DECODERS = ("cc", "merged")


@dataclass(frozen=True)
class SyntheticRun:
    workdir: Path
    volume: Path
    prediction: Path
    segmentations: dict[str, Path]
    evaluations: dict[str, Path]


def _write(store: Path, name: str, data: np.ndarray, chunks: tuple[int, ...], attrs: dict | None = None) -> None:
    create_array(store, name, data.shape, data.dtype, chunks, VOXEL, attrs=attrs)[...] = data


def make_run(workdir: Path, model: str = "m", dataset: str = "d") -> SyntheticRun:
    """Volume (image, labels, mask), ground-truth affinities as the prediction, two
    segmentations (connected components of the labels, and one with neighbours merged) and
    their evaluations, each with provenance, under ``workdir/results``."""
    results = workdir / "results"
    synthetic = generate(SHAPE, seed=5, cell_size=12)
    volume = results / "volumes" / f"{dataset}.zarr"
    _write(volume, "image", synthetic.image, CHUNKS)
    _write(volume, "labels", synthetic.labels, CHUNKS)
    _write(volume, "mask", np.ones(SHAPE, np.uint8), CHUNKS)
    set_store_attrs(
        volume, {"dataset": dataset, "provenance": provenance("assemble", {"dataset": {"name": dataset}}, [])}
    )

    prediction = results / "predictions" / model / f"{dataset}.zarr"
    aff, _ = affinities(synthetic.labels, OFFSETS)
    _write(
        prediction,
        "affinities",
        (aff * 255).astype(np.uint8),
        (len(OFFSETS), *CHUNKS),
        {"offsets": OFFSETS, "encoding": "uint8"},
    )
    set_store_attrs(
        prediction,
        {
            "provenance": provenance("predict", {"model": {"offsets": OFFSETS}}, [volume, workdir / "best.ckpt"]),
            "checkpoints": [{"path": str(workdir / "best.ckpt"), "sha256": "0" * 64}],
        },
    )

    segs = {"cc": cc3d.connected_components(synthetic.labels).astype(np.uint32)}  # as decode writes them
    merged = segs["cc"].copy()
    merged[(merged > 0) & (merged % 3 == 0)] = 3  # merge every third segment into one
    segs["merged"] = merged
    segmentations, evaluations = {}, {}
    for decoder, seg in segs.items():
        store = results / "segmentations" / model / decoder / f"{dataset}.zarr"
        _write(store, "segmentation", seg, CHUNKS)
        set_store_attrs(
            store,
            {"provenance": provenance("decode", {"decoder": {"method": decoder}}, [prediction]), "complete": True},
        )
        segmentations[decoder] = store
        evaluations[decoder] = results / "evaluations" / model / decoder / f"{dataset}.json"
        evaluate_segmentation(
            store,
            volume,
            evaluations[decoder],
            EvaluateSettings(
                block_shape=CHUNKS, sweep_thresholds={"waterz": (0.5,)}, sweep_criterion="arand", sweep_tolerance=0.0
            ),
        )
    return SyntheticRun(workdir, volume, prediction, segmentations, evaluations)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRun:
    return make_run(tmp_path_factory.mktemp("synthetic_run"))


@pytest.fixture
def make_synthetic_run():
    """:func:`make_run` itself, for tests that need more than one run."""
    return make_run
