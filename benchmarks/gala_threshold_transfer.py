"""How well does a threshold chosen on validation data transfer? Three checks on finished runs.

For each ``--workdir`` of ``benchmarks/gala_recipe.py`` (its model's stored predictions, its
validation sweep tables and its volumes), and each rule that picks a threshold from a
validation curve (``--tolerance T``: within the fraction T of the lowest score; ``--margin M``:
within M ARAND of it; the highest such threshold is taken, see
:func:`pipeline_lib.decoding.sweep.choose`):

1. **validation → test**: each decoder's threshold re-chosen from the stored validation sweep
   table with that rule, the decoder chosen by its lowest validation score, and the test
   dataset decoded (whole volume, in memory) and scored there. A diagnostic on test data:
   nothing here may be used to choose a setting.
2. **half → half of the validation dataset** (training data only): waterz's threshold chosen
   on one half of the validation volume (split along y) and scored on the other, both ways.
   A rule that helps here is supported by training data; one that helps only in (1) is not.
3. **perturbed validation → test** (``--perturbed N``; training data only): the validation
   image is perturbed ``N`` times by the model's own intensity augmentations (gamma,
   contrast, brightness, noise, each applied), predicted with the run's checkpoint, and
   waterz's threshold chosen on the mean ARAND curve, then scored on the stored test
   prediction. Does validation under the variability the recipe declares pick a threshold
   that holds on other tissue?

Output: one JSON line per run, then a summary line
``{"name": "gala_threshold_transfer", "runs": ..., "rules": {RULE: {"test_mean": ..., "halves_mean": ...,
"test_at_most_0.08": ...}}}``.
Run: ``.venv/bin/python benchmarks/gala_threshold_transfer.py --workdir RUN [--workdir RUN2 ...]
[--tolerance 0.2] [--margin 0.01] [--perturbed 4]`` (default rules: tolerance 0 and 0.2).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gala_run import GOAL, THRESHOLDS, FinishedRun, Scored

from pipeline_lib import paths
from pipeline_lib.config import DecoderSettings
from pipeline_lib.decoding.sweep import choose, segmentations
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.inference.predict import predict_array
from pipeline_lib.inference.predictor import load_model
from pipeline_lib.io.volumes import normalize_image, open_array
from pipeline_lib.training.augment import build_augment

INTENSITY = ("gamma", "contrast", "brightness", "noise")


def arand_at(scored: Scored, decoder: DecoderSettings, t: float) -> float:
    affinities, offsets, labels, image = scored
    ((_, segmentation),) = segmentations(affinities, offsets, decoder, [t], image)
    return evaluate_arrays(segmentation, labels).arand


@dataclasses.dataclass(frozen=True)
class Rule:
    """Which thresholds of a validation curve count as tied with its lowest score (the highest
    of them is taken): within the fraction ``tolerance`` of it, plus ``margin`` ARAND."""

    tolerance: float = 0.0
    margin: float = 0.0

    @property
    def name(self) -> str:
        return f"margin {self.margin:g}" if self.margin else f"tolerance {self.tolerance:g}"

    def choose(self, table: Sequence[dict[str, float]]) -> float:
        return choose(table, "arand", self.tolerance, self.margin)["threshold"]


def validation_tables(run: FinishedRun, decoders: dict[str, DecoderSettings]) -> dict[str, list]:
    """Each decoder's stored validation sweep table: one row (threshold, scores) per threshold."""
    tables = {}
    for name in decoders:
        with open(run.workdir / paths.sweep(run.model, name, run.val, "csv")) as f:
            tables[name] = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return tables


def validation_to_test(
    tables: dict[str, list], test: Scored, decoders: dict[str, DecoderSettings], rules: Sequence[Rule]
) -> dict[Rule, dict[str, Any]]:
    """Per rule: thresholds re-chosen from the validation sweep tables, the decoder with the
    lowest validation score, and its test ARAND at its threshold. Each decoder decodes the test
    volume once, at every threshold some rule chose (waterz cuts one merge history)."""
    chosen = min(tables, key=lambda name: min(r["arand"] for r in tables[name]))
    thresholds = {rule: rule.choose(tables[chosen]) for rule in rules}
    affinities, offsets, labels, image = test
    pairs = segmentations(affinities, offsets, decoders[chosen], sorted(set(thresholds.values())), image)
    test_arand = {t: evaluate_arrays(segmentation, labels).arand for t, segmentation in pairs}
    return {rule: {"decoder": chosen, "threshold": t, "test_arand": test_arand[t]} for rule, t in thresholds.items()}


