"""bench/quickstart_time.py: one measurement per kind of CPU and precision, recorded from a finished run's metrics.json
(the timed quickstart itself runs by hand), and the README sentence made of it."""
import json
import sys

from conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT/"bench"))
from quickstart_time import measurement, merge  # noqa: E402


def _metrics(precision="fp32", cpu="AMD EPYC", capability="AVX2", accuracy=0.70, wall=1800.0):
    return {"precision": precision, "n_train": 8955, "epochs_run": 2.0, "accuracy": accuracy, "wall_time_s": wall,
            "train_time_s": wall - 60, "train_examples_per_s": 12.0, "finished_at": "2026-12-06T22:00:00Z",
            "environment": {"torch_threads": 2, "torch": "2.13.0+cpu",
                            "cpu": {"name": cpu, "capability": capability, "native_bf16": precision == "bf16",
                                    "bf16_instructions": ["avx512_bf16"] if precision == "bf16" else []}}}


def test_measurement_keeps_what_decides_the_time():
    m = measurement(_metrics(), "the README's first command")
    assert (m["cpu"], m["capability"], m["native_bf16"], m["threads"], m["precision"]) == ("AMD EPYC", "AVX2", False, 2, "fp32")
    assert (m["wall_time_s"], m["accuracy"], m["papermill_wall_s"]) == (1800.0, 0.70, None)


def test_merge_replaces_only_the_same_machine_and_precision():
    old = [measurement(_metrics(), "a"), measurement(_metrics("bf16", "Intel Xeon", "AVX512"), "b")]
    new = measurement(_metrics(accuracy=0.71), "c")
    merged = merge(old, new)
    assert [(m["cpu"], m["source"]) for m in merged] == [("Intel Xeon", "b"), ("AMD EPYC", "c")]
    assert len(merge(merged, measurement(_metrics(capability="AVX512"), "d"))) == 3  # another instruction set: kept apart


def test_records_a_finished_run(tmp_path):
    run = tmp_path/"quickstart"
    run.mkdir()
    (run/"metrics.json").write_text(json.dumps(_metrics()))
    out = tmp_path/"quickstart_time.json"
    for _ in range(2):  # a second record of the same machine replaces the first
        proc = run_cli([str(ROOT/"bench"/"quickstart_time.py"), "--run", str(run), "--out", str(out)], cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
    recorded = json.loads(out.read_text())
    assert recorded["config"] == "configs/quickstart.yaml" and len(recorded["measurements"]) == 1
    assert "AMD EPYC (AVX2, 2 threads), fp32: 30.0 min" in proc.stdout


def test_a_folder_without_metrics_is_named(tmp_path):
    proc = run_cli([str(ROOT/"bench"/"quickstart_time.py"), "--run", str(tmp_path), "--out", str(tmp_path/"x.json")],
                   cwd=ROOT)
    assert proc.returncode == 2 and f"{tmp_path}/metrics.json: no metrics.json" in proc.stderr
    assert not (tmp_path/"x.json").exists()


def test_a_rerun_is_compared_with_the_reported_run(tmp_path):
    "A rerun's answers are set against runs/quickstart's; the reported run itself is compared with nothing."
    from quickstart_time import against_reported
    run = tmp_path/"quickstart"
    run.mkdir()
    (run/"predictions.jsonl").write_text((ROOT/"runs"/"quickstart"/"predictions.jsonl").read_text())
    assert against_reported(run) == {"answers_same": 1.0, "largest_probability_difference": 0.0}
    assert against_reported(ROOT/"runs"/"quickstart") is None
