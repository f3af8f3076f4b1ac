import json

import pytest

from pipeline_lib.config import load_config
from pipeline_lib.decoding import decoder_settings, tuned_decoder
from pipeline_lib.errors import ConfigError


def test_tuned_decoder_takes_the_sweeps_best_threshold(tmp_path):
    result = tmp_path / "best.json"
    result.write_text(json.dumps({"threshold": 0.7, "arand": 0.1}))
    fixed = decoder_settings({"method": "connected_components", "threshold": 0.4})
    tuned = decoder_settings({"method": "connected_components", "threshold": 0.4, "tune_threshold": True})
    assert tuned_decoder(fixed, result).threshold == 0.4  # not asked: unchanged
    assert tuned_decoder(tuned, result).threshold == 0.7
    with pytest.raises(ValueError, match="no sweep result"):
        tuned_decoder(tuned, None)


def test_tuning_needs_a_validation_dataset(tiny_run):
    _, config = tiny_run
    config["decoders"]["cc"]["tune_threshold"] = True
    assert load_config(config).decoders["cc"].tune_threshold
    config["datasets"] = ["tiny_train", "tiny_test"]
    with pytest.raises(ConfigError, match="decoders.cc.tune_threshold"):
        load_config(config)
