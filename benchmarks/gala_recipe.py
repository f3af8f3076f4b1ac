"""One row of the gala ablation table (docs/results/gala.md) for one training recipe.

Runs the whole workflow on the gala crops for ``config/gala.yaml`` (or ``--config``; any config
with one validation and one test dataset works, e.g. the demo's) with
some settings changed (``--set models.gala.boundary_weight=1``, values in YAML), in its own
working folder, and prints per decoder: the threshold chosen by the sweep on the validation
dataset, validation ARAND, and test VOI split / merge / ARAND (the test crop is only scored;
nothing is chosen on it), and which decoder has the lowest validation ARAND over its grid. As a diagnostic it
also prints each decoder's best test ARAND over its threshold grid (what a perfectly chosen
threshold would give: the gap to the validation-chosen one is what threshold transfer costs).
Training time is the wall time of the train rule (assembly included, a few seconds) and the
steps it reached.

The run is the user's own command (``snakemake --configfile ...``) in ``--workdir``, so a
rerun of one row with other decoder settings reuses its trained model and predictions.
Output: a markdown table, then as the last stdout line one JSON object
``{"name": "gala_recipe", "row": ..., "train_seconds": ..., "steps": ..., "decoders": {...}}``.

Run: ``.venv/bin/python benchmarks/gala_recipe.py --row recipe --workdir /tmp/gala-recipe``; the GPU
recipe: ``... --config config/gala.yaml --config config/gala_gpu.yaml --cores 16``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from snakemake.utils import update_config

from pipeline_lib import paths
from pipeline_lib.config import load_config
from pipeline_lib.decoding.sweep import segmentations
from pipeline_lib.evaluation import evaluate_arrays
from pipeline_lib.io.affinities import affinity_offsets, as_float
from pipeline_lib.io.volumes import AFFINITIES, open_array

REPO = Path(__file__).resolve().parents[1]


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """``config[a][b][c] = value`` for ``dotted = "a.b.c"``; missing levels are created."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def build_config(config_files: list[Path], overrides: list[str]) -> dict[str, Any]:
    """The configuration files merged as Snakemake merges them (later files win, key by key),
    ``key=value`` overrides applied, the datasets file made absolute."""
    config: dict[str, Any] = {}
    for path in config_files:
        update_config(config, yaml.safe_load(path.read_text()))
    config["datasets_file"] = str((REPO / config["datasets_file"]).resolve())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--set expects key=value, got {item!r}")
        set_key(config, key, yaml.safe_load(value))
    return config


def snakemake(workdir: Path, cores: int, *targets: str) -> float:
    """Run the workflow in ``workdir`` (its log in ``workdir/snakemake.log``); seconds taken."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", str(cores), *targets]  # fmt: skip
    start = time.perf_counter()
    with open(workdir / "snakemake.log", "a") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"the workflow failed; see {workdir / 'snakemake.log'}")
    return time.perf_counter() - start


def last_step(metrics_csv: Path) -> int:
    with open(metrics_csv) as f:
        return max(int(row["step"]) for row in csv.DictReader(f))


def decoder_row(workdir: Path, model: str, decoder: str, val: str, test_set: str) -> dict[str, Any]:
    """Sweep choice on validation and test scores of one decoder."""
    sweep = json.loads((workdir / paths.sweep(model, decoder, val, "json")).read_text())
    test = json.loads((workdir / paths.evaluation(model, decoder, test_set)).read_text())
    return {
        "threshold": sweep["threshold"],
        "val_arand": round(sweep["arand"], 4),
        "val_lowest": sweep["lowest"],  # unrounded: the decoder is chosen on it, as gala_threshold_transfer does
        "test_voi_split": round(test["voi_split"], 3),
        "test_voi_merge": round(test["voi_merge"], 3),
        "test_arand": round(test["arand"], 4),
    }


def test_optimum(workdir: Path, model: str, config: dict[str, Any], test_set: str) -> dict[str, tuple[float, float]]:
    """A diagnostic, never used to choose anything: per decoder, the threshold of its grid that
    would score best on the test crop, and that score (ARAND), to tell prediction quality
    from what the validation-chosen threshold loses."""
    settings = load_config(config, check_files=False)
    store = workdir / paths.prediction(model, test_set)
    affinities = as_float(np.asarray(open_array(store, AFFINITIES)[...]))
    labels = np.asarray(open_array(workdir / paths.volume(test_set), "labels")[...])
    image = np.asarray(open_array(workdir / paths.volume(test_set), "image")[...])
    best = {}
    for name, decoder in settings.decoders.items():
        grid = settings.evaluate.sweep_thresholds[decoder.method]
        scored = [
            (evaluate_arrays(seg, labels).arand, t)
            for t, seg in segmentations(affinities, affinity_offsets(store), decoder, grid, image)
        ]
        arand, threshold = min(scored)
        best[name] = (threshold, round(arand, 4))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", required=True, help="the row's name in the table")
    parser.add_argument("--config", type=Path, action="append", help="config files in order (default config/gala.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", type=Path, required=True, help="the run's own folder (results/ inside)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    config = build_config(args.config or [REPO / "config" / "gala.yaml"], args.overrides)
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (model,) = config["models"]
    declared = yaml.safe_load(Path(config["datasets_file"]).read_text())["datasets"]
    (val,) = [d for d in config["datasets"] if "val" in declared[d]["roles"]]
    (test_set,) = [d for d in config["datasets"] if "test" in declared[d]["roles"]]

    timing = args.workdir / "train_seconds.txt"  # kept, so that a rerun reusing the model reports it
    if not (args.workdir / paths.checkpoint(model)).exists():
        timing.write_text(str(round(snakemake(args.workdir, args.cores, paths.checkpoint(model)))))
    train_seconds = float(timing.read_text())
    snakemake(args.workdir, args.cores)
    steps = last_step(args.workdir / paths.model_file(model, "metrics.csv"))
    decoders = {name: decoder_row(args.workdir, model, name, val, test_set) for name in config["decoders"]}
    for name, (threshold, arand) in test_optimum(args.workdir, model, config, test_set).items():
        decoders[name].update(test_best_threshold=threshold, test_best_arand=arand)

    print("| row | decoder | threshold (val) | val ARAND | test VOI split | test VOI merge | test ARAND "
          "| test's own best (diagnostic) | training |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in decoders.items():
        scores = f"{r['val_arand']:.4f} | {r['test_voi_split']:.3f} | {r['test_voi_merge']:.3f} | {r['test_arand']:.4f}"
        oracle = f"{r['test_best_arand']:.4f} at {r['test_best_threshold']}"
        training = f"{steps} steps, {train_seconds / 60:.1f} min"
        print(f"| {args.row} | {name} | {r['threshold']} | {scores} | {oracle} | {training} |")
    # The decoder, too, is chosen on validation: by its best score over the grid (with a sweep
    # tolerance the threshold it uses may score a little worse there, by design).
    chosen = min(decoders, key=lambda name: decoders[name]["val_lowest"])
    print(f"decoder chosen on validation: {chosen}, test ARAND {decoders[chosen]['test_arand']:.4f}")
    summary = {"name": "gala_recipe", "row": args.row, "overrides": args.overrides,
               "train_seconds": round(train_seconds), "steps": steps, "chosen": chosen,
               "decoders": decoders}  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