def half_to_half(run: FinishedRun, decoder: DecoderSettings, rules: Sequence[Rule]) -> dict[Rule, list[float]]:
    """Per rule: ARAND on each half of the validation volume at the threshold chosen on the other."""
    affinities, offsets, labels, image = run.scored(run.val)
    middle = labels.shape[1] // 2
    halves = [np.s_[:, :middle], np.s_[:, middle:]]
    scores = []
    for half in halves:
        pairs = segmentations(affinities[(slice(None), *half)], offsets, decoder, THRESHOLDS, image[half])
        scores.append({t: evaluate_arrays(seg, labels[half]).arand for t, seg in pairs})
    out: dict[Rule, list[float]] = {}
    for rule in rules:
        out[rule] = []
        for chosen_on, scored_on in ((0, 1), (1, 0)):
            table = [{"threshold": t, "arand": a} for t, a in scores[chosen_on].items()]
            out[rule].append(scores[scored_on][rule.choose(table)])
    return out


def perturbed_to_test(run: FinishedRun, test: Scored, decoder: DecoderSettings, draws: int) -> dict[str, Any]:
    """Waterz's threshold chosen (as the sweep chooses, ties to the higher) on the mean ARAND
    curve of ``draws`` intensity-perturbed predictions of the validation image; its ARAND on
    the stored test prediction."""
    settings, model_settings = run.settings, run.settings.models[run.model]
    augment = model_settings.augment
    switched = {
        name: dataclasses.replace(getattr(augment, name), p=1.0 if name in INTENSITY else 0.0)
        for name in (f.name for f in dataclasses.fields(augment))
        if hasattr(getattr(augment, name), "p")
    }
    pipeline = build_augment(dataclasses.replace(augment, **switched), model_settings.patch_shape)
    pipeline.set_random_state(seed=0)
    network = load_model(run.workdir / paths.checkpoint(run.model))
    volume = run.workdir / paths.volume(run.val)
    image = normalize_image(np.asarray(open_array(volume, "image")[...]))
    labels = np.asarray(open_array(volume, "labels")[...])
    curves = []
    for _ in range(draws):
        perturbed = np.asarray(pipeline({"image": image[None].copy()})["image"])[0].astype(np.float32)
        affinities = predict_array(network, perturbed, model_settings, settings.predict)
        pairs = segmentations(affinities, model_settings.offsets, decoder, THRESHOLDS, perturbed)
        curves.append({t: evaluate_arrays(seg, labels).arand for t, seg in pairs})
    mean = {t: float(np.mean([curve[t] for curve in curves])) for t in THRESHOLDS}
    threshold = choose([{"threshold": t, "arand": a} for t, a in mean.items()], "arand")["threshold"]
    return {
        "threshold": threshold,
        "val_mean_arand": round(mean[threshold], 4),
        "test_arand": arand_at(test, decoder, threshold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, action="append", required=True)
    parser.add_argument("--tolerance", type=float, action="append", help="default: 0 and 0.2")
    parser.add_argument("--margin", type=float, action="append", default=[], help="absolute, in ARAND")
    parser.add_argument("--perturbed", type=int, default=0, metavar="N", help="check 3 with N draws (default: off)")
    args = parser.parse_args()
    rules = [Rule(tolerance=t) for t in args.tolerance or [0.0, 0.2]] + [Rule(margin=m) for m in args.margin]
    rules = list(dict.fromkeys(rules))  # margin 0 is tolerance 0: one rule, counted once
    test_scores: dict[Rule, list[float]] = {rule: [] for rule in rules}
    half_scores: dict[Rule, list[float]] = {rule: [] for rule in rules}
    for workdir in args.workdir:
        run = FinishedRun.load(workdir)
        test = run.scored(run.test)  # read once, scored by every check
        decoders = run.settings.decoders
        graph = {name: d for name, d in decoders.items() if d.method in ("waterz", "mutex_watershed")}
        line: dict[str, Any] = {"workdir": str(workdir)}
        waterz = next(d for d in decoders.values() if d.method == "waterz")
        halves = half_to_half(run, waterz, rules)
        results = validation_to_test(validation_tables(run, graph), test, graph, rules)
        for rule, result in results.items():
            test_scores[rule].append(result["test_arand"])
            half_scores[rule] += halves[rule]
            line[rule.name] = {**result, "halves_arand": [round(a, 4) for a in halves[rule]]}
        if args.perturbed:
            line["perturbed"] = perturbed_to_test(run, test, waterz, args.perturbed)
        print(json.dumps(line), flush=True)
    summary = {
        rule.name: {
            "test_mean": round(float(np.mean(test_scores[rule])), 4),
            "halves_mean": round(float(np.mean(half_scores[rule])), 4),
            f"test_at_most_{GOAL}": sum(a <= GOAL for a in test_scores[rule]),
        }
        for rule in rules
    }
    print(json.dumps({"name": "gala_threshold_transfer", "runs": len(args.workdir), "rules": summary}))


if __name__ == "__main__":
    main()
