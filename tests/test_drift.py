"""boolq-drift from the command line: fit on a reference file, test incoming batches, reuse a saved monitor, bad input."""
import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def drift_files(tiny_assets, tmp_path_factory):
    "A tiny model folder, and an incoming file of Python-docstring pairs (another domain)."
    from boolq_nb.drift import other_domain_pairs
    from boolq_nb.model import YesNoModel
    base = tmp_path_factory.mktemp("drift")
    model_dir = YesNoModel.from_backbone(str(tiny_assets["backbone"]), max_length=128, device="cpu").save(base/"model")
    docs = other_domain_pairs(40, seed=0)
    other = base/"other_domain.jsonl"
    other.write_text("".join(json.dumps({"question": q, "passage": p}) + "\n"
                             for q, p in zip(docs["question"], docs["passage"])))
    return {"model": model_dir, "other": other, "train": tiny_assets["data"]/"train.jsonl",
            "dev": tiny_assets["data"]/"dev.jsonl", "base": base}


def _drift(args, cwd):
    proc = run_cli(["-m", "boolq_nb.drift", *map(str, args)], cwd=cwd)
    return proc, (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode in (0, 1) else None)


def test_same_distribution_passes_shift_is_flagged_and_monitor_round_trips(drift_files, tmp_path):
    same, report = _drift([drift_files["train"], drift_files["dev"], "--model", drift_files["model"],
                           "--batch-size", "24", "--fail-on-drift"], tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    assert [b["n"] for b in report["batches"]] == [24, 24]
    assert all(not b["drift"] and b["p_value"] > 0.05 for b in report["batches"]), report

    shifted, fitted = _drift([drift_files["train"], drift_files["other"], "--model", drift_files["model"],
                              "--batch-size", "20", "--save-monitor", "--fail-on-drift"], tmp_path)
    assert shifted.returncode == 1, shifted.stderr[-2000:]
    assert fitted["drift_batches"] == 2 and all(b["p_value"] < 0.01 for b in fitted["batches"]), fitted
    assert sorted(p.name for p in (drift_files["model"]/"drift").iterdir()) == ["monitor.json", "reference.npz"]

    reloaded, loaded = _drift([drift_files["other"], "--monitor", drift_files["model"]/"drift", "--batch-size", "20"],
                              tmp_path)
    assert reloaded.returncode == 0, reloaded.stderr[-2000:]
    assert loaded["batches"] == fitted["batches"]


def test_bad_input_is_named(drift_files, tmp_path, tiny_assets):
    from boolq_nb.drift import DriftMonitor, read_pairs_jsonl
    from boolq_nb.model import YesNoModel
    # A monitor saved next to one model, used with another (same backbone, other weights and max_length).
    model = YesNoModel.load(drift_files["model"], device="cpu")
    reference = read_pairs_jsonl(drift_files["train"])
    monitor_dir = DriftMonitor(model).fit(reference["question"][:40], reference["passage"][:40]).save(tmp_path/"drift")
    other_model = YesNoModel.from_backbone(str(tiny_assets["backbone"]), max_length=96, device="cpu").save(
        tmp_path/"other-model")
    mismatch, _ = _drift([drift_files["dev"], "--monitor", monitor_dir, "--model", other_model], tmp_path)
    assert mismatch.returncode == 2 and "fitted for another model" in mismatch.stderr, mismatch.stderr[-2000:]

    bad = tmp_path/"incoming.jsonl"
    bad.write_text('{"question": "is it", "passage": "it is"}\n{"question": "is it", "passage": 3}\n')
    proc, _ = _drift([drift_files["train"], bad, "--model", drift_files["model"]], tmp_path)
    assert proc.returncode == 2 and "incoming.jsonl:2: field 'passage' must be a string" in proc.stderr, proc.stderr
