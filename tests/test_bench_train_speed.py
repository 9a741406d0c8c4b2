"""bench/train_speed.py end to end on the tiny model and data: every path timed, the default path read from --config
and the report written (the benchmark itself runs by hand on the real model; its ratios are never asserted)."""
import json
import os

import numpy as np

from conftest import ROOT, run_cli


def test_train_speed_on_the_tiny_model(tiny_assets, tmp_path):
    config = tmp_path/"recipe.yaml"
    config.write_text("attention_dropout: 0.0\npooling: mean\nfast_dropout: true\n"
                      "learning_rate: 1.0e-4  # not a speed setting: ignored\n")
    out = tmp_path/"speed.json"
    proc = run_cli([str(ROOT/"bench"/"train_speed.py"), "--backbone", str(tiny_assets["backbone"]),
                    "--data-source", str(tiny_assets["data"]), "--train-examples", "40", "--batch-size", "4", "--max-length", "64",
                    "--eval-examples", "8", "--config", str(config), "--rounds", "2", "--out", str(out)], cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["default_config"] == os.path.relpath(config, ROOT)
    # one length-grouping megabatch of the examples drawn from: 40 // (4 * 4) = 2 batches of 4
    assert (report["train_examples"], report["steps"], report["megabatch_examples"]) == (40, 2, 8), report
    assert report["default_path"] == "default (recipe.yaml): attention_dropout 0.0, pooling mean, fast_dropout"
    names = [run["name"] for run in report["runs"]]
    from boolq_nb.model import native_bf16
    # where the CPU computes bfloat16 natively, the default path under bfloat16 autocast is a fifth run
    assert report["bf16_native"] == native_bf16() and "native_bf16" in report["cpu"]
    assert len(names) == 4 + report["bf16_native"] and names[0].startswith("baseline") and names[1].startswith("project")
    if report["bf16_native"]:
        assert names[4] == report["bf16_path"] == f"{report['default_path']}, bfloat16 autocast"
        assert report["bf16_speedup_over_default"] == round(report["bf16_examples_per_s"] / report["default_examples_per_s"], 2)
        assert report["bf16_useful_share_of_bf16_peak"] == round(report["bf16_useful_gflops"] / report["bf16_peak_gflops"], 3)
        assert all("bf16_gflops_by_size" in m for m in report["peak_measurements"])
    assert names[2] == report["default_path"]
    # fast_dropout set: the same path with PyTorch's own dropout masks is timed too, for the masks' own speed-up
    assert names[3] == "default (recipe.yaml): attention_dropout 0.0, pooling mean, PyTorch's dropout masks"
    assert all(run["examples"] == 8 and run["examples_per_s"] > 0 for run in report["runs"]), report["runs"]
    assert report["default_examples_per_s"] == report["runs"][2]["examples_per_s"]
    assert report["evaluation"]["yes_no_model_examples_per_s"] > 0
    # two more rounds of the default path, each against the peak measured just before and just after it
    rounds = report["default_rounds"]["rounds"]
    assert [r["name"] for r in rounds] == [f"{report['default_path']}, round {i}" for i in (1, 2)]
    whens = [m["when"] for m in report["peak_measurements"]]
    assert whens[-4:] == ["before round 1", "after round 1", "after round 2", "after the runs"], whens
    for r, (before, after) in zip(rounds, [(-4, -3), (-3, -2)]):
        around = max(*report["peak_measurements"][before]["gflops_by_size"].values(),
                     *report["peak_measurements"][after]["gflops_by_size"].values())
        assert r["peak_gflops_around"] == around and r["useful_share_of_peak_around"] == round(r["useful_gflops"] / around, 3)
    assert report["default_rounds"]["median_useful_share_of_peak_around"] == round(
        float(np.median([r["useful_share_of_peak_around"] for r in rounds])), 3)


def test_flops_count_the_head_once_per_sequence(tiny_assets):
    "Encoder layers' weights act on every token; the pooler and the head on one vector per sequence."
    import sys
    sys.path.insert(0, str(ROOT/"bench"))
    from train_speed import flops_per_example
    from boolq_nb.model import load_backbone
    model, _ = load_backbone(str(tiny_assets["backbone"]))
    cfg = model.config
    params = dict(model.named_parameters())
    per_token = sum(p.numel() for name, p in params.items() if ".layer." in name)
    head = sum(p.numel() for name, p in params.items() if "embeddings" not in name and ".layer." not in name)
    assert per_token > 0 and head > 0 and any(name.startswith("classifier.") for name in params)
    for length in (1, 17):
        attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * length ** 2
        assert flops_per_example(model, length) == 3 * (2 * per_token * length + 2 * head + attention)
