"""The results layout: the paths as documented in docs/conventions.md, usable as rule patterns."""

import re
from pathlib import Path

from pipeline_lib import paths

REPO = Path(__file__).resolve().parents[1]


def test_paths_of_names():
    assert paths.volume("demo_test") == "results/volumes/demo_test.zarr"
    assert paths.checkpoint("unet") == "results/models/unet/best.ckpt"
    assert paths.model_file("unet", "loss.png") == "results/models/unet/loss.png"
    assert paths.prediction("both", "gala_test") == "results/predictions/both/gala_test.zarr"
    assert paths.segmentation("unet", "ws", "t") == "results/segmentations/unet/ws/t.zarr"
    assert paths.evaluation("unet", "ws", "t") == "results/evaluations/unet/ws/t.json"
    assert paths.sweep("unet", "ws", "v", "csv") == "results/sweeps/unet/ws/v.csv"
    assert paths.slices_figure("unet", "t") == "results/report/slices/unet/t.png"
    assert paths.report_file("provenance.html") == "results/report/provenance.html"
    assert paths.block_job_marker(paths.prediction("m", "d"), "3") == "results/predictions/m/d.zarr.jobs/3.done"


def test_wildcards_give_rule_patterns():
    pattern = paths.segmentation("{model}", "{decoder}", "{dataset}")
    assert pattern == "results/segmentations/{model}/{decoder}/{dataset}.zarr"
    assert pattern.format(model="a", decoder="b", dataset="c") == paths.segmentation("a", "b", "c")


def test_documented_layout_matches():
    """Every results line of the layout in docs/conventions.md is what these functions give."""
    text = (REPO / "docs/conventions.md").read_text()
    layout = text[text.index("## Results layout") :]
    layout = layout[layout.index("```") + 3 : layout.index("```", layout.index("```") + 3)]
    documented = {line.split()[0] for line in layout.splitlines() if line.startswith("results/")}
    w = {"dataset": "{dataset}", "model": "{model}", "decoder": "{decoder}"}
    ours = {
        paths.volume(w["dataset"]),
        paths.checkpoint(w["model"]),
        paths.model_file(w["model"], "metrics.csv,"),
        paths.model_file(w["model"], "checkpoints/<hash>/last.ckpt"),
        paths.prediction(w["model"], w["dataset"]),
        paths.segmentation(w["model"], w["decoder"], w["dataset"]),
        paths.evaluation(w["model"], w["decoder"], w["dataset"]),
        re.sub(r"\.csv$", ".csv|png|json", paths.sweep(w["model"], w["decoder"], w["dataset"], "csv")),
        paths.report_file("..."),
    }
    assert documented == ours


def test_result_paths_are_spelled_only_in_paths_py():
    """Rules, scripts and the library take result paths from pipeline_lib.paths (or rules.<name>.output)."""
    literal = re.compile(r"""["']results/""")
    files = [*REPO.glob("workflow/**/*.smk"), *REPO.glob("workflow/**/*.py"), *REPO.glob("pipeline_lib/**/*.py")]
    files.append(REPO / "Snakefile")
    offending = [
        f"{f.relative_to(REPO)}:{i}"
        for f in files
        if f.name != "paths.py"
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offending == []
