"""The reduced demo through the shipped profile, `snakemake --cores 8 --profile slurm`, on a real
single-node SLURM cluster brought up by tests/slurm/local_slurm.sh (with accounting, and one
fake GPU so that GPU requests can be granted on a machine without GPUs).

Skipped with a reason where SLURM cannot run (not root, no apt-get, or LOCAL_SLURM=0).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.conftest import CHAIN_RULES, REPO, TINY_DATASETS, tiny_config, write_yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = REPO / "tests/slurm/local_slurm.sh"


def _why_no_slurm() -> str | None:
    if os.environ.get("LOCAL_SLURM", "1") == "0":
        return "LOCAL_SLURM=0"
    if os.geteuid() != 0:
        return "bringing up a local SLURM cluster needs root"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "no apt-get to install SLURM from Debian's packages"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _why_no_slurm()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "LOCAL_SLURM_FAKE_GPUS": "1"}
    subprocess.run([str(SCRIPT), "up"], check=True, env=env, timeout=900)
    yield
    subprocess.run([str(SCRIPT), "down"], check=False, timeout=300)


def config_for(workdir: Path) -> Path:
    datasets = write_yaml(workdir / "datasets.yaml", TINY_DATASETS)
    config = tiny_config(datasets, max_steps=20)
    # One thread everywhere: the SLURM run and the local run must compute the same numbers.
    config["resources"] = {
        rule: {"threads": 1, "mem_mb": 2000, "runtime": 30}
        for rule in ("assemble", "train", "predict", "decode", "evaluate", "report")
    }
    for rule in ("train", "predict"):
        config["resources"][rule]["gpus"] = 1  # type: ignore[index]
    return write_yaml(workdir / "config.yaml", config)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Snakemake as a user types it, from the repository root (where the profile is found)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        "--directory",
        str(workdir),
        f"--configfile={workdir / 'config.yaml'}",
    ]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def sacct(run_id: str) -> list[dict[str, str]]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "--name", run_id, "-o", "JobID,State,Comment,AllocTRES"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        dict(zip(("id", "state", "comment", "tres"), line.split("|"), strict=True)) for line in out.splitlines() if line
    ]


def run_id_of(output: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("SLURM run ID:"))


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    config_for(workdir)
    result = snakemake(workdir, "--cores", "8", "--profile", "slurm")
    return workdir, result.stdout + result.stderr


def test_profile_resolves_and_plans_from_the_repository_root(tmp_path):
    config_for(tmp_path)
    result = snakemake(tmp_path, "--cores", "8", "--profile", "slurm", "-n")
    assert "predict_block" in result.stdout


def test_every_job_ran_as_a_slurm_job_with_its_resources(slurm_run):
    workdir, output = slurm_run
    jobs = sacct(run_id_of(output))
    assert jobs and all(job["state"] == "COMPLETED" for job in jobs), jobs
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        rule = job["comment"].removeprefix("rule_").split("_wildcards_")[0]  # e.g. rule_assemble_wildcards_tiny_test
        by_rule.setdefault(rule, []).append(job)
    for rule in CHAIN_RULES:
        assert rule in by_rule, f"no SLURM job for rule {rule}: {sorted(by_rule)}"
    # GPU requests reach sbatch for train and predict blocks, and only for them.
    for rule in ("train", "predict_block"):
        assert all("gres/gpu=1" in job["tres"] for job in by_rule[rule]), by_rule[rule]
    for rule in ("assemble", "decode_block", "decode_relabel", "evaluate"):
        assert all("gres/gpu" not in job["tres"] for job in by_rule[rule]), by_rule[rule]
    # Each job's own log shows its SLURM job id.
    logs = list((workdir / "logs").rglob("*.log"))
    assert logs and all("running as SLURM job" in log.read_text() for log in logs), [
        str(log) for log in logs if "running as SLURM job" not in log.read_text()
    ]


def test_outputs_equal_a_local_run(slurm_run, tmp_path):
    workdir, _ = slurm_run
    config_for(tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "2",
            "--directory",
            str(tmp_path),
            f"--configfile={tmp_path / 'config.yaml'}",
            "results/segmentations/tiny/cc/tiny_test.zarr",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=900,
    )
    for path in (
        "predictions/tiny/tiny_test.zarr/affinities/s0",
        "segmentations/tiny/cc/tiny_test.zarr/segmentation/s0",
    ):
        ours = zarr.open_array(str(workdir / "results" / path), mode="r")[:]
        local = zarr.open_array(str(tmp_path / "results" / path), mode="r")[:]
        np.testing.assert_array_equal(ours, local, err_msg=path)


def test_a_failed_block_fails_the_run_with_its_log_and_a_rerun_redoes_only_it(slurm_run):
    workdir, _ = slurm_run
    target = "results/segmentations/tiny/cc/tiny_test.zarr"
    affinities = workdir / "results/predictions/tiny/tiny_test.zarr/affinities/s0"
    chunk = sorted(p for p in affinities.rglob("*") if p.is_file() and p.name != "zarr.json")[-1]
    original = chunk.read_bytes()
    chunk.write_bytes(b"not a zarr chunk")  # the block reading it must fail
    try:
        failed = snakemake(
            workdir,
            "--cores",
            "8",
            "--profile",
            "slurm",
            target,
            "--forcerun",
            "decode_prepare",
            "--retries",
            "0",
            check=False,
        )
    finally:
        chunk.write_bytes(original)
    assert failed.returncode != 0
    text = failed.stdout + failed.stderr
    assert "logs/decode_block/tiny/cc/tiny_test/" in text
    rerun = snakemake(workdir, "--cores", "8", "--profile", "slurm", target, "-n")
    plan = rerun.stdout
    assert (
        "decode_prepare" not in plan.split("Job stats")[-1].split("Reasons")[0]
    )  # the store and finished blocks are kept
    assert "decode_block" in plan
    snakemake(workdir, "--cores", "8", "--profile", "slurm", target)
    assert zarr.open_group(str(workdir / target), mode="r").attrs["complete"] is True
