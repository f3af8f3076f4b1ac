"""Decoder configuration: per-method params validated by the schema, registry lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.decoding.registry import decoder_settings, get_decoder
from pipeline_lib.errors import ConfigError


def test_defaults_per_method() -> None:
    waterz = decoder_settings({"method": "waterz"})
    assert waterz.params["merge_function"] == "aff50_his256" and waterz.params["halo"] == [4, 8, 8]
    assert waterz.params["boundary_threshold"] == 0.5 and waterz.params["min_seed_distance"] == 10
    assert waterz.threshold == 0.5 and waterz.min_size == 0 and waterz.small_objects == "background"
    assert decoder_settings({"method": "connected_components"}).params == {}
    assert decoder_settings({"method": "mutex_watershed"}).params["long_range_bias"] == 0.0
    assert decoder_settings({"method": "seeded_watershed"}).params["seed_min_size"] == 10


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"method": "waterz", "params": {"merge_function": "aff51_his256"}}, "params.merge_function"),
        ({"method": "waterz", "params": {"seed_min_size": 3}}, "params"),  # another method's key
        ({"method": "connected_components", "params": {"halo": [1, 1, 1]}}, "params"),
        ({"method": "mutex_watershed", "params": {"min_seed_distance": 0}}, "params.min_seed_distance"),
        ({"method": "waterz", "params": {"stitch_overlap": 0.5}}, "params"),  # graph decoders do not stitch overlaps
        ({"method": "seeded_watershed", "thresold": 0.4}, "(top level)|d'"),
        ({"method": "waterz", "small_objects": "drop"}, "small_objects"),
    ],
)
def test_errors_name_the_key(entry: dict, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        decoder_settings(entry, name="d")
    message = str(error.value)
    assert any(f"decoders.d.{k}" in message or k in message for k in key.split("|")), message


def test_misspelt_method_is_rejected_with_choices() -> None:
    with pytest.raises(ConfigError, match="decoders.d.method"):
        decoder_settings({"method": "watrz"}, name="d")
    with pytest.raises(ConfigError, match="did you mean 'waterz'"):
        get_decoder("watrz")


def test_stitching_and_halo_by_method() -> None:
    assert get_decoder("connected_components").halo(decoder_settings({"method": "connected_components"})) == (0, 0, 0)
    settings = decoder_settings({"method": "waterz", "params": {"halo": [2, 8, 8]}})
    assert get_decoder("waterz").stitch == "graph" and get_decoder("waterz").halo(settings) == (2, 8, 8)
    assert get_decoder("mutex_watershed").stitch == "graph" and get_decoder("seeded_watershed").stitch == "graph"


def test_affinity_array_name_matches_prediction() -> None:
    # read from the source: importing the inference module would import torch (~10 s)
    import pipeline_lib
    from pipeline_lib.io import volumes
    from pipeline_lib.io.affinities import AFFINITIES

    assert AFFINITIES is volumes.AFFINITIES  # the one definition of the store layout
    source = (Path(pipeline_lib.__file__).parent / "inference" / "predict.py").read_text()
    assert "AFFINITIES = " not in source and "AFFINITIES," in source  # imported, not redefined


def test_decoders_read_the_channels_they_use() -> None:
    offsets = [[0, -3, 0], [0, 0, -1], [-1, 0, 0], [-3, 0, 0], [0, -1, 0]]  # nearest ones at 1, 2, 4
    for method in ("connected_components", "seeded_watershed", "waterz"):
        assert get_decoder(method).channels(offsets) == [1, 2, 4]
    assert get_decoder("mutex_watershed").channels(offsets) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="nearest-neighbour affinity"):
        get_decoder("waterz").channels([[-3, 0, 0], [0, -1, 0], [0, 0, -1]])
