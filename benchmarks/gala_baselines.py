"""Baselines for the gala crops, so that a learned model's test scores mean something.

Prints VOI split / merge (bits) and adapted Rand error (CREMI conventions, ground-truth 0
ignored; :func:`pipeline_lib.evaluation.evaluate_arrays`) on the gala TEST crop for:

(a) an upper bound per decoder of ``config/gala.yaml`` (waterz, mutex_watershed,
    seeded_watershed, connected_components, with their min_size / small_objects and the
    model's offsets): the ground truth's own affinities plus N(0, 0.2) noise clipped to
    [0, 1] (fixed seeds). Each decoder's threshold is the best (``evaluate.sweep_criterion``,
    ties to the higher threshold, as in :func:`pipeline_lib.decoding.sweep`) of
    ``evaluate.sweep_thresholds.<method>`` on the noisy ground-truth affinities of the VALIDATION part
    (``gala_val_part``: the train crop's last 64 x-columns); the test crop is only scored.
(b) a floor with no learning: seeded watershed of the Gaussian-smoothed raw intensities
    (membranes are dark: the boundary map is the negated smoothed image, seeds are connected
    components of ``smoothed > seed threshold``, intensities scaled to [0, 1] by 1/255), then
    the decoders' small-object merging. ``sigma`` and the seed threshold are chosen by a grid
    on the validation part, then applied to test.

Crops are read with :func:`pipeline_lib.io.sources.open_source` from ``$GALA_DIR`` (default
``<repo>/../shared/data/gala``), with the file names and ROIs of ``config/datasets.yaml``.
Output: a markdown table, then as the last stdout line one JSON object
``{"name": "gala_baselines", "rows": [...], "seconds": ...}``.
Run: ``.venv/bin/python benchmarks/gala_baselines.py`` (about 30 s on one core).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.segmentation import watershed

from pipeline_lib.config import DatasetSpec, DecoderSettings, Settings, load_config, load_datasets, read_yaml
from pipeline_lib.decoding.image_evidence import image_weight
from pipeline_lib.decoding.postprocess import relabel_consecutive, remove_small_objects
from pipeline_lib.decoding.sweep import segmentations
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.io.files import Region
from pipeline_lib.io.sources import open_source
from pipeline_lib.targets import affinities

REPO = Path(__file__).resolve().parents[1]
NOISE_STD = 0.2
NOISE_SEED = {"val": 0, "test": 1}  # one fixed noise draw per crop, shared by all decoders
SIGMAS = (0.5, 1.0, 2.0, 3.0)  # raw-watershed grid: Gaussian sigma (voxels) ...
SEED_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)  # ... and seed threshold (intensity / 255)
RAW_MIN_SIZE = 50  # as the decoders of config/gala.yaml: objects below 50 voxels are merged

Volume = tuple[NDArray[np.uint8], NDArray[np.integer]]


def load_settings() -> Settings:
    """config/gala.yaml, validated (schema defaults filled), datasets file resolved in the repo."""
    config = read_yaml(REPO / "config" / "gala.yaml")
    config["datasets_file"] = str(REPO / config["datasets_file"])
    return load_config(config, check_files=False)


def read_crop(spec: DatasetSpec, gala_dir: Path) -> Volume:
    """(image, labels) of a dataset's ROI, its files looked up by name in ``gala_dir``."""
    region: Region = (slice(None), slice(None), slice(None))
    if spec.roi is not None:
        (z, y, x), (dz, dy, dx) = spec.roi.begin, spec.roi.shape
        region = (slice(z, z + dz), slice(y, y + dy), slice(x, x + dx))
    arrays = []
    for source in (spec.image, spec.labels):
        assert source is not None, f"dataset {spec.name} needs image and labels"
        local = {**source, "path": Path(source["path"]).name}
        arrays.append(open_source(local, gala_dir).read(region))
    return arrays[0], arrays[1]


def noisy_gt_affinities(
    labels: NDArray[np.integer], offsets: Sequence[Sequence[int]], seed: int
) -> NDArray[np.float32]:
    """Ground-truth affinities plus N(0, NOISE_STD), clipped to [0, 1]."""
    aff, _ = affinities(labels, offsets)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_STD, aff.shape).astype(np.float32)
    return np.clip(aff + noise, 0.0, 1.0)


