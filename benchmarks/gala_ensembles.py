"""Ensembles of finished runs: would averaging the predictions of models trained in parallel help?

For every ``--size`` subset of the ``--workdir`` runs of ``benchmarks/gala_recipe.py`` (same
datasets and offsets; e.g. the recipe's seeds), the stored affinities of the validation and
test datasets are averaged (as ``ensembles:`` averages its models' probabilities; here
after the stored uint8 rounding, less than one step apart), each graph decoder's threshold
is chosen on the validation curve (exact best, ties to the higher, as the sweep) over its
default sweep grid, the decoder by the lowest validation ARAND, and the test dataset scored
there. Two runs trained side by side on a 2-core machine are what its 20-minute budget
trains, so pairs are the CPU question.

Output: one JSON line per subset (runs, chosen decoder, threshold, validation and test ARAND,
the test's own best per decoder as a diagnostic), then a summary line
``{"name": "gala_ensembles", "subsets": ..., "test_mean": ..., "test_median": ...,
"test_at_most_0.08": ...}``.
Run: ``.venv/bin/python benchmarks/gala_ensembles.py --workdir RUN1 --workdir RUN2 ... [--size 2]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from gala_run import GOAL, FinishedRun

from pipeline_lib.decoding.sweep import segmentations
from pipeline_lib.evaluation import evaluate_arrays


def averaged(runs: list[FinishedRun], role: str) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """The runs' mean affinities of their ``role`` (``val`` or ``test``) dataset, the offsets,
    its labels and image; the runs must name the same dataset and store the same offsets and shape."""
    names = {getattr(run, role) for run in runs}
    scored = [run.scored(getattr(run, role)) for run in runs]
    if len(names) > 1 or any(s[1] != scored[0][1] or s[0].shape != scored[0][0].shape for s in scored):
        raise SystemExit(f"the runs' {role} predictions differ in dataset, offsets or shape: {sorted(names)}")
    affinities = np.mean([s[0] for s in scored], axis=0, dtype=np.float32)
    return affinities, scored[0][1], scored[0][2], scored[0][3]


def ensemble_row(runs: list[FinishedRun]) -> dict[str, Any]:
    """Decoder and threshold chosen on the averaged validation prediction; test ARAND there."""
    settings = runs[0].settings
    val, test = averaged(runs, "val"), averaged(runs, "test")
    per_decoder = {}
    for name, decoder in settings.decoders.items():
        if decoder.method not in ("waterz", "mutex_watershed"):
            continue
        grid = settings.evaluate.sweep_thresholds[decoder.method]
        curves = []
        for affinities, offsets, labels, image in (val, test):
            pairs = segmentations(affinities, offsets, decoder, grid, image)
            curves.append({t: evaluate_arrays(seg, labels).arand for t, seg in pairs})
        on_val, on_test = curves
        t = min(sorted(on_val, reverse=True), key=on_val.__getitem__)  # exact best, ties to the higher
        per_decoder[name] = {"threshold": t, "val_arand": on_val[t], "test_arand": on_test[t]}
        per_decoder[name]["test_best_arand"] = min(on_test.values())
    chosen = min(per_decoder, key=lambda name: per_decoder[name]["val_arand"])
    return {"runs": [str(r.workdir) for r in runs], "chosen": chosen, **per_decoder[chosen], "decoders": per_decoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, action="append", required=True)
    parser.add_argument("--size", type=int, default=2, help="models per ensemble")
    args = parser.parse_args()
    runs = [FinishedRun.load(w) for w in args.workdir]
    scores = []
    for subset in itertools.combinations(runs, args.size):
        row = ensemble_row(list(subset))
        scores.append(row["test_arand"])
        print(json.dumps(row), flush=True)
    summary = {
        "name": "gala_ensembles",
        "size": args.size,
        "subsets": len(scores),
        "test_mean": round(float(np.mean(scores)), 4),
        "test_median": round(float(np.median(scores)), 4),
        f"test_at_most_{GOAL}": sum(a <= GOAL for a in scores),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
