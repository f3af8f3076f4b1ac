"""`python -m pipeline_lib info` prints the provenance an output records."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from pipeline_lib import __version__
from pipeline_lib.__main__ import main
from pipeline_lib.provenance import git_commit
from pipeline_lib.report import read_record, write_provenance_page


def test_info_of_a_store_prints_provenance_and_arrays(synthetic_run, capsys):
    assert main(["info", str(synthetic_run.prediction)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    prov = printed["provenance"]
    assert prov["stage"] == "predict"
    assert prov["pipeline_version"] == __version__
    assert prov["git_commit"] == git_commit()
    assert prov["settings"]["model"]["offsets"][0] == [-1, 0, 0]
    assert str(synthetic_run.volume.resolve()) in prov["inputs"]
    assert printed["attributes"]["checkpoints"][0]["sha256"] == "0" * 64
    assert printed["arrays"]["affinities"]["shape"] == [4, 16, 48, 40]
    assert printed["arrays"]["affinities"]["voxel_size_nm"] == [40.0, 8.0, 8.0]


def test_info_of_an_evaluation_json(synthetic_run, capsys):
    assert main(["info", str(synthetic_run.evaluations["merged"]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["provenance"]["stage"] == "evaluate"
    assert printed["segmentation_provenance"]["stage"] == "decode"
    assert printed["scores"]["arand"] > 0


def test_info_as_a_module_command(synthetic_run):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "info", str(synthetic_run.volume)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stage: assemble" in result.stdout and "git_commit:" in result.stdout


def test_info_of_something_else_is_one_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    assert "not found" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    assert main(["info", str(other)]) == 1
    assert "records no provenance" in capsys.readouterr().err


def test_read_record_of_every_output(synthetic_run):
    stages = [
        read_record(p)["provenance"]["stage"]
        for p in (
            synthetic_run.volume,
            synthetic_run.prediction,
            synthetic_run.segmentations["cc"],
            synthetic_run.evaluations["cc"],
        )
    ]
    assert stages == ["assemble", "predict", "decode", "evaluate"]


def test_provenance_page_lists_every_output(synthetic_run, tmp_path):
    outputs = [
        synthetic_run.volume,
        synthetic_run.prediction,
        *synthetic_run.segmentations.values(),
        *synthetic_run.evaluations.values(),
    ]
    page = tmp_path / "provenance.html"
    write_provenance_page(outputs, page)
    text = page.read_text()
    for output in outputs:
        assert f"<h2 id='{output}'>" in text
    for stage in ("assemble", "predict", "decode", "evaluate"):
        assert f"<pre>{stage}</pre>" in text
    assert git_commit() in text and "sha256" in text
