"""The run plan: which files a configuration asks Snakemake to build."""

from __future__ import annotations

import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.workflow import Plan


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
    config["models"]["tiny"]["patch_shape"] = [56, 32, 32]  # tiny_test has 24 slices, tiny_val 16
    with pytest.raises(ConfigError, match=r"predict.padding_mode.*axis z has 16 voxels"):
        Plan.from_config(config)
    config["predict"]["padding_mode"] = "replicate"
    Plan.from_config(config)
