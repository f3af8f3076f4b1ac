"""The Lightning trainer: schedules stepped, resume, NaN stop, validation checks, multi-task."""

import warnings

import lightning as L
import pandas as pd
import pytest
import torch

from pipeline_lib.config.settings import ScheduleSettings
from pipeline_lib.errors import ConfigError
from pipeline_lib.training.module import TrainingDiverged, lr_factor
from pipeline_lib.training.train import train_model
from tests.training.helpers import model_settings

warnings.filterwarnings("ignore", category=DeprecationWarning)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


class RecordLR(L.Callback):
    """Records (global step, lr) before every optimizer step."""

    def __init__(self) -> None:
        self.lrs: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


class Killed(RuntimeError):
    pass


class Kill(L.Callback):
    """Raises once global_step reaches ``step`` (a job killed mid-run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise Killed(f"killed at step {trainer.global_step}")


class PoisonWeights(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_lr_factor_warmup_cosine_step():
    cos = lr_factor(
        ScheduleSettings("cosine", warmup_steps=2, min_lr_ratio=0.1, step_size=1, gamma=0.5, patience=0), 12
    )
    assert [cos(0), cos(1), cos(2)] == pytest.approx([0.5, 1.0, 1.0])
    assert cos(7) == pytest.approx(0.55) and cos(12) == pytest.approx(0.1)
    step = lr_factor(ScheduleSettings("step", warmup_steps=0, min_lr_ratio=0, step_size=3, gamma=0.5, patience=0), 12)
    assert [step(i) for i in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_schedule_is_attached_and_stepped(stores, tmp_path):
    settings = model_settings(
        learning_rate=0.01,
        max_steps=10,
        optimizer={"name": "adamw"},
        lr_schedule={"name": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.0},
    )
    record = RecordLR()
    train_model(settings, [stores[0]], [], tmp_path, callbacks=[record])
    lrs = [lr for _, lr in record.lrs]
    expected = [0.01 * lr_factor(settings.lr_schedule, 10)(s) for s in range(10)]
    assert lrs == pytest.approx(expected)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert any(c.startswith("lr-") for c in metrics.columns)


def test_kill_and_resume_continues_step_and_lr(stores, tmp_path):
    settings = model_settings(max_steps=8, val_every_n_steps=2, lr_schedule={"name": "step", "step_size": 3})
    full = RecordLR()
    train_model(settings, [stores[0]], [stores[1]], tmp_path / "full", callbacks=[full])

    with pytest.raises(Killed):
        train_model(settings, [stores[0]], [stores[1]], tmp_path / "cut", callbacks=[Kill(5)])
    resumed = RecordLR()
    train_model(settings, [stores[0]], [stores[1]], tmp_path / "cut", callbacks=[resumed])
    # The last checkpoint was at step 4 (validation every 2 steps): the rerun goes on from there.
    assert [s for s, _ in resumed.lrs] == [4, 5, 6, 7]
    assert [s for s, _ in full.lrs[4:]] == [4, 5, 6, 7]
    assert [lr for _, lr in resumed.lrs] == pytest.approx([lr for _, lr in full.lrs[4:]])
    ckpt = torch.load(tmp_path / "cut" / "best.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] in (2, 4, 6, 8)


def test_nan_stops_with_step_terms_and_checkpoint(stores, tmp_path):
    settings = model_settings(max_steps=8, val_every_n_steps=2)
    with pytest.raises(TrainingDiverged) as info:
        train_model(settings, [stores[0]], [], tmp_path, callbacks=[PoisonWeights(3)])
    message = str(info.value)
    assert "at step 3" in message and "affinity/bce=nan" in message
    assert "last.ckpt" in message


def test_missing_validation_errors_before_training(stores, tmp_path):
    with pytest.raises(ConfigError, match="require_validation"):
        train_model(model_settings(require_validation=True), [stores[0]], [], tmp_path)
    with pytest.raises(ConfigError, match="plateau"):
        train_model(model_settings(lr_schedule={"name": "plateau"}), [stores[0]], [], tmp_path)
    assert not (tmp_path / "logs").exists()


def test_multitask_with_deep_supervision_trains_and_predicts_affinities_first(stores, tmp_path):
    settings = model_settings(
        architecture="rsunet",
        architecture_params={"widths": [4, 8], "downsample": [[1, 2, 2]]},
        max_steps=10,
        val_every_n_steps=5,
        gradient_clip=1.0,
        targets=[
            {"type": "affinity", "losses": [{"name": "bce"}, {"name": "dice", "weight": 0.5}]},
            {"type": "boundary", "losses": [{"name": "balanced_bce"}]},
            {"type": "distance", "losses": [{"name": "mse"}], "weight": 0.5},
            {"type": "lsd", "losses": [{"name": "mse"}], "lsd_sigma": 2.0},
        ],
        deep_supervision={"enabled": True},
    )
    best = train_model(settings, [stores[0]], [stores[1]], tmp_path)
    from pipeline_lib.training.module import AffinityModule

    module = AffinityModule.load_from_checkpoint(str(best), map_location="cpu").eval()
    out = module(torch.zeros(1, 1, 8, 16, 16))
    assert out.shape == (1, 3 + 2 + 10, 8, 16, 16)
    # Inference loads the same Trainer checkpoint without Lightning, to the same logits.
    from pipeline_lib.inference.predictor import load_model

    image = torch.rand(1, 1, 8, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(load_model(best)(image), module(image), rtol=0, atol=0)
    assert module.channel_names[:3] == ["affinity[-1, 0, 0]", "affinity[0, -1, 0]", "affinity[0, 0, -1]"]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert {"train/boundary/balanced_bce", "train/scale1", "val/distance/mse", "val/lsd/mse"} <= set(metrics.columns)


class RecordSchedulers(RecordLR):
    def on_train_start(self, trainer, pl_module):
        self.configs = trainer.lr_scheduler_configs


def test_plateau_schedule_is_attached_to_validation_loss(stores, tmp_path):
    settings = model_settings(
        max_steps=8,
        val_every_n_steps=2,
        learning_rate=0.5,
        optimizer={"name": "sgd"},
        lr_schedule={"name": "plateau", "patience": 0, "gamma": 0.5},
    )
    record = RecordSchedulers()
    train_model(settings, [stores[0]], [stores[1]], tmp_path, callbacks=[record])
    (config,) = record.configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config.monitor == "val/loss" and config.frequency == 2
    lrs = {lr for _, lr in record.lrs}
    assert lrs <= {0.5 * 0.5**k for k in range(8)}


def test_time_budget_stops_training_before_max_steps(stores, tmp_path):
    class Slow(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            import time

            time.sleep(0.5)

    settings = model_settings(max_steps=10_000, max_minutes=0.02)  # 1.2 s
    train_model(settings, [stores[0]], [], tmp_path, callbacks=[Slow()])
    ckpt = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    assert 1 <= ckpt["global_step"] < 10


def test_slurm_single_task_jobs_let_lightning_launch_ddp():
    from lightning.fabric.plugins.environments import LightningEnvironment

    from pipeline_lib.training.train import cluster_environment

    assert cluster_environment({}) == []  # not on SLURM: Lightning decides
    (env,) = cluster_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})
    assert isinstance(env, LightningEnvironment)
    assert cluster_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS_PER_NODE": "4"}) == []


class RecordSteps(L.Callback):
    """Global steps at which training batches start, and validations end."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.validated: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)

    def on_validation_end(self, trainer, pl_module):
        self.validated.append(trainer.global_step)


