"""Kill a real run (SIGKILL to Snakemake and its jobs) and recover as docs/reliability.md says.

The documented recovery: run the same command again (the workflow's default profile sets
``rerun-incomplete``); if Snakemake reports its lock, ``snakemake --unlock`` first. The
recovered affinities and segmentation must equal an uninterrupted run's bit for bit. A few
data faults also run end to end here, to show what the terminal says.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from tests.conftest import TINY_DATASETS, snakemake_command, tiny_config, write_yaml

pytestmark = pytest.mark.slow

SEGMENTATION = "results/segmentations/tiny/cc/tiny_test.zarr"
AFFINITIES = "results/predictions/tiny/tiny_test.zarr"
# The damaged file's job reruns only on its timestamp, not because this checkout's code changed
# since the fixture ran it.
ONLY_MTIME = ("--rerun-triggers", "mtime")


def _command(workdir: Path, *args: str) -> list[str]:
    return snakemake_command(workdir, "--cores", "2", *args)


def _run(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(_command(workdir, *args), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Assembled volumes and a trained model: what each kill test starts from."""
    workdir = tmp_path_factory.mktemp("trained")
    datasets = write_yaml(workdir / "datasets.yaml", TINY_DATASETS)
    config = tiny_config(datasets, max_steps=10)
    config["decoders"]["cc"]["tune_threshold"] = False  # type: ignore[index]
    config["models"]["tiny"]["resume_every_n_steps"] = 1  # type: ignore[index]  # a resume state to kill after
    write_yaml(workdir / "config.yaml", config)
    _run(workdir, "results/models/tiny/best.ckpt", "results/volumes/tiny_test.zarr")
    return workdir


def _copy(trained: Path, to: Path) -> Path:
    shutil.copytree(trained, to, symlinks=True)
    shutil.rmtree(to / ".snakemake" / "locks", ignore_errors=True)
    return to


