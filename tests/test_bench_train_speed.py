"""bench/train_speed.py end to end on the tiny model and data: every path timed, the default path read from --config
and the report written (the benchmark itself runs by hand on the real model; its ratios are never asserted)."""
import json
import os

from conftest import ROOT, run_cli


def test_train_speed_on_the_tiny_model(tiny_assets, tmp_path):
    config = tmp_path/"recipe.yaml"
    config.write_text("attention_dropout: 0.0\npooling: mean\nfast_dropout: true\n"
                      "learning_rate: 1.0e-4  # not a speed setting: ignored\n")
    out = tmp_path/"speed.json"
    proc = run_cli([str(ROOT/"bench"/"train_speed.py"), "--backbone", str(tiny_assets["backbone"]),
                    "--data-source", str(tiny_assets["data"]), "--steps", "2", "--batch-size", "4", "--max-length", "64",
                    "--eval-examples", "8", "--config", str(config), "--out", str(out)], cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["default_config"] == os.path.relpath(config, ROOT)
    assert report["default_path"] == "default (recipe.yaml): attention_dropout 0.0, pooling mean, fast_dropout"
    names = [run["name"] for run in report["runs"]]
    assert len(names) == 4 and names[0].startswith("baseline") and names[1].startswith("project"), names
    assert names[2] == report["default_path"]
    # fast_dropout set: the same path with PyTorch's own dropout masks is timed too, for the masks' own speed-up
    assert names[3] == "default (recipe.yaml): attention_dropout 0.0, pooling mean, PyTorch's dropout masks"
    assert all(run["examples"] == 8 and run["examples_per_s"] > 0 for run in report["runs"]), report["runs"]
    assert report["default_examples_per_s"] == report["runs"][2]["examples_per_s"]
    assert report["evaluation"]["yes_no_model_examples_per_s"] > 0
