"""The main job end to end: papermill executes nbs/03_train.ipynb with parameters, as a user does."""
import json
from dataclasses import fields

import papermill as pm
import pytest

from boolq_nb.train import TrainConfig
from conftest import ROOT


def test_parameters_cell_matches_train_config():
    "The papermill parameters, TrainConfig and boolq-train's flags are one list of names."
    params = pm.inspect_notebook(str(ROOT/"nbs"/"03_train.ipynb"))
    assert set(params) == {f.name for f in fields(TrainConfig)}


def test_parameter_defaults_match_train_config():
    "Running the notebook without parameters and calling train() with no arguments mean the same run."
    import ast
    params = pm.inspect_notebook(str(ROOT/"nbs"/"03_train.ipynb"))
    for f in fields(TrainConfig):
        assert ast.literal_eval(params[f.name]["default"]) == f.default, f.name


def test_parameter_explanations_are_the_field_comments():
    "The parameters cell's comment on each parameter is the TrainConfig field's comment, which --help prints."
    from fastcore.docments import docments
    params, explained = pm.inspect_notebook(str(ROOT/"nbs"/"03_train.ipynb")), docments(TrainConfig)
    for f in fields(TrainConfig):
        assert params[f.name]["help"] == explained[f.name], f.name


def test_config_files_are_valid():
    from boolq_nb.train import load_param_file
    files = sorted(f for f in (ROOT/"configs").rglob("*.yaml") if not f.name.startswith("tune-"))  # tune-*: 04_tune
    assert {f.stem for f in files} >= {"quickstart", "minilm", "mpnet", "roberta-base", "roberta-large"}
    for f in files:
        config = TrainConfig(**load_param_file(f))
        assert config.run_name == f.stem, f"{f}: run_name should be the file's name"


def test_papermill_round_trip(tiny_assets, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path/"pm-tiny.ipynb"
    pm.execute_notebook(
        str(ROOT/"nbs"/"03_train.ipynb"), str(out), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
        parameters=dict(run_name="pm-tiny", backbone=str(tiny_assets["backbone"]), data_source=str(tiny_assets["data"]),
                        max_length=64, learning_rate=3e-3, batch_size=8, epochs=6.0, report_to="wandb",
                        output_dir=str(tmp_path/"runs"), model_dir=str(tmp_path/"models")))
    metrics = json.loads((tmp_path/"runs"/"pm-tiny"/"metrics.json").read_text())
    # 5 % of the 128 training examples held out (stratified) to choose the epoch; dev evaluated once
    assert metrics["n_train"] + metrics["protocol"]["n_selection"] == 128 and metrics["n_eval"] == 48
    assert metrics["protocol"]["selection"] == "holdout" and metrics["protocol"]["validation_evaluations"] == 1
    assert metrics["accuracy"] > metrics["majority_baseline"], metrics
    for key in ("f1", "majority_baseline", "per_class", "wall_time_s", "train_examples_per_s", "parameters"):
        assert key in metrics
    assert metrics["parameters"]["learning_rate"] == 3e-3
    # wandb ran in offline mode under the run's name
    offline_runs = list((tmp_path/"wandb").glob("offline-run-*"))
    assert offline_runs, "expected a wandb offline run"
    executed = json.loads(out.read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    assert (tmp_path/"models"/"pm-tiny"/"model"/"boolq_nb.json").is_file()


def test_tune_notebook_under_papermill_with_the_mean_head(tiny_assets, tmp_path):
    """04_tune executed as the reported studies are (papermill, a non-default head, a held-out-scored study): every
    cell passes. Its checks once assumed the default head and re-ran the study inside a test under papermill."""
    import optuna
    out = tmp_path/"tune-tiny.ipynb"
    pm.execute_notebook(
        str(ROOT/"nbs"/"04_tune.ipynb"), str(out), cwd=str(tmp_path), kernel_name="python3", progress_bar=False,
        parameters=dict(study_name="tune-tiny", backbone=str(tiny_assets["backbone"]), data_source=str(tiny_assets["data"]),
                        max_length=64, pooling="mean", attention_dropout=0.0, n_trials=3, learning_rate_min=5e-5,
                        learning_rate_max=1e-2, batch_sizes="16", epochs_min=1, epochs_max=3, pruner_startup_trials=1,
                        layerwise_lr_decays="1.0,0.8", report_to="none", output_dir=str(tmp_path/"runs"),
                        model_dir=str(tmp_path/"models")))
    summary = json.loads((tmp_path/"runs"/"tune-tiny"/"summary.json").read_text())
    assert summary["n_trials"] == 3 and summary["settings"]["pooling"] == "mean", summary
    study = optuna.load_study(study_name="tune-tiny", storage=summary["storage"])
    assert len(study.trials) == 3  # nothing trained beyond the study's trials
    assert study.user_attrs["settings"]["pooling"] == "mean"