@pytest.fixture(scope="module")
def reference(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = _copy(trained, tmp_path_factory.mktemp("reference") / "run")
    _run(workdir, SEGMENTATION)
    return workdir


def _array(workdir: Path, store: str, name: str) -> np.ndarray:
    return np.asarray(zarr.open_array(str(workdir / store / name / "s0"), mode="r")[...])


@pytest.mark.parametrize(
    "started",
    [
        "logs/predict_block/tiny/tiny_test/1.log",
        "logs/decode_block/tiny/cc/tiny_test/1.log",
        "logs/decode_stitch/tiny/cc/tiny_test.log",
    ],
    ids=["predict", "decode", "stitch"],
)
def test_the_same_command_recovers_a_killed_run_bit_exactly(
    trained: Path, reference: Path, tmp_path: Path, started: str
) -> None:
    workdir = _copy(trained, tmp_path / "run")
    process = subprocess.Popen(
        _command(workdir, SEGMENTATION), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not (workdir / started).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and every job it started
    process.wait()
    assert not (workdir / SEGMENTATION).exists(), "the run finished before the kill"

    result = _run(workdir, SEGMENTATION, check=False)  # the documented recovery: the same command ...
    if result.returncode != 0:  # ... after `snakemake --unlock` when the kill left the lock
        assert "cannot be locked" in result.stderr + result.stdout, result.stderr[-3000:]
        _run(workdir, "--unlock")
        _run(workdir, SEGMENTATION)
    for store, name in ((AFFINITIES, "affinities"), (SEGMENTATION, "segmentation")):
        np.testing.assert_array_equal(_array(workdir, store, name), _array(reference, store, name))
    assert not list((workdir / "results").rglob("*.partial"))


def test_the_same_command_recovers_a_killed_training_to_the_same_weights(trained: Path, tmp_path: Path) -> None:
    """SIGKILL while training, after its first resume state: the same command resumes from it and
    ends with the uninterrupted run's weights, bit for bit (CPU)."""
    workdir = _copy(trained, tmp_path / "run")
    shutil.rmtree(workdir / "results/models")
    checkpoint = "results/models/tiny/best.ckpt"
    process = subprocess.Popen(
        _command(workdir, checkpoint), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while (
        not list((workdir / "results/models").glob("tiny/checkpoints/*/last.ckpt"))
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (workdir / checkpoint).exists(), "training finished before the kill"

    result = _run(workdir, checkpoint, check=False)
    if result.returncode != 0:
        assert "cannot be locked" in result.stderr + result.stdout, result.stderr[-3000:]
        _run(workdir, "--unlock")
        _run(workdir, checkpoint)
    assert "resuming from" in (workdir / "logs/train/tiny.log").read_text()
    resumed = torch.load(workdir / checkpoint, map_location="cpu", weights_only=False)
    uninterrupted = torch.load(trained / checkpoint, map_location="cpu", weights_only=False)
    assert resumed["global_step"] == uninterrupted["global_step"]
    assert resumed["state_dict"].keys() == uninterrupted["state_dict"].keys()
    for name, weights in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], weights), name


def _one_line_failure(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode != 0
    terminal = result.stdout + result.stderr
    assert "Traceback" not in terminal, terminal[-3000:]
    lines = [line for line in terminal.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, terminal[-3000:]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_a_damaged_chunk_of_an_assembled_volume_stops_prediction(trained: Path, tmp_path: Path) -> None:
    workdir = _copy(trained, tmp_path / "run")
    chunk = workdir / "results/volumes/tiny_test.zarr/image/s0/c/1/1/0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 8] = b"\xff" * 8
    chunk.write_bytes(bytes(raw))
    result = _run(workdir, AFFINITIES, *ONLY_MTIME, check=False)
    _one_line_failure(result, "tiny_test.zarr", "'image'", "c/1/1/0", "damaged")
    assert not (workdir / AFFINITIES).exists()


def test_a_deleted_chunk_of_an_assembled_volume_stops_prediction(trained: Path, tmp_path: Path) -> None:
    workdir = _copy(trained, tmp_path / "run")
    (workdir / "results/volumes/tiny_test.zarr/image/s0/c/0/0/1").unlink()
    result = _run(workdir, AFFINITIES, *ONLY_MTIME, check=False)
    _one_line_failure(result, "tiny_test.zarr", "'image'", "c/0/0/1", "missing")
    assert not (workdir / AFFINITIES).exists()


def test_a_truncated_checkpoint_names_the_retraining_command(trained: Path, tmp_path: Path) -> None:
    workdir = _copy(trained, tmp_path / "run")
    checkpoint = workdir / "results/models/tiny/best.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:4096])
    result = _run(workdir, AFFINITIES, *ONLY_MTIME, check=False)
    line = _one_line_failure(result, "best.ckpt", "unreadable checkpoint", "rm -r")
    shutil.rmtree(workdir / line.split("rm -r ")[1].split(" and ")[0])  # follow the advice (run where snakemake runs)
    _run(workdir, AFFINITIES)
    assert (workdir / AFFINITIES).exists()


def test_all_zero_labels_fail_in_assembly_naming_the_dataset(tmp_path: Path) -> None:
    datasets = {"datasets": dict(TINY_DATASETS["datasets"])}  # type: ignore[call-overload]
    np.save(tmp_path / "image.npy", np.random.default_rng(0).random((24, 64, 64), dtype=np.float32))
    np.save(tmp_path / "labels.npy", np.zeros((24, 64, 64), np.uint32))
    datasets["datasets"]["tiny_test"] = {
        "image": {"format": "npy", "path": "image.npy"},
        "labels": {"format": "npy", "path": "labels.npy"},
        "voxel_size": [8, 8, 8],
        "roles": ["test"],
    }
    write_yaml(tmp_path / "config.yaml", tiny_config(write_yaml(tmp_path / "datasets.yaml", datasets)))
    result = _run(tmp_path, "results/volumes/tiny_test.zarr", check=False)
    _one_line_failure(result, "'tiny_test' labels", "labels.npy", "all 0")
    assert not (tmp_path / "results/volumes/tiny_test.zarr").exists()
    assert "Traceback" in (tmp_path / "logs/assemble/tiny_test.log").read_text()


def test_a_duplicate_key_in_the_config_file_fails_a_dry_run(tiny_run: tuple[Path, dict[str, object]]) -> None:
    workdir, config = tiny_run
    write_yaml(workdir / "config.yaml", config)
    text = (workdir / "config.yaml").read_text()
    (workdir / "config.yaml").write_text(text + "datasets: [tiny_train]\n")
    result = _run(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "config.yaml: line" in result.stderr and "'datasets' is written twice" in result.stderr


@pytest.mark.parametrize(
    ("fault", "names"),
    [
        ("missing source", ("dataset 'tiny_test' image", "image.npy", "not found")),
        ("float labels", ("dataset 'tiny_test' labels", "labels.npy", "float32")),
        ("unknown architecture", ("models.tiny", "unett")),
    ],
)
def test_start_up_faults_fail_a_dry_run_with_one_line(tmp_path: Path, fault: str, names: tuple[str, ...]) -> None:
    datasets = {"datasets": dict(TINY_DATASETS["datasets"])}  # type: ignore[call-overload]
    np.save(tmp_path / "image.npy", np.zeros((24, 64, 64), np.uint8))
    np.save(tmp_path / "labels.npy", np.ones((24, 64, 64), np.float32 if fault == "float labels" else np.uint32))
    if fault == "missing source":
        (tmp_path / "image.npy").unlink()
    datasets["datasets"]["tiny_test"] = {
        "image": {"format": "npy", "path": "image.npy"},
        "labels": {"format": "npy", "path": "labels.npy"},
        "voxel_size": [8, 8, 8],
        "roles": ["test"],
    }
    config = tiny_config(write_yaml(tmp_path / "datasets.yaml", datasets))
    if fault == "unknown architecture":
        config["models"]["tiny"]["architecture"] = "unett"  # type: ignore[index]
    write_yaml(tmp_path / "config.yaml", config)
    result = _run(tmp_path, "-n", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Configuration error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    for name in names:
        assert name in lines[0], lines[0]
    assert not (tmp_path / "results").exists()
