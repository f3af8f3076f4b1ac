"""The evaluation table lists every model, decoder and dataset; the plot is drawn."""

from __future__ import annotations

import json

import matplotlib.image
import pandas as pd

from pipeline_lib.report import evaluation_table, write_evaluation_report


def evaluations_of(run, model="m", dataset="d"):
    return [(model, decoder, dataset, path) for decoder, path in run.evaluations.items()]


def test_table_has_every_decoder_and_dataset(synthetic_run, make_synthetic_run, tmp_path):
    second = make_synthetic_run(tmp_path, model="m2", dataset="d2")
    evaluations = evaluations_of(synthetic_run) + evaluations_of(second, "m2", "d2")
    out = {k: tmp_path / f"evaluation.{k}" for k in ("csv", "html", "png")}
    write_evaluation_report(evaluations, out["csv"], out["html"], out["png"])

    table = pd.read_csv(out["csv"])
    assert len(table) == 4
    assert set(zip(table["model"], table["decoder"], table["dataset"], strict=True)) == {
        ("m", "cc", "d"),
        ("m", "merged", "d"),
        ("m2", "cc", "d2"),
        ("m2", "merged", "d2"),
    }
    for column in ("voi_split", "voi_merge", "voi", "arand", "n_seg_objects", "n_gt_objects"):
        assert column in table
    scores = json.loads(synthetic_run.evaluations["merged"].read_text())
    row = table[(table["dataset"] == "d") & (table["decoder"] == "merged")].iloc[0]
    assert row["voi_merge"] == scores["voi_merge"] and row["n_seg_objects"] == scores["n_seg_objects"]
    assert row["voi"] == scores["voi_split"] + scores["voi_merge"]
    # best (lowest ARAND) first within each dataset: the exact segmentation beats the merged one
    assert list(table[table["dataset"] == "d"]["decoder"]) == ["cc", "merged"]

    html = out["html"].read_text()
    for name in ("merged", "d2", "m2", "voi_split", "arand"):
        assert name in html
    assert html.count("<tr>") == 5 and html.count("<b>") == 4  # header + 4 rows; best ARAND and VOI of 2 datasets
    assert matplotlib.image.imread(str(out["png"]))[..., :3].std() > 0.05


def test_evaluation_table_keeps_all_rows_in_order(synthetic_run):
    table = evaluation_table(evaluations_of(synthetic_run))
    assert list(table["decoder"]) == ["cc", "merged"]
    assert table.loc[0, "arand"] == 0.0


def test_report_inputs_follow_the_plan(tiny_run):
    from pipeline_lib.workflow import Plan

    workdir, config = tiny_run
    plan = Plan.from_config(config)
    assert plan.evaluated_runs() == [["tiny", "cc", "tiny_test"]]
    outputs = plan.run_outputs()
    assert outputs[:3] == [f"results/volumes/tiny_{d}.zarr" for d in ("train", "val", "test")]
    assert "results/segmentations/tiny/cc/tiny_test.zarr" in outputs
    assert outputs[-1] == "results/evaluations/tiny/cc/tiny_test.json"
    targets = plan.report_targets()
    assert "results/report/slices/tiny/tiny_test.png" in targets
    assert "results/report/evaluation.html" in targets and "results/report/provenance.html" in targets
    assert set(targets) <= set(plan.final_targets())
