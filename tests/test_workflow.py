"""The run plan: which files a configuration asks Snakemake to build."""

from __future__ import annotations

import copy

import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.workflow import Plan
from tests.conftest import TINY_DATASETS, write_yaml


def test_every_predictor_is_swept_and_evaluated_with_every_decoder(tiny_run):
    _, config = tiny_run
    config["models"]["tiny2"] = dict(config["models"]["tiny"], seed=1)
    config["ensembles"] = {"both": {"models": ["tiny", "tiny2"]}}
    config["decoders"]["ws"] = {"method": "seeded_watershed"}
    plan = Plan.from_config(config)
    targets = set(plan.final_targets())
    for predictor in ("tiny", "tiny2", "both"):
        for decoder in ("cc", "ws"):
            assert f"results/evaluations/{predictor}/{decoder}/tiny_test.json" in targets
            assert f"results/sweeps/{predictor}/{decoder}/tiny_val.json" in targets
        assert f"results/report/slices/{predictor}/tiny_test.png" in targets
    # Training curves belong to models; an ensemble trains nothing.
    assert "results/models/tiny2/loss.png" in targets
    assert not any(t.startswith("results/models/both") for t in targets)
    assert plan.checkpoints("both") == ["results/models/tiny/best.ckpt", "results/models/tiny2/best.ckpt"]
    assert plan.checkpoints("tiny") == ["results/models/tiny/best.ckpt"]
    assert set(plan.predictor_config("both")) == {"tiny", "tiny2"}
    assert plan.predictor_config("tiny") == plan.config["models"]["tiny"]


def test_a_volume_too_thin_to_reflect_pad_is_a_config_error(tiny_run):
    _, config = tiny_run
    config["predict"]["window_shape"] = [56, 32, 32]  # tiny_test has 24 slices, tiny_val 16
    with pytest.raises(ConfigError, match=r"predict.padding_mode.*axis z has 16 voxels"):
        Plan.from_config(config)
    config["predict"]["padding_mode"] = "replicate"
    Plan.from_config(config)


def _with_test_shape(run_dir, shape):
    """The tiny datasets file with tiny_test declared at ``shape`` (synthetic: no voxel is generated to plan)."""
    datasets = copy.deepcopy(TINY_DATASETS)
    datasets["datasets"]["tiny_test"]["synthetic"]["shape"] = list(shape)
    write_yaml(run_dir / "datasets.yaml", datasets)


def test_a_volume_8x_larger_plans_the_same_number_of_block_jobs(tiny_run):
    run_dir, config = tiny_run
    small = Plan.from_config(config)
    _with_test_shape(run_dir, (48, 128, 128))
    large = Plan.from_config(config)
    assert len(large.predict_grid("tiny_test")) == 8 * len(small.predict_grid("tiny_test")) == 32
    assert len(large.decode_grid("tiny_test")) == 8 * len(small.decode_grid("tiny_test")) == 96
    assert (large.predict_jobs("tiny_test"), large.decode_jobs("tiny_test")) == (2, 3)
    assert (small.predict_jobs("tiny_test"), small.decode_jobs("tiny_test")) == (2, 3)
    config["decode"]["max_jobs"] = 1000  # more than blocks: one job per block
    assert Plan.from_config(config).decode_jobs("tiny_test") == 96


def test_a_teravoxel_volume_plans_at_most_max_jobs(tiny_run):
    run_dir, config = tiny_run
    _with_test_shape(run_dir, (1024, 32768, 32768))
    del config["predict"]["max_jobs"], config["decode"]["max_jobs"]  # the default, 256
    plan = Plan.from_config(config)
    assert len(plan.decode_grid("tiny_test")) == 128 * 1024 * 1024  # blocks of 8 x 32 x 32
    assert plan.predict_jobs("tiny_test") == plan.decode_jobs("tiny_test") == 256


def _crop_blocks_on_a_large_volume(run_dir, config):
    """Issue 22, item 7: blocks made for small crops (config/gala.yaml's) and a 250^3 test volume."""
    _with_test_shape(run_dir, (250, 250, 250))
    config["predict"]["window_shape"] = [32, 96, 96]  # the training patch must fit tiny_train: a larger window
    config["predict"].update(block_shape=[50, 100, 200], chunk_shape=[25, 50, 50], max_jobs=256)
    config["predict"]["padding_mode"] = "replicate"
    config["decode"] = {"block_shape": [50, 100, 200], "chunk_shape": [25, 50, 50], "max_jobs": 256}


def test_block_shapes_that_do_not_fit_the_volume_are_warned_about_with_numbers_and_keys(tiny_run):
    run_dir, config = tiny_run
    _crop_blocks_on_a_large_volume(run_dir, config)
    warnings = Plan.from_config(config).block_shape_warnings()
    where = "dataset 'tiny_test' (250x250x250 = 15.6 Mvoxel)"
    assert warnings == [
        f"{where}: predict.block_shape [50, 100, 200] makes 30 blocks in 30 jobs of 0.52 Mvoxel each; under 4 "
        "Mvoxel a job's start-up outweighs its work: raise predict.block_shape (a multiple of predict.chunk_shape) "
        "or lower predict.max_jobs (now 256)",
        f"{where}: predict.block_shape [50, 100, 200] is under twice model 'tiny''s window [32, 96, 96] along z, y: "
        "neighbouring blocks recompute the windows across their faces; raise predict.block_shape there",
        f"{where}: decode.block_shape [50, 100, 200] makes 30 blocks in 30 jobs of 0.52 Mvoxel each; under 4 "
        "Mvoxel a job's start-up outweighs its work: raise decode.block_shape (a multiple of decode.chunk_shape) "
        "or lower decode.max_jobs (now 256)",
    ]
    # Blocks that fit: 2 blocks along z of 125 x 250 x 250, bigger than twice the window.
    config["predict"]["block_shape"] = config["decode"]["block_shape"] = [125, 250, 250]
    assert Plan.from_config(config).block_shape_warnings() == []
    # A few jobs cost little, whatever their size: the tiny demo volumes are not warned about.
    config["predict"]["block_shape"] = config["decode"]["block_shape"] = [50, 100, 200]
    config["predict"]["max_jobs"] = config["decode"]["max_jobs"] = 4
    warnings = Plan.from_config(config).block_shape_warnings()
    assert len(warnings) == 1 and "under twice model 'tiny''s window" in warnings[0]


def test_the_block_shape_warning_is_printed_once_at_workflow_start(tiny_run):
    from tests.workflow.test_snakemake import snakemake

    run_dir, config = tiny_run
    _crop_blocks_on_a_large_volume(run_dir, config)
    write_yaml(run_dir / "config.yaml", config)
    result = snakemake(run_dir, "-n", "--cores", "1")
    lines = [line for line in result.stderr.splitlines() if line.startswith("Warning: dataset 'tiny_test'")]
    assert len(lines) == 3 and "predict.block_shape [50, 100, 200] makes 30 blocks in 30 jobs" in lines[0]
