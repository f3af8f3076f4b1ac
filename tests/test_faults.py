"""The fault matrix: bad configs, bad or damaged files, and what the user sees for each.

Every case asserts a :class:`~pipeline_lib.errors.UserError` (the workflow prints it as one
line, without traceback: ``tests/test_job_logging.py``, ``tests/workflow/test_faults_e2e.py``)
whose message is one line naming the key or file, and that nothing was published. Most cases
run the start-up validation (:meth:`Plan.from_config`) or the library function a job calls.

This module: configuration faults. Sources and voxels: ``test_faults_sources.py``; damaged
results and networks: ``test_faults_results.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline_lib.workflow import Plan
from tests.conftest import TINY_DATASETS, tiny_config
from tests.faults import (
    Config,
    expect_user_error,
    tiny_model,
)

# --- configuration: keys, types, ranges, references ---------------------------------------


CONFIG_FAULTS: dict[str, tuple[Callable[[Config], None], tuple[str, ...]]] = {
    "unknown top-level key": (lambda c: c.update(predcit={}), ("predcit",)),
    "misspelled model key": (lambda c: tiny_model(c).update(learning_rat=0.1), ("learning_rat",)),
    "wrong type": (lambda c: tiny_model(c).update(max_steps="ten"), ("models.tiny.max_steps",)),
    "out of range": (lambda c: tiny_model(c).update(learning_rate=-1.0), ("models.tiny.learning_rate",)),
    "patch of 2 axes": (lambda c: tiny_model(c).update(patch_shape=[16, 32]), ("models.tiny.patch_shape",)),
    "unknown dataset": (lambda c: c["datasets"].append("nope"), ("'datasets'", "nope")),
    "no test dataset": (lambda c: c.update(datasets=["tiny_train", "tiny_val"]), ("'datasets'", "test")),
    "block not a multiple of chunk": (
        lambda c: c["predict"].update(block_shape=[20, 32, 32]),
        ("predict.block_shape",),
    ),
    "missing nearest-neighbour offset": (
        lambda c: tiny_model(c).update(offsets=[[-1, 0, 0], [0, -1, 0]]),
        ("models.tiny.offsets",),
    ),
    "unknown decoder method": (lambda c: c["decoders"]["cc"].update(method="magic"), ("decoders.cc",)),
    "tune_threshold without val": (
        lambda c: c.update(datasets=["tiny_train", "tiny_test"]),
        ("decoders.cc.tune_threshold",),
    ),
    "ensemble of unknown model": (
        lambda c: c.update(ensembles={"both": {"models": ["tiny", "other"]}}),
        ("ensembles.both", "other"),
    ),
    "unknown architecture": (lambda c: tiny_model(c).update(architecture="unett"), ("models.tiny", "unett", "unet")),
    "misspelled architecture param": (
        lambda c: tiny_model(c)["architecture_params"].update(chanels=[8]),
        ("models.tiny", "chanels"),
    ),
    "patch larger than a train volume": (
        lambda c: tiny_model(c).update(patch_shape=[32, 32, 32]),
        ("models.tiny.patch_shape", "tiny_train", "[24, 64, 64]"),
    ),
    "window too large to reflect-pad": (
        lambda c: c["predict"].update(window_shape=[56, 32, 32]),
        ("predict.padding_mode", "tiny_val"),
    ),
    "missing datasets file": (lambda c: c.update(datasets_file="/nonexistent/datasets.yaml"), ("/nonexistent",)),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FAULTS))
def test_config_faults_are_caught_at_start(tiny_run: tuple[Path, Config], case: str) -> None:
    _, config = tiny_run
    mutate, names = CONFIG_FAULTS[case]
    mutate(config)
    expect_user_error(lambda: Plan.from_config(config), *names)


def _datasets_file(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "datasets.yaml"
    path.write_text(text)
    return tiny_config(path)


def test_a_dataset_declared_twice_names_the_line(tmp_path: Path) -> None:
    text = json.dumps(TINY_DATASETS, indent=2)  # JSON is YAML; declare tiny_val twice
    entry = json.dumps(TINY_DATASETS["datasets"]["tiny_val"])  # type: ignore[index]
    text = text.replace('"tiny_test":', f'"tiny_val": {entry},\n    "tiny_test":', 1)
    config = _datasets_file(tmp_path, text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith('"tiny_val": {"synthetic"'))
    expect_user_error(lambda: Plan.from_config(config), "datasets.yaml", f"line {line}", "'tiny_val' is written twice")


def test_a_config_key_written_twice_names_the_file_and_line(tiny_run: tuple[Path, Config]) -> None:
    tmp, config = tiny_run
    config_file = tmp / "config.yaml"
    config_file.write_text("datasets: [a]\nmodels:\n  m: {}\ndatasets: [b]\n")
    expect_user_error(lambda: Plan.from_config(config, [config_file]), "config.yaml", "line 4", "'datasets'")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("datasets: [unclosed\n", ("datasets.yaml", "not valid YAML")),
        ("- a list\n", ("datasets.yaml", "expected a mapping")),
        ("datasets:\n  x: {voxel_size: [1, 1, 1], roles: [test]}\n", ("datasets.yaml", "datasets.x")),
    ],
    ids=["unclosed", "a list", "no source"],
)
def test_a_malformed_datasets_file_is_caught_at_start(tmp_path: Path, text: str, names: tuple[str, ...]) -> None:
    config = _datasets_file(tmp_path, text)
    expect_user_error(lambda: Plan.from_config(config), *names)