def load_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_kill_and_resume_ends_with_the_same_weights_and_logs_each_step_once(stores, tmp_path):
    """Issue 21, item 5: killed at step 11, resumed from the resume state at step 9 (validation
    only every 8 steps), training ends bit for bit where an uninterrupted run ends; metrics.csv
    holds each step once, with the uninterrupted run's values."""
    augment = {"flip": {"p": 0.5}, "transpose": {"p": 0.5}, "noise": {"p": 0.5}, "gamma": {"p": 0.5}}
    settings = model_settings(max_steps=14, val_every_n_steps=8, resume_every_n_steps=3, augment=augment)
    train_model(settings, [stores[0]], [stores[1]], tmp_path / "full")

    with pytest.raises(Killed):
        train_model(settings, [stores[0]], [stores[1]], tmp_path / "cut", callbacks=[Kill(11)])
    resumed = RecordSteps()
    train_model(settings, [stores[0]], [stores[1]], tmp_path / "cut", callbacks=[resumed])
    assert resumed.steps == [9, 10, 11, 12, 13]  # the resume state of step 9, not validation's of step 8

    for name in ("best.ckpt", "checkpoints/*/last.ckpt"):
        (full,) = (tmp_path / "full").glob(name)
        (cut,) = (tmp_path / "cut").glob(name)
        full_state, cut_state = load_checkpoint(full)["state_dict"], load_checkpoint(cut)["state_dict"]
        assert full_state.keys() == cut_state.keys()
        for key in full_state:
            assert torch.equal(full_state[key], cut_state[key]), key
    full_metrics = pd.read_csv(tmp_path / "full" / "metrics.csv")
    cut_metrics = pd.read_csv(tmp_path / "cut" / "metrics.csv")[full_metrics.columns]
    # The killed run had logged step 9 (after its last resume state) before it died.
    logs = sorted((tmp_path / "cut").glob("checkpoints/*/logs/version_0/metrics.csv"))
    assert 9 in set(pd.read_csv(logs[0])["step"])
    for column in ("train/loss", "val/loss"):
        rows = cut_metrics[cut_metrics[column].notna()]
        assert not rows["step"].duplicated().any(), column
    pd.testing.assert_frame_equal(
        cut_metrics.sort_values(["step", *full_metrics.columns]).reset_index(drop=True),
        full_metrics.sort_values(["step", *full_metrics.columns]).reset_index(drop=True),
    )


