"""The dry-run cost summary: blocks, jobs, voxels and bytes per stage, by hand on the tiny run."""

from __future__ import annotations

import json

from pipeline_lib.__main__ import main
from pipeline_lib.costs import format_costs, stage_costs
from pipeline_lib.workflow import Plan
from tests.conftest import write_yaml


def test_costs_of_the_tiny_run(tiny_run):
    _, config = tiny_run
    costs = {(c.stage, c.target): c for c in stage_costs(Plan.from_config(config))}
    voxels = 24 * 64 * 64
    assert costs["assemble", "tiny_test"].output_bytes == voxels * (1 + 4)  # uint8 image, uint32 labels
    predict = costs["predict", "tiny/tiny_test"]
    assert (predict.voxels, predict.blocks, predict.jobs) == (voxels, 4, 2)
    assert predict.output_bytes == voxels * 3  # three uint8 channels
    decode = costs["decode", "tiny/cc/tiny_test"]
    assert (decode.blocks, decode.jobs) == (12, 2 * 3 + 3)
    faces = 12 * (32 * 32 + 8 * 32 + 8 * 32) * 8
    assert decode.scratch_bytes == voxels * 4 + faces
    assert decode.output_bytes == voxels * 4  # uint32 segmentation
    # graph decoders keep, per face plane, both sides' labels and the channels they read
    config["decoders"]["wz"] = {"method": "waterz"}  # type: ignore[index]
    config["decoders"]["mws"] = {"method": "mutex_watershed"}  # type: ignore[index]
    config["models"]["tiny"]["offsets"] = [[-1, 0, 0], [0, -1, 0], [0, 0, -1], [0, -3, 0]]  # type: ignore[index]
    graph = {(c.stage, c.target): c for c in stage_costs(Plan.from_config(config))}
    waterz_faces = 12 * (32 * 32 + 8 * 32 + 8 * 32) * (2 * 4 + 3)  # depth 1, the 3 nearest channels
    assert graph["decode", "tiny/wz/tiny_test"].scratch_bytes == voxels * 4 + waterz_faces
    mws_faces = 12 * (32 * 32 + 3 * 8 * 32 + 8 * 32) * (2 * 4 + 4)  # 3 planes deep along y, all 4 channels
    assert graph["decode", "tiny/mws/tiny_test"].scratch_bytes == voxels * 4 + mws_faces
    assert ("evaluate", "tiny/cc/tiny_test") in costs
    assert ("predict", "tiny/tiny_val") in costs and ("decode", "tiny/cc/tiny_val") not in costs
    table = format_costs(list(costs.values()))
    assert "tiny/cc/tiny_test" in table and table.splitlines()[-1].startswith("total: ")
    assert "393.2 kB" in table  # the uint32 segmentation of 24 x 64 x 64 voxels


def test_plan_command_prints_the_table_and_json(tiny_run, capsys):
    run_dir, config = tiny_run
    path = write_yaml(run_dir / "config.yaml", config)
    assert main(["plan", "--configfile", str(path)]) == 0
    assert "predict   tiny/tiny_test" in capsys.readouterr().out
    assert main(["plan", "--configfile", str(path), "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)
    assert {s["stage"] for s in stages} == {"assemble", "predict", "decode", "evaluate"}
    assert main(["plan", "--configfile", str(run_dir / "missing.yaml")]) == 1
    assert "file not found" in capsys.readouterr().err
