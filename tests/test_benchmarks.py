"""Smoke runs of the decoding benchmarks on tiny volumes: they run, and print what benchmarks/README.md reads.

Timings are not asserted (this machine is shared and noisy); the contract is the output: JSON
lines, the last one a summary with ``name``, ``seconds_ours``, ``seconds_baseline``,
``ratio`` and a peak memory.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pipeline_lib.decoding.graph_agglomeration import RegionGraph, merge_history
from pipeline_lib.decoding.region_graph import aggregate, empty_table

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(script: str, *args: str) -> list[dict]:
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def load_benchmark(script: str) -> ModuleType:
    """A benchmark script imported as a module (its functions, without running ``main``), from
    the benchmarks folder, so its sibling modules import as they do when it runs as a script."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(Path(script).stem)


def check_summary(summary: dict, name: str) -> None:
    assert summary["name"] == name
    assert summary["seconds_ours"] > 0 and summary["seconds_baseline"] >= 0
    assert summary["ratio"] > 0
    assert summary["peak_rss_mb"] > 0


@pytest.mark.parametrize("extra", [[], ["--skip-waterz", "--workers", "1", "3"]])
def test_bench_decode_prints_every_comparison_and_the_serial_steps(extra: list[str]) -> None:
    lines = run_benchmark("bench_decode.py", "--shape", "32", "64", "64", "--tile", "32", "--repeat", "1", *extra)
    names = [line["name"] for line in lines]
    workers = [1, 3] if extra else [2]
    expected = ["cc_decode_0.131072Mvox", "cc_decode_steps"]
    expected += [f"cc_decode_0.131072Mvox_{n}proc" for n in workers]
    if not extra:
        expected += ["waterz_decode_0.131072Mvox", "waterz_decode_steps"]
        expected += [f"waterz_decode_0.131072Mvox_{n}proc" for n in workers]
        expected += ["region_graph_size", "waterz_sweep_10_thresholds", "fragment_step_one_block"]
    assert names == [*expected, "blockwise_cc_peak_rss_4x_vs_1x", "bench_decode"]
    steps = lines[1]["seconds_best_of_each"]
    assert list(steps) == ["prepare", "decode_blocks", "stitch", "relabel_blocks", "finish"]
    summary = lines[-1]
    check_summary(summary, "bench_decode")
    assert (summary["waterz_ratio"] is None) == (summary["waterz_sweep_ratio"] is None) == bool(extra)
    if not extra:
        size = lines[names.index("region_graph_size")]
        assert size["nodes"] > 0 and size["edges"] > 0 and size["bytes"] > 0
        assert size["nodes_per_gvox"] == round(size["nodes"] * 1000 / 0.131072)
    assert summary["workers"] == workers
    assert summary["ratio_workers"] == [line["ratio"] for line in lines[2 : 2 + len(workers)]]


def test_bench_codecs_measures_each_candidate() -> None:
    lines = run_benchmark("bench_codecs.py", "--shape", "32", "128", "128", "--repeat", "1")
    by_name = {line["name"]: line for line in lines}
    assert by_name["affinities_ours_zstd1"]["chunks"] == [32, 128, 128]  # predict's default chunk shape
    assert by_name["segmentation_ours_uint32_zstd1"]["chunks"] == [64, 128, 128]  # one chunk per decode block
    assert [by_name[f"affinities_6ch_{n}"]["channel_chunk"] for n in ("ours_chunks_of_6", "chunks_of_3")] == [6, 3]
    assert all(line["mb_stored"] > 0 for name, line in by_name.items() if name != "bench_codecs")
    check_summary(lines[-1], "bench_codecs")


def test_bench_stitch_compares_equal_tables() -> None:
    lines = run_benchmark("bench_stitch.py", "--blocks", "10", "250", "--objects", "30")
    assert [line["name"] for line in lines] == ["stitch_10_blocks", "stitch_250_blocks", "stitch"]
    assert [line["objects"] for line in lines[:2]] == [300, 7500]  # 10 x 1 x 1 and 10 x 5 x 5 blocks
    check_summary(lines[-1], "stitch")
    assert lines[-1]["peak_rss_mb_baseline"] > 0