def scores(seg: NDArray[np.integer], gt: NDArray[np.integer]) -> dict[str, float]:
    s = evaluate_arrays(seg, gt)
    return {"voi_split": s.voi_split, "voi_merge": s.voi_merge, "arand": s.arand}


def pick(candidates: Iterable[tuple[Any, dict[str, float]]], criterion: str) -> tuple[Any, dict[str, float]]:
    """Lowest ``criterion``; ties go to the last candidate (higher threshold, as the sweep does)."""
    return min(reversed(sorted(candidates, key=lambda c: c[0])), key=lambda c: c[1][criterion])


def upper_bound(
    decoder: DecoderSettings, offsets: Sequence[Sequence[int]], settings: Settings, val: Volume, test: Volume
) -> dict[str, Any]:
    """Threshold swept on noisy GT affinities of val, then test scored at that threshold."""
    val_aff = noisy_gt_affinities(val[1], offsets, NOISE_SEED["val"])
    thresholds = settings.evaluate.sweep_thresholds[decoder.method]
    tried = [(t, scores(seg, val[1])) for t, seg in segmentations(val_aff, offsets, decoder, thresholds)]
    threshold, val_scores = pick(tried, settings.evaluate.sweep_criterion)
    test_aff = noisy_gt_affinities(test[1], offsets, NOISE_SEED["test"])
    ((_, seg),) = segmentations(test_aff, offsets, dataclasses.replace(decoder, threshold=threshold), [threshold])
    return {"chosen": {"threshold": threshold}, "val_arand": val_scores["arand"], **scores(seg, test[1])}


def raw_watershed(image: NDArray[np.uint8], sigma: float, seed_threshold: float) -> NDArray[np.integer]:
    """Watershed of the negated smoothed intensities from bright seeds, small objects merged."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32) / 255.0, sigma)
    markers, _ = ndimage.label(smooth > seed_threshold)
    labels = watershed(-smooth, markers)
    return relabel_consecutive(remove_small_objects(labels, RAW_MIN_SIZE, "merge"))


def raw_floor(criterion: str, val: Volume, test: Volume) -> dict[str, Any]:
    """(sigma, seed threshold) chosen by grid on val, then test scored with them."""
    tried = [
        ((sigma, t), scores(raw_watershed(val[0], sigma, t), val[1]))
        for sigma, t in itertools.product(SIGMAS, SEED_THRESHOLDS)
    ]
    (sigma, t), val_scores = pick(tried, criterion)
    return {
        "chosen": {"sigma": sigma, "seed_threshold": t},
        "val_arand": val_scores["arand"],
        **scores(raw_watershed(test[0], sigma, t), test[1]),
    }


def main() -> None:
    start = time.perf_counter()
    gala_dir = Path(os.environ.get("GALA_DIR", REPO.parent / "shared" / "data" / "gala"))
    if not (gala_dir / "test-gt.lzf.h5").is_file():
        sys.exit(f"gala crops not found in {gala_dir}: set GALA_DIR to the folder holding test-gt.lzf.h5")
    settings = load_settings()
    (model,) = settings.models.values()
    offsets = [list(o) for o in model.offsets]
    declared = load_datasets(REPO / "config" / "datasets.yaml")
    val = read_crop(declared["gala_val_part"], gala_dir)
    test = read_crop(declared["gala_test"], gala_dir)
    rows = []
    for name, decoder in settings.decoders.items():
        if image_weight(decoder):  # ground-truth affinities are the bound: no image mixed in
            continue
        row = upper_bound(decoder, offsets, settings, val, test)
        rows.append({"method": f"GT affinities + N(0, {NOISE_STD}), {name} ({decoder.method})", **row})
        print(f"done: {rows[-1]['method']}", file=sys.stderr)
    rows.append(
        {"method": "no learning: watershed of smoothed raw", **raw_floor(settings.evaluate.sweep_criterion, val, test)}
    )
    print("| method | chosen on val | val ARAND | test VOI split | test VOI merge | test ARAND |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        chosen = ", ".join(f"{k} {v:g}" for k, v in r["chosen"].items())
        scored = f"{r['voi_split']:.3f} | {r['voi_merge']:.3f} | {r['arand']:.4f}"
        print(f"| {r['method']} | {chosen} | {r['val_arand']:.4f} | {scored} |")
    print(json.dumps({"name": "gala_baselines", "rows": rows, "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