def test_training_validates_and_checkpoints_its_last_step(stores, tmp_path):
    """Issue 22, item 3: max_steps 10 with validation every 4 validates after steps 4, 8 and 10;
    best.ckpt is the best of the three (the final one included), last.ckpt is step 10."""
    record = RecordSteps()
    settings = model_settings(max_steps=10, val_every_n_steps=4)
    train_model(settings, [stores[0]], [stores[1]], tmp_path, callbacks=[record])
    assert record.validated == [4, 8, 10]
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    val = metrics[metrics["val/loss"].notna()]
    assert list(val["step"]) == [3, 7, 9]  # Lightning logs a validation after step s at s - 1
    best_step = int(val["step"].iloc[val["val/loss"].argmin()]) + 1
    best = load_checkpoint(tmp_path / "best.ckpt")
    assert best["global_step"] == best_step
    (last,) = tmp_path.glob("checkpoints/*/last.ckpt")
    final = load_checkpoint(last)
    assert final["global_step"] == 10
    if best_step == 10:
        assert all(torch.equal(best["state_dict"][k], v) for k, v in final["state_dict"].items())


def test_time_budget_validates_and_checkpoints_where_it_stops(stores, tmp_path):
    class Slow(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            import time

            time.sleep(0.5)

    record = RecordSteps()
    settings = model_settings(max_steps=10_000, max_minutes=0.02, val_every_n_steps=1000)  # 1.2 s
    train_model(settings, [stores[0]], [stores[1]], tmp_path, callbacks=[Slow(), record])
    stopped = record.steps[-1] + 1
    assert 1 <= stopped < 10 and record.validated == [stopped]
    assert load_checkpoint(tmp_path / "best.ckpt")["global_step"] == stopped
    (last,) = tmp_path.glob("checkpoints/*/last.ckpt")
    assert load_checkpoint(last)["global_step"] == stopped


def test_without_validation_best_is_the_final_step(stores, tmp_path):
    train_model(model_settings(max_steps=5, val_every_n_steps=2), [stores[0]], [], tmp_path)
    assert load_checkpoint(tmp_path / "best.ckpt")["global_step"] == 5


SIGTERM_SCRIPT = """
import sys, warnings
from pathlib import Path
import lightning as L
from pipeline_lib.training.train import train_model
from tests.training.helpers import model_settings, write_store

warnings.filterwarnings("ignore")
out = Path(sys.argv[1])
store = write_store(out / "train.zarr", seed=1)

class Started(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            (out / "started").touch()

settings = model_settings(max_steps=100_000, resume_every_n_steps=1)
train_model(settings, [store], [], out / "model", callbacks=[Started()])
"""


def test_a_training_process_killed_by_sigterm_exits_non_zero(tmp_path):
    """Issue 22, item 2: Lightning turns SIGTERM into SystemExit(None), exit status 0."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    assert "TrainingInterrupted: training stopped by SIGTERM at step" in stderr
    assert "rerunning resumes from" in stderr and "last.ckpt" in stderr


def test_training_uses_the_threads_it_was_given_in_the_process_and_every_worker(stores, tmp_path, monkeypatch):
    """Issue 22, item 1: 3 threads with 2 loader workers: one thread in each worker, one in the
    training process; the workers' OpenMP/BLAS variables say 1 as well."""
    import json
    import os

    from pipeline_lib.threads import THREAD_VARIABLES
    from pipeline_lib.training import data

    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "8")  # what a job of 8 threads inherits (restored after the test)
    real_raw_sample = data.raw_sample  # what workers make when augmentation is batched on the device

    def recording_raw_sample(*args, **kwargs):
        record = {name: os.environ[name] for name in THREAD_VARIABLES} | {"torch": torch.get_num_threads()}
        (tmp_path / f"worker-{os.getpid()}.json").write_text(json.dumps(record))
        return real_raw_sample(*args, **kwargs)

    monkeypatch.setattr(data, "raw_sample", recording_raw_sample)

    class RecordThreads(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.threads = torch.get_num_threads()

    record = RecordThreads()
    settings = model_settings(max_steps=4, num_workers=2)
    train_model(settings, [stores[0]], [], tmp_path / "model", threads=3, callbacks=[record])
    assert record.threads == 1
    workers = [json.loads(p.read_text()) for p in tmp_path.glob("worker-*.json")]
    assert len(workers) == 2
    for worker in workers:
        assert worker == {**dict.fromkeys(THREAD_VARIABLES, "1"), "torch": 1}


def test_sigterm_during_fit_raises_training_interrupted_naming_the_resume_state(stores, tmp_path):
    """The in-process view of the test above: Lightning's SIGTERMException becomes an error."""
    import os
    import signal

    from pipeline_lib.training.train import TrainingInterrupted

    class Terminate(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler only flags it

    settings = model_settings(max_steps=50, resume_every_n_steps=2)
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at step 3 of 50; rerunning resumes from .*last\.ckpt"):
        train_model(settings, [stores[0]], [], tmp_path, callbacks=[Terminate()])