@pytest.mark.slow
def test_bench_plan_times_both_sides_and_prints_the_summary() -> None:
    lines = run_benchmark("bench_plan.py", "--sizes", "1e8", "--timeout", "250")
    row, summary = lines
    assert row["name"] == "plan_1e+08" and row["shape"] == [1024, 512, 512]
    # 256 decoding blocks: one job each (max_jobs 256) against one per 4 blocks before
    assert row["ours"]["jobs"] > row["baseline"]["jobs"] > 0
    check_summary(summary, "plan")


def test_bench_threads_prints_both_sides_and_the_summary() -> None:
    lines = run_benchmark(
        "bench_threads.py", "--steps", "1", "--warmup", "0", "--repeat", "1", "--load", "0", "--threads", "1",
        "--patch", "8", "16", "16",
    )  # fmt: skip
    assert [line.get("side") for line in lines[:-1]] == ["baseline", "ours"]
    assert all(line["torch_threads"] == 1 for line in lines[:-1])
    summary = lines[-1]
    check_summary(summary, "bench_threads")
    assert summary["cpu_seconds_ours"] > 0 and summary["cpu_ratio"] > 0


def test_gala_recipe_prints_a_row_per_decoder_on_the_demo(tmp_path: Path) -> None:
    """The ablation runner on the demo config, trained for a few steps: validation choice,
    test scores and the test-optimum diagnostic per decoder, the decoder chosen on validation."""
    (summary,) = run_benchmark(
        "gala_recipe.py", "--row", "smoke", "--workdir", str(tmp_path), "--config", "config/config.yaml",
        "--set", "models.demo.max_steps=4", "--set", "models.demo.val_every_n_steps=2",
        "--set", "models.demo.max_minutes=0",
        "--set", "models.demo.targets=[{type: affinity}, {type: lsd, losses: [{name: mse}]}]",
    )  # fmt: skip
    assert summary["name"] == "gala_recipe" and summary["steps"] >= 3
    assert set(summary["decoders"]) == {"waterz", "mws"} and summary["chosen"] in summary["decoders"]
    for row in summary["decoders"].values():
        assert 0 <= row["test_best_arand"] <= row["test_arand"] + 0.01  # blockwise vs whole: float-level ties
        assert 0 <= row["val_arand"] <= 1
    # The threshold-transfer check reads that run: with tolerance 0 it re-chooses the runner's
    # decoder and threshold (its test score is a whole-volume decode, the runner's a blockwise one).
    *runs, transfer = run_benchmark(
        "gala_threshold_transfer.py", "--workdir", str(tmp_path), "--margin", "0.01", "--perturbed", "2"
    )
    exact = runs[0]["tolerance 0"]
    assert exact["decoder"] == summary["chosen"]
    assert exact["threshold"] == summary["decoders"][exact["decoder"]]["threshold"]
    assert 0 <= exact["test_arand"] <= 1 and len(runs[0]["tolerance 0.2"]["halves_arand"]) == 2
    assert transfer["name"] == "gala_threshold_transfer"
    assert set(transfer["rules"]) == {"tolerance 0", "tolerance 0.2", "margin 0.01"}
    margin = runs[0]["margin 0.01"]  # ties within 0.01 ARAND: never a lower threshold than the exact best
    assert margin["decoder"] == exact["decoder"] and margin["threshold"] >= exact["threshold"]
    perturbed = runs[0]["perturbed"]  # chosen on the perturbed validation curve: a threshold of its grid
    assert perturbed["threshold"] in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    assert 0 <= perturbed["val_mean_arand"] <= 1 and 0 <= perturbed["test_arand"] <= 1
    # An "ensemble" of the run with itself is the run: the same decoder and threshold as the
    # exact-best transfer check, and the same test score (both decode the whole volume).
    (pair, ensembles) = run_benchmark("gala_ensembles.py", "--workdir", str(tmp_path), "--workdir", str(tmp_path))
    assert (pair["chosen"], pair["threshold"]) == (exact["decoder"], exact["threshold"])
    assert pair["test_arand"] == pytest.approx(exact["test_arand"], abs=1e-9)
    assert ensembles["name"] == "gala_ensembles" and ensembles["subsets"] == 1
    # LSDs in agglomeration on the same run: one row per decoder and alpha; alpha 0 is the
    # pipeline's decoder, so its validation choice is the one the threshold-transfer check made
    # wherever both grids hold that threshold.
    *rows, lsd = run_benchmark("gala_lsd_agglomeration.py", "--workdir", str(tmp_path), "--alpha", "0", "1")
    assert lsd["name"] == "gala_lsd_agglomeration" and len(rows) == len(lsd["rows"]) == 4
    assert {(r["decoder"], r["alpha"]) for r in rows} == {(d, a) for d in ("waterz", "mws") for a in (0.0, 1.0)}
    assert lsd["chosen"] in lsd["rows"]
    plain = next(r for r in lsd["rows"] if r["decoder"] == exact["decoder"] and r["alpha"] == 0.0)
    if exact["threshold"] in load_benchmark("gala_run.py").THRESHOLDS:
        assert plain["threshold"] == exact["threshold"]
    for row in lsd["rows"]:
        assert 0 <= row["test_best_arand"] <= row["test_arand"] <= 1 and 0 <= row["val_arand"] <= 1
    # Image evidence on the same run: weight 0 is the pipeline's decoder again, so the plain
    # choice is the exact-best transfer check's (decoder, threshold and test score).
    (line, image) = run_benchmark("gala_image_evidence.py", "--workdir", str(tmp_path), "--weight", "0", "0.5")
    assert image["name"] == "gala_image_evidence" and image["runs"] == 1 and image["weights"] == [0.0, 0.5]
    assert {(r["decoder"], r["weight"]) for r in line["rows"]} == {(d, w) for d in ("waterz", "mws") for w in (0, 0.5)}
    assert (line["plain"]["decoder"], line["plain"]["threshold"]) == (exact["decoder"], exact["threshold"])
    assert line["plain"]["test_arand"] == pytest.approx(exact["test_arand"], abs=1e-9)
    assert line["chosen"]["val_arand"] == min(r["val_arand"] for r in line["rows"])


