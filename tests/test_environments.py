"""Conda files (which cannot run here) must parse and name the same packages as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from tests.conftest import REPO

CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name → PyPI name
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def conda_packages(path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(p) for p in dep["pip"] if not p.startswith("-e")}
        else:
            names.add(CONDA_NAMES.get(_name(dep), _name(dep)))
    return names - NOT_PACKAGES


def test_environment_yml_matches_pyproject():
    assert conda_packages(REPO / "environment.yml") == pyproject_packages()


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_rule_envs_use_only_declared_packages(env):
    packages = conda_packages(env)
    assert packages <= pyproject_packages(), packages - pyproject_packages()
    assert "-e .." in yaml.safe_load(env.read_text())["dependencies"][-1]["pip"]


def test_every_rule_env_exists():
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', rules.read_text()):
            assert (rules.parent / env).resolve().is_file(), f"{rules.name}: {env}"
