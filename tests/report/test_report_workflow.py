"""Checks of a finished reduced demo run's report and provenance, for the end-to-end tests.

Call them from the module-scoped ``finished_run`` fixture's tests in
``tests/workflow/test_snakemake.py``::

    from tests.report.test_report_workflow import check_provenance, check_report

    def test_report_has_every_figure_and_table(finished_run):
        check_report(finished_run)

    def test_every_output_records_its_provenance(finished_run):
        check_provenance(finished_run)
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import matplotlib.image
import pandas as pd
import yaml

from pipeline_lib import __version__
from pipeline_lib.provenance import git_commit
from pipeline_lib.report import read_record
from pipeline_lib.workflow import Plan

REPO = Path(__file__).resolve().parents[2]
STAGES = {"volumes": "assemble", "predictions": "predict", "segmentations": "decode", "evaluations": "evaluate"}


def _plan(workdir: Path) -> Plan:
    return Plan.from_config(yaml.safe_load((workdir / "config.yaml").read_text()))


def _not_blank(png: bytes) -> None:
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    assert pixels.std() > 0.05, "blank figure"


def check_report(workdir: Path, snakefile: Path = REPO / "Snakefile") -> None:
    """``snakemake --report`` (zip and html) of the run in ``workdir`` (with its ``config.yaml``)
    works and holds, non-blank, every model's loss curve, a slice figure per model and test
    dataset, the evaluation table (every model/decoder/dataset) and plot, and the provenance page."""
    base = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
    ]
    for name in ("report.zip", "report.html"):
        result = subprocess.run([*base, "--report", str(workdir / name)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    plan = _plan(workdir)
    expected = [f"results/models/{m}/loss.png" for m in plan.settings.models] + plan.report_targets()
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        contents = {archive.read(n) for n in archive.namelist() if "/data/raw/" in n}
    for target in expected:
        data = (workdir / target).read_bytes()
        assert data in contents, f"{target} is not in the report (marked with report()?)"
        if target.endswith(".png"):
            _not_blank(data)
    runs = plan.evaluated_runs()
    if runs:
        table = pd.read_csv(workdir / "results/report/evaluation.csv")
        assert sorted(map(list, zip(table["model"], table["decoder"], table["dataset"], strict=True))) == sorted(runs)
        assert table[["voi_split", "voi_merge", "arand", "n_seg_objects", "n_gt_objects"]].notna().all().all()
    provenance_page = (workdir / "results/report/provenance.html").read_text()
    for output in plan.run_outputs():
        assert f"<h2 id='{output}'>" in provenance_page, output
    html = (workdir / "report.html").read_text()
    for category in ("Training", "Segmentations", "Evaluation", "Provenance"):
        assert category in html, category


def check_provenance(workdir: Path) -> None:
    """Every zarr and JSON output of the run records the right stage, this pipeline's version
    and commit, its settings and existing inputs (predictions also their checkpoints)."""
    plan = _plan(workdir)
    for output in plan.run_outputs():
        record = read_record(workdir / output)
        prov = record["provenance"]
        assert prov["stage"] == STAGES[output.split("/")[1]], output
        assert prov["pipeline_version"] == __version__
        assert prov["git_commit"] == git_commit()
        assert prov["settings"], output
        for path in prov["inputs"]:
            assert Path(path).exists(), f"{output}: input {path} missing"
        if prov["stage"] == "predict":
            assert any(Path(p).name.endswith(".ckpt") for p in prov["inputs"])
        if prov["stage"] == "assemble":
            assert record["attributes"]["dataset"] == Path(output).stem
