"""End-to-end Snakemake runs of a reduced demo (tiny volumes, a few training steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline_lib.config.schema import load_schema
from tests.conftest import CHAIN_RULES, REPO, snakemake_command, write_yaml
from tests.report.test_report_workflow import check_provenance, check_report

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = snakemake_command(workdir, *args)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def planned_jobs(output: str) -> dict[str, int]:
    """Rule → job count from the 'Job stats' table of a dry run."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    jobs = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One full reduced demo run shared by the tests of this module."""
    from tests.conftest import TINY_DATASETS, tiny_config

    workdir = tmp_path_factory.mktemp("run")
    datasets = write_yaml(workdir / "datasets.yaml", TINY_DATASETS)
    write_yaml(workdir / "config.yaml", tiny_config(datasets, max_steps=20))
    snakemake(workdir, "--cores", "2")
    return workdir


def test_full_chain_writes_every_stage_output(finished_run):
    w = finished_run
    assert (w / "results/models/tiny/best.ckpt").stat().st_size > 0
    assert (w / "results/models/tiny/loss.png").stat().st_size > 0
    affinities = zarr.open_array(str(w / "results/predictions/tiny/tiny_test.zarr/affinities/s0"), mode="r")
    assert affinities.shape == (3, 24, 64, 64)
    assert affinities[:].max() > affinities[:].min()  # a real prediction, not a constant
    seg_store = w / "results/segmentations/tiny/cc/tiny_test.zarr"
    assert zarr.open_group(str(seg_store), mode="r").attrs["complete"] is True
    seg = zarr.open_array(str(seg_store / "segmentation/s0"), mode="r")[:]
    assert seg.max() > 0
    result = json.loads((w / "results/evaluations/tiny/cc/tiny_test.json").read_text())
    for key in ("voi_split", "voi_merge", "arand", "arand_precision", "arand_recall", "n_seg_objects", "n_gt_objects"):
        assert key in result
    assert 0.0 <= result["arand"] <= 1.0
    assert result["n_seg_objects"] == len(
        np.unique(seg[zarr.open_array(str(w / "results/volumes/tiny_test.zarr/labels/s0"))[:] > 0])
    )
    # scratch outputs of block jobs are gone, every rule has a log
    assert not list((w / "results").rglob("*.partial"))
    assert not list((w / "results").rglob("*.jobs"))
    for rule in CHAIN_RULES:
        assert list((w / "logs" / rule).rglob("*.log")), rule


def test_nothing_to_do_after_a_complete_run(finished_run):
    result = snakemake(finished_run, "-n", "--cores", "2")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_forcerun_decode_plans_only_decode_and_what_follows(finished_run):
    target = "results/evaluations/tiny/cc/tiny_test.json"
    result = snakemake(finished_run, "-n", "--cores", "2", target, "--forcerun", "decode")
    jobs = planned_jobs(result.stdout)
    assert jobs == {
        "decode_prepare": 1,
        "decode_block": 3,  # 3 × 2 × 2 blocks shared by decode.max_jobs = 3 jobs
        "decode_stitch": 1,
        "decode_relabel": 3,  # as many as decode_block
        "decode": 1,
        "evaluate": 1,
    }


def test_bad_config_fails_before_any_job_with_one_message(finished_run, tmp_path):
    from tests.conftest import TINY_DATASETS, tiny_config

    datasets = write_yaml(tmp_path / "datasets.yaml", TINY_DATASETS)
    config = tiny_config(datasets)
    config["models"]["tiny"]["learning_rat"] = 0.1  # type: ignore[index]
    write_yaml(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path, "--cores", "1", check=False)
    assert result.returncode != 0
    assert "learning_rat" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists()


def test_a_target_naming_no_model_gets_snakemakes_plain_message(finished_run):
    result = snakemake(finished_run, "-n", "--cores", "1", "results/predictions/nope/tiny_test.zarr", check=False)
    assert result.returncode != 0
    assert "No rule to produce results/predictions/nope/tiny_test.zarr" in result.stderr + result.stdout
    assert "KeyError" not in result.stderr + result.stdout


def test_lint_is_clean(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_report_has_every_figure_and_table(finished_run):
    check_report(finished_run)


def test_every_output_records_its_provenance(finished_run):
    check_provenance(finished_run)


def test_sweep_names_a_best_threshold(finished_run):
    best = json.loads((finished_run / "results/sweeps/tiny/cc/tiny_val.json").read_text())
    assert 0.0 < best["threshold"] < 1.0
    table = (finished_run / "results/sweeps/tiny/cc/tiny_val.csv").read_text().splitlines()
    schema = load_schema("config")["properties"]["evaluate"]["properties"]["sweep_thresholds"]
    grid = schema["properties"]["connected_components"]["default"]  # the method's default grid
    assert best["thresholds"] == grid and len(table) == 1 + len(grid)  # header + one row per threshold
    assert best["grid_edge"] in (None, "lowest", "highest") and (best["warning"] is None) == (best["grid_edge"] is None)
