"""Conda files (which cannot run here) must parse and name the same packages as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from tests.conftest import REPO

CONDA_NAMES = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch"}  # conda-forge → PyPI name
NOT_PACKAGES = {"python", "pip"}
RULE_ENV = r"^rule (\w+):(?:(?!^rule ).)*?conda:\s*\n\s*\"[^\"]*/(\w+\.yaml)\""  # rule name, its env file


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


def test_rule_envs_pin_the_torch_build_their_jobs_run() -> None:
    """conda-forge picks pytorch's CUDA build only where it sees a GPU, and Snakemake builds
    the envs on the node it runs on (often a login node without one): the GPU env must ask
    for the CUDA build, and the CPU env for the CPU build (no CUDA download for decode jobs)."""

    def names(env: str) -> set[str]:
        return {
            _name(d) for d in yaml.safe_load((REPO / "envs" / env).read_text())["dependencies"] if isinstance(d, str)
        }

    assert "pytorch-gpu" in names("gpu.yaml") and "pytorch-cpu" not in names("gpu.yaml")
    assert "pytorch-cpu" in names("cpu.yaml") and "pytorch-gpu" not in names("cpu.yaml")
    checked, directives = 0, 0
    for rules in (REPO / "workflow/rules").glob("*.smk"):
        text = rules.read_text()
        directives += text.count("conda:")
        for rule, env in re.findall(RULE_ENV, text, re.M | re.S):
            gpu_rule = rule == "train" or rule.startswith("predict")
            assert env == ("gpu.yaml" if gpu_rule else "cpu.yaml"), f"{rules.name}: rule {rule} uses {env}"
            checked += 1
    assert checked == directives > 0
