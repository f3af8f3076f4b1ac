"""Image evidence on finished runs: does mixing the image into the predictions help, chosen on validation?

For each ``--workdir`` of ``benchmarks/gala_recipe.py`` (its stored validation and test
predictions and volumes, no retraining), each graph decoder of the run's config that has no
image weight of its own (waterz, mutex watershed) decodes with ``image_weight`` w for every
``--weight`` (:mod:`pipeline_lib.decoding.image_evidence`; its ``image_sigma`` default) over
its sweep grid. Per (decoder, w) the threshold is the exact best on validation (ties to the
higher, as the sweep), and the (decoder, w) with the lowest validation ARAND is chosen (ties to
the smaller w); the test dataset is scored there. ``plain`` is the same choice among w = 0
(the predictions alone). The test's own best per row is a diagnostic, never used to choose.

Output: one JSON line per run, then a summary line ``{"name": "gala_image_evidence", "runs":
..., "test_mean": ..., "plain_test_mean": ..., "test_at_most_0.08": ..., "plain_at_most_0.08": ...}``.
Run: ``.venv/bin/python benchmarks/gala_image_evidence.py --workdir RUN [--workdir RUN2 ...]
[--weight 0 0.25 0.5 0.75]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from gala_run import GOAL, FinishedRun

from pipeline_lib.decoding.image_evidence import image_weight
from pipeline_lib.decoding.sweep import segmentations
from pipeline_lib.evaluation import evaluate_arrays


def run_rows(run: FinishedRun, weights: list[float]) -> list[dict[str, Any]]:
    """One row per (decoder, weight): threshold chosen on validation, validation and test ARAND."""
    data = {role: run.scored(getattr(run, role)) for role in ("val", "test")}
    rows = []
    for name, decoder in run.settings.decoders.items():
        if decoder.method not in ("waterz", "mutex_watershed") or image_weight(decoder):
            continue
        grid = run.settings.evaluate.sweep_thresholds[decoder.method]
        for weight in weights:
            mixing = dataclasses.replace(decoder, params={**decoder.params, "image_weight": weight})
            curves = {}
            for role, (affinities, offsets, labels, image) in data.items():
                pairs = segmentations(affinities, offsets, mixing, grid, image)
                curves[role] = {t: evaluate_arrays(seg, labels).arand for t, seg in pairs}
            val, test = curves["val"], curves["test"]
            t = min(sorted(val, reverse=True), key=val.__getitem__)  # exact best, ties to the higher
            rows.append({"decoder": name, "weight": weight, "threshold": t, "val_arand": val[t]})
            rows[-1] |= {"test_arand": test[t], "test_best_arand": min(test.values())}
    return rows


def chosen(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of the lowest validation ARAND (ties to the smaller weight)."""
    return min(rows, key=lambda r: (r["val_arand"], r["weight"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, action="append", required=True)
    parser.add_argument("--weight", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    args = parser.parse_args()
    weights = sorted(set(args.weight) | {0.0})
    ours, plain = [], []
    for workdir in args.workdir:
        rows = run_rows(FinishedRun.load(workdir), weights)
        best, best_plain = chosen(rows), chosen([r for r in rows if r["weight"] == 0])
        ours.append(best["test_arand"])
        plain.append(best_plain["test_arand"])
        print(json.dumps({"workdir": str(workdir), "chosen": best, "plain": best_plain, "rows": rows}), flush=True)
    summary = {
        "name": "gala_image_evidence",
        "runs": len(ours),
        "weights": weights,
        "test_mean": round(float(np.mean(ours)), 4),
        "plain_test_mean": round(float(np.mean(plain)), 4),
        f"test_at_most_{GOAL}": sum(a <= GOAL for a in ours),
        f"plain_at_most_{GOAL}": sum(a <= GOAL for a in plain),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
