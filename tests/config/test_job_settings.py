"""Validate once: jobs rebuild the settings validated at workflow start, without validating."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pipeline_lib.config import job_config, job_settings, validate_config
from pipeline_lib.config import schema as schema_module
from pipeline_lib.errors import ConfigError
from pipeline_lib.workflow import Plan


def test_job_settings_equal_the_validated_settings(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, config = tiny_run
    config["datasets"] = ["tiny_train", "tiny_val", "tiny_test"]
    data, settings = validate_config(config)
    assert job_settings(job_config(data, settings)) == settings
    assert Plan.from_config(config, check_networks=False).job_config() == job_config(data, settings)


def test_job_settings_neither_validate_nor_read_files(
    tiny_run: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, config = tiny_run
    data, settings = validate_config(config)
    handed = copy.deepcopy(job_config(data, settings))
    (tmp / "datasets.yaml").unlink()  # the datasets file is not read again

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validated again")

    import pipeline_lib.config as config_package

    monkeypatch.setattr(schema_module, "validate_with_defaults", refuse)
    monkeypatch.setattr(config_package, "validate_with_defaults", refuse)
    assert job_settings(handed).datasets["tiny_test"] == settings.datasets["tiny_test"]


def test_a_config_not_validated_at_start_is_refused() -> None:
    with pytest.raises(ConfigError, match="not validated at workflow start"):
        job_settings({"models": {}})


def test_plan_validates_the_schema_once(tiny_run: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline_lib.config as config_package

    _, config = tiny_run
    calls: list[str] = []
    original = config_package.validate_with_defaults

    def counting(data: Any, name: str, source: str) -> Any:
        calls.append(name)
        return original(data, name, source)

    monkeypatch.setattr(config_package, "validate_with_defaults", counting)
    Plan.from_config(config, check_networks=False)
    assert calls == ["config", "datasets"]