def test_lsd_penalty_lowers_each_contact_by_alpha_times_distance_and_clips_at_zero() -> None:
    """Hand-computed: edge (0, 1) has contacts 200, 100 and 10; edge (1, 2) one contact 255."""
    penalised = load_benchmark("gala_lsd_agglomeration.py").penalised
    u, v = np.array([0, 0, 0, 1]), np.array([1, 1, 1, 2])
    table = aggregate(u, v, np.array([200, 100, 10, 255], dtype=np.uint8), histogram=True)
    assert table.total.tolist() == [310, 255]
    same = penalised(table, np.array([0.3, 0.9]), 0.0)
    assert same.total.tolist() == [310, 255] and same.hist_bin.tolist() == table.hist_bin.tolist()
    # alpha 0.5, distances 0.2 and 0.9: shifts of round(0.1 * 255) = 26 and round(0.45 * 255) = 115 bins
    lowered = penalised(table, np.array([0.2, 0.9]), 0.5)
    assert sorted(lowered.hist_bin[lowered.hist_edge == 0].tolist()) == [0, 74, 174]  # 10 - 26 clips at 0
    assert lowered.total.tolist() == [174 + 74 + 0, 140] and lowered.count.tolist() == [3, 1]
    # Two contacts that clip onto bin 0 become one histogram row of count 2 (rows stay unique),
    # so waterz's median of the edge merged with another still counts both: nodes 0, 1, 2;
    # (1, 2) merges first (250), then (0, 1) penalised to [0, 0, 136] joins (0, 2) [130, 140]:
    # the median of [0, 0, 130, 136, 140] is 130 (with the two zeros counted once, 136).
    edges = aggregate(np.array([0, 0, 0, 1, 0, 0]), np.array([1, 1, 1, 2, 2, 2]),
                      np.array([10, 20, 200, 250, 130, 140], dtype=np.uint8), histogram=True)  # fmt: skip
    clipped = penalised(edges, np.array([0.5, 0.0, 0.0]), 0.5)  # shift round(0.25 * 255) = 64 on (0, 1)
    assert clipped.hist_bin[clipped.hist_edge == 0].tolist() == [0, 136]
    assert clipped.hist_count[clipped.hist_edge == 0].tolist() == [2, 1] and clipped.total[0] == 136
    graph = RegionGraph(np.ones(3, dtype=np.int64), clipped, empty_table())
    history = merge_history(graph, "aff50_his256")
    assert history.score.tolist() == [250 / 255, 130 / 255]
    mean_only = aggregate(u, v, np.array([200, 100, 10, 255], dtype=np.uint8), histogram=False)
    assert penalised(mean_only, np.array([0.2, 0.9]), 0.5).total.tolist() == [310 - 3 * 26, 140]
