"""Two processes train one model: the `accelerate launch` route the README gives for several devices, run on the CPU.

accelerate's own `--cpu --num_processes 2` starts several processes only through MPI (`mpirun`); without it, it
starts one. Its `--multi_gpu` launcher (torch.distributed.run) works on any machine: with no GPU visible, `train()`
asks the Trainer for the CPU, and the processes join one gloo group."""
import json
import math

from conftest import _free_port, run_cli


def _args(tiny_assets, tmp_path, run_name, batch_size):
    # Mean pooling at this learning rate learns the tiny data's rule within 10 epochs (see test_train_cli).
    return ["--run-name", run_name, "--backbone", str(tiny_assets["backbone"]), "--data-source", str(tiny_assets["data"]),
            "--max-length", "64", "--learning-rate", "3e-3", "--batch-size", str(batch_size), "--epochs", "10",
            "--pooling", "mean", "--report-to", "none", "--output-dir", str(tmp_path/"runs"),
            "--model-dir", str(tmp_path/"models")]


def test_two_cpu_processes_train_one_model(tiny_assets, tmp_path):
    cpu_only = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    two = run_cli([*launch, "-m", "boolq_nb.train", *_args(tiny_assets, tmp_path, "two", 8)], cwd=tmp_path, env=cpu_only)
    assert two.returncode == 0, two.stderr[-3000:]
    # The same global batch (2 x 8) in one process.
    one = run_cli(["-m", "boolq_nb.train", *_args(tiny_assets, tmp_path, "one", 16)], cwd=tmp_path, env=cpu_only)
    assert one.returncode == 0, one.stderr[-3000:]

    summaries = [line for line in two.stdout.splitlines() if line.startswith('{"run_name"')]
    assert len(summaries) == 1, two.stdout[-3000:]  # one process reports (and writes)
    metrics = {name: json.loads((tmp_path/"runs"/name/"metrics.json").read_text()) for name in ("one", "two")}
    assert metrics["two"]["environment"]["processes"] == 2 and metrics["one"]["environment"]["processes"] == 1
    # One training, not two: each step consumed a global batch of 16, so the step count equals the single process's.
    steps = 10 * math.ceil(metrics["two"]["n_train"] / 16)
    assert metrics["two"]["global_step"] == metrics["one"]["global_step"] == steps
    assert metrics["two"]["n_eval"] == metrics["one"]["n_eval"] == 48  # gathered predictions: every dev example once
    predictions = (tmp_path/"runs"/"two"/"predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in predictions] == list(range(48))
    assert (tmp_path/"models"/"two"/"model"/"boolq_nb.json").is_file()
    assert sorted(p.name for p in (tmp_path/"models"/"two"/"checkpoints").iterdir() if p.is_file()) == ["train_config.json"]
    # Both learn the rule; their accuracies differ by no more than the different batch composition explains
    # (the processes draw their halves of each batch from their own shards): here at most 5 of 48 answers.
    for m in metrics.values():
        assert m["accuracy"] > m["majority_baseline"] + 0.1, m
    assert abs(metrics["two"]["accuracy"] - metrics["one"]["accuracy"]) <= 5 / 48

