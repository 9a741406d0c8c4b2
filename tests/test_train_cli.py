"""boolq-train from the command line: parameter files, bad input, and resuming a killed run."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, run_cli


def _tiny_args(tiny_assets, tmp_path, run_name, epochs):
    return ["-m", "boolq_nb.train", "--run-name", run_name, "--backbone", str(tiny_assets["backbone"]),
            "--data-source", str(tiny_assets["data"]), "--max-length", "64", "--learning-rate", "3e-3",
            "--batch-size", "8", "--epochs", str(epochs), "--report-to", "none",
            "--output-dir", str(tmp_path/"runs"), "--model-dir", str(tmp_path/"models")]


def test_bad_parameter_file_is_named(tmp_path):
    bad = tmp_path/"bad.yaml"
    bad.write_text("learnig_rate: 1e-5\n")
    proc = run_cli(["-m", "boolq_nb.train", "-f", str(bad)], cwd=tmp_path)
    assert proc.returncode != 0
    assert "bad.yaml: unknown parameter(s) ['learnig_rate']" in proc.stderr


def test_bad_value_is_named(tmp_path):
    proc = run_cli(["-m", "boolq_nb.train", "--learning-rate", "fast"], cwd=tmp_path)
    assert proc.returncode == 2 and "parameter 'learning_rate' must be float" in proc.stderr


def test_bad_data_names_file_and_line(tmp_path, tiny_assets):
    data = tmp_path/"data"
    data.mkdir()
    (data/"train.jsonl").write_text((tiny_assets["data"]/"train.jsonl").read_text() + '{"question": "q"}\n')
    (data/"dev.jsonl").write_text((tiny_assets["data"]/"dev.jsonl").read_text())
    args = _tiny_args(tiny_assets, tmp_path, "bad-data", 1)
    args[args.index("--data-source") + 1] = str(data)
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "train.jsonl:129: field 'passage' is missing" in proc.stderr
    assert not (tmp_path/"runs"/"bad-data"/"metrics.json").exists()


def test_killed_run_resumes_to_the_same_final_step(tiny_assets, tmp_path):
    epochs, steps_per_epoch = 12, 128 // 8
    args = [*_tiny_args(tiny_assets, tmp_path, "resumable", epochs), "--dev-curve"]
    checkpoints = tmp_path/"models"/"resumable"/"checkpoints"
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        # Kill hard once a checkpoint with its trainer state is complete, i.e. mid-run.
        while time.time() < deadline and not any(checkpoints.glob("checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "training ended before it could be interrupted"
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None, "training ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (tmp_path/"runs"/"resumable"/"metrics.json").exists()
    def complete(checkpoint):
        try:
            return bool(json.loads((checkpoint/"trainer_state.json").read_text()))
        except (OSError, ValueError):
            return False  # killed while this one was being written: resuming must skip it
    killed_at = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*") if complete(p))
    assert killed_at < epochs * steps_per_epoch

    resumed = run_cli(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((tmp_path/"runs"/"resumable"/"metrics.json").read_text())
    assert metrics["resumed_from"].endswith(f"checkpoint-{killed_at}")
    assert metrics["global_step"] == epochs * steps_per_epoch
    # The dev curve survives the kill: the epochs before the checkpoint were kept beside it, each epoch once.
    assert [row["epoch"] for row in metrics["dev_curve"]] == [float(e) for e in range(1, epochs + 1)]

    # Resuming the same run name with different settings is refused rather than mixing two experiments.
    changed = args + ["--seed", "7"]
    proc = run_cli(changed, cwd=tmp_path)
    assert proc.returncode != 0 and "seed" in proc.stderr and "differ" in proc.stderr


@pytest.mark.parametrize("architecture", ["backbone", "bert"])
def test_mean_pooling_trains_saves_and_answers_the_same_on_every_backend(tiny_assets, tmp_path, architecture):
    "RoBERTa has one segment; BERT (like the bundled MiniLM) passes segment ids, which training must use too."
    from boolq_nb.data import load_boolq
    from boolq_nb.onnx import load_model
    args = _tiny_args(tiny_assets, tmp_path, "mean", 6)
    args[args.index("--backbone") + 1] = str(tiny_assets[architecture])
    proc = run_cli([*args, "--pooling", "mean", "--precision", "fp32"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path/"runs"/"mean"/"metrics.json").read_text())
    assert metrics["parameters"]["pooling"] == "mean"
    if architecture == "backbone":  # the tiny RoBERTa learns the synthetic rule in 6 epochs; the tiny BERT does not
        assert metrics["accuracy"] > metrics["majority_baseline"] + 0.1, metrics  # the new head learns, not just runs
    model_dir = tmp_path/"models"/"mean"/"model"
    assert json.loads((model_dir/"boolq_nb.json").read_text())["pooling"] == "mean"
    validation = load_boolq(str(tiny_assets["data"]))["validation"]
    recorded = [json.loads(line)["probability_yes_calibrated"]  # as the saved model answers, with its temperature
                for line in (tmp_path/"runs"/"mean"/"predictions.jsonl").read_text().splitlines()]
    for backend in ("torch", "onnx"):
        model = load_model(model_dir, backend=backend)
        assert model.pooling == "mean"
        probabilities, _ = model.predict_proba(validation["question"], validation["passage"], validation["title"])
        np.testing.assert_allclose(probabilities, recorded, atol=1e-4 if backend == "torch" else 1e-3, err_msg=backend)


def test_bfloat16_training_learns_and_answers_the_same_in_float32_and_onnx(tiny_assets, tmp_path):
    """precision bf16 on any CPU (emulated where it is not native: slower, the same numbers): the tiny model learns,
    and its float32 and ONNX answers (master weights are float32) are within bfloat16's rounding of the recorded ones."""
    from boolq_nb.data import load_boolq
    from boolq_nb.model import YesNoModel
    from boolq_nb.onnx import load_model
    args = _tiny_args(tiny_assets, tmp_path, "bf16", 6)
    proc = run_cli([*args, "--precision", "bf16", "--attention-dropout", "0", "--pooling", "mean",
                    "--progress-seconds", "0.2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step " in proc.stdout and "held-out slice accuracy" in proc.stdout, "progress lines"
    metrics = json.loads((tmp_path/"runs"/"bf16"/"metrics.json").read_text())
    assert metrics["precision"] == "bf16" and "native_bf16" in metrics["environment"]["cpu"]
    assert metrics["accuracy"] > metrics["majority_baseline"] + 0.1, metrics
    model_dir = tmp_path/"models"/"bf16"/"model"
    validation = load_boolq(str(tiny_assets["data"]))["validation"]
    recorded = np.array([json.loads(line)["probability_yes_calibrated"]
                         for line in (tmp_path/"runs"/"bf16"/"predictions.jsonl").read_text().splitlines()])
    inputs = (validation["question"], validation["passage"], validation["title"])
    in_bf16 = YesNoModel.load(model_dir, precision="bf16").predict_proba(*inputs)[0]
    np.testing.assert_allclose(in_bf16, recorded, atol=0.02)  # other batches: other roundings
    for model in (YesNoModel.load(model_dir, precision="fp32"), load_model(model_dir, backend="onnx")):
        probabilities = model.predict_proba(*inputs)[0]
        np.testing.assert_allclose(probabilities, recorded, atol=0.05, err_msg=type(model).__name__)
        assert np.mean((probabilities >= 0.5) == (recorded >= 0.5)) >= 0.95


def test_question_edits_add_flipped_questions_to_train_only(tiny_assets, tmp_path):
    "--question-edits trains on the originals plus each safely edited question with its answer flipped; dev unchanged."
    from boolq_nb.edits import question_edit
    data = tmp_path/"data"
    data.mkdir()
    extra = [{"question": q, "passage": "It is cold in winter and there is a sequel.", "title": "t", "answer": True}
             for q in ("is it cold in winter", "is there a sequel to the film", "do you need a visa to visit")]
    (data/"train.jsonl").write_text((tiny_assets["data"]/"train.jsonl").read_text() +
                                    "".join(json.dumps(r) + "\n" for r in extra))
    (data/"dev.jsonl").write_text((tiny_assets["data"]/"dev.jsonl").read_text())
    originals = [json.loads(line) for line in (data/"train.jsonl").read_text().splitlines()]
    n_edits = sum(question_edit(r["question"], r["answer"]) is not None for r in originals)
    assert n_edits >= 3
    reports = {}
    for name, flag in (("plain", "--no-question-edits"), ("edited", "--question-edits")):
        args = _tiny_args(tiny_assets, tmp_path, name, 1)
        args[args.index("--data-source") + 1] = str(data)
        proc = run_cli([*args, flag, "--selection", "dev"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports[name] = json.loads((tmp_path/"runs"/name/"metrics.json").read_text())
    assert reports["edited"]["n_train"] == reports["plain"]["n_train"] + n_edits
    assert reports["edited"]["n_eval"] == reports["plain"]["n_eval"]
    assert reports["edited"]["parameters"]["question_edits"] is True
