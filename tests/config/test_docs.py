from pipeline_lib.config.docs import render
from tests.conftest import REPO


def test_config_readme_is_generated_from_the_schemas():
    committed = (REPO / "config/README.md").read_text()
    assert committed == render(), (
        "config/README.md is stale: run `python -m pipeline_lib.config.docs > config/README.md`"
    )


def test_every_schema_key_has_a_description():
    missing = [
        line.split("|")[1].strip()
        for line in render().splitlines()
        if line.startswith("| `") and line.rstrip().endswith("|  |")
    ]
    assert not missing, missing
