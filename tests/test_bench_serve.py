"""bench/serve.py's soak, end to end on the tiny model: every good answer checked, every malformed request a 4xx, the
server's memory sampled over time and judged on the soak's second half (the benchmark itself runs by hand)."""
import json
import sys

import numpy as np

from conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT/"bench"))
from serve import memory_verdict  # noqa: E402


def test_memory_verdict_judges_the_second_half():
    warming_then_flat = [[0, 800.0], [10, 950.0], [20, 1000.0], [30, 1001.0], [40, 1002.0]]
    verdict = memory_verdict(warming_then_flat)
    assert (verdict["rss_mb_mid"], verdict["rss_growth_last_half_mb"], verdict["memory_flat"]) == (1000.0, 2.0, True)
    leaking = [[0, 800.0], [10, 900.0], [20, 1000.0], [30, 1100.0], [40, 1200.0]]
    assert memory_verdict(leaking)["memory_flat"] is False


def test_soak_only_on_the_tiny_model(served_model, tmp_path):
    _, model_dir = served_model
    out = tmp_path/"soak.json"
    proc = run_cli([str(ROOT/"bench"/"serve.py"), "--model-dir", str(model_dir), "--soak-only", "--soak-seconds", "4",
                    "--soak-warmup", "1", "--seconds", "1", "--pairs", "32", "--server-env", "MALLOC_ARENA_MAX=2",
                    "--out", str(out)], cwd=ROOT, timeout=600, env={"BOOLQ_DATA_DIR": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    soak = results["soak"]
    assert results["server_env"] == {"MALLOC_ARENA_MAX": "2"}
    assert soak["good"] > 0 and soak["good_correct"] + soak["good_503"] == soak["good"], soak
    assert soak["bad"] > 0 and soak["bad_4xx"] == soak["bad"], soak
    assert soak["5xx_not_503"] == soak["connection_errors"] == 0, soak
    assert len(soak["rss_mb_samples"]) >= 2 and all(mb > 0 for _, mb in soak["rss_mb_samples"]), soak
    assert isinstance(soak["memory_flat"], bool)


def test_server_env_must_be_name_equals_value(served_model, tmp_path):
    _, model_dir = served_model
    proc = run_cli([str(ROOT/"bench"/"serve.py"), "--model-dir", str(model_dir), "--soak-only", "--server-env", "NOEQUALS",
                    "--out", str(tmp_path/"x.json")], cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "--server-env 'NOEQUALS': expected NAME=VALUE" in proc.stderr, proc.stderr
    assert not (tmp_path/"x.json").exists()


def test_batch_dependence_on_the_tiny_model(served_model, tiny_assets, tmp_path):
    "Every variant answers an item the same alone and in a batch (ONNX Runtime one item per pass); whole batches measured."
    _, model_dir = served_model
    out = tmp_path/"dependence.json"
    proc = run_cli([str(ROOT/"bench"/"int8_batch_dependence.py"), "--model-dir", str(model_dir), "--data",
                    str(tiny_assets["data"]/"dev.jsonl"), "--examples", "24", "--batch-size", "8", "--rounds", "2",
                    "--out", str(out)],
                   cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["examples"] == 24
    assert set(results["backends"]) == {"torch", "onnx", "onnx-int8", "onnx-in-turn", "onnx-int8-in-turn",
                                        "onnx-whole-batches", "onnx-int8-whole-batches", "onnx-int8-per-matrix",
                                        "onnx-int8-sdpa-attention"}
    assert set(results["variants"]) == set(results["backends"])
    for backend in ("torch", "onnx-whole-batches"):
        assert results["backends"][backend]["max_change"] < 1e-4, results["backends"][backend]
        assert results["backends"][backend]["answers_flipped"] == 0
    for backend in ("onnx", "onnx-int8", "onnx-in-turn", "onnx-int8-in-turn", "onnx-int8-per-matrix",
                    "onnx-int8-sdpa-attention"):
        assert results["backends"][backend]["max_change"] == 0, (backend, results["backends"][backend])  # one item per pass
    # The comparison exports went to a temporary folder: the model's own ONNX folder holds only what load_model serves.
    assert not list((model_dir/"onnx").glob("*per-matrix*")) and not list((model_dir/"onnx").glob("*sdpa*"))
    assert 0 <= results["backends"]["onnx-int8-whole-batches"]["flipped_share"] <= 1
    assert all(r["alone_examples_per_s"] > 0 and r["batched_examples_per_s"] > 0 for r in results["backends"].values())
    for r in results["backends"].values():  # timed in two rounds; the figure is their median
        assert len(r["rounds"]) == 2
        assert r["batched_examples_per_s"] == float(np.median([x["batched_examples_per_s"] for x in r["rounds"]]))


def test_batch_dependence_names_a_missing_file(served_model, tmp_path):
    _, model_dir = served_model
    proc = run_cli([str(ROOT/"bench"/"int8_batch_dependence.py"), "--model-dir", str(model_dir), "--data",
                    str(tmp_path/"nope.jsonl"), "--out", str(tmp_path/"x.json")], cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "nope.jsonl" in proc.stderr and "no such file" in proc.stderr, proc.stderr
    assert not (tmp_path/"x.json").exists()


def test_settings_then_interleaved_rounds_on_the_tiny_model(served_model, tmp_path):
    "Every setting on the naive server and one backend, then the target settings in rounds taking turns."
    _, model_dir = served_model
    out = tmp_path/"serve.json"
    proc = run_cli([str(ROOT/"bench"/"serve.py"), "--model-dir", str(model_dir), "--backends", "torch",
                    "--seconds", "0.5", "--warmup", "0.2", "--rounds", "2", "--soak-seconds", "0", "--pairs", "32",
                    "--out", str(out)], cwd=ROOT, timeout=600, env={"BOOLQ_DATA_DIR": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    servers = {(r["server"], r["concurrency"], r["items_per_request"]) for r in results["settings"]}
    for server in ("naive", "torch"):
        assert {(server, c, 1) for c in (1, 4, 16, 64)} | {(server, c, 16) for c in (1, 4)} <= servers, servers
    rounds = results["rounds"]
    assert (rounds["backend"], rounds["rounds"]) == ("torch", 2)
    assert [r["concurrency"] for r in rounds["settings"]] == [1, 16]
    for r in rounds["settings"]:
        assert all(len(r[k]) == 2 for k in ("naive_items_per_s", "backend_items_per_s", "speedup_vs_naive")), r
        assert all(status == "200" for statuses in r["backend_statuses"] for status in statuses), r
        assert r["speedup_vs_naive"] == [round(b / a, 3) for a, b in zip(r["naive_items_per_s"], r["backend_items_per_s"])]
        assert r["median_speedup_vs_naive"] == round(float(np.median(r["speedup_vs_naive"])), 3)
    c16 = rounds["settings"][1]
    targets = results["targets"]
    assert targets["rounds_c16_median_speedup_vs_naive"] == c16["median_speedup_vs_naive"]
    assert targets["rounds_c16_at_least_2x_naive_median"] == (c16["median_speedup_vs_naive"] >= 2.0)
    assert targets["rounds_c16_at_least_2x_naive_every_round"] == (min(c16["speedup_vs_naive"]) >= 2.0)
    # the summary printed at the end: serving_table's line for the rounds
    assert "Interleaved rounds (torch and the naive server taking turns, single items, 2 rounds of 0.5 s)" in proc.stdout
