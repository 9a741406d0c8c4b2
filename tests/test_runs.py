"""A reported run is a result only if its notebook ran without an error and its figures follow from its predictions."""
import json
import math

import pytest

from conftest import ROOT

RUN_NOTEBOOKS = sorted((ROOT/"runs").glob("*.ipynb"))
RUNS_WITH_PREDICTIONS = sorted(p.parent for p in (ROOT/"runs").glob("*/metrics.json")
                               if (p.parent/"predictions.jsonl").exists() or "n_eval" in json.loads(p.read_text()))


def notebook_errors(path) -> list[str]:
    "Each error output of the executed notebook at `path`, as 'cell N: ErrorName: message'."
    notebook = json.loads(path.read_text())
    return [f"cell {i}: {out.get('ename')}: {str(out.get('evalue'))[:200]}"
            for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def test_there_are_reported_runs():
    assert RUN_NOTEBOOKS and RUNS_WITH_PREDICTIONS


@pytest.mark.parametrize("notebook", RUN_NOTEBOOKS, ids=lambda p: p.name)
def test_run_notebook_has_no_error(notebook):
    assert notebook_errors(notebook) == [], f"{notebook.relative_to(ROOT)} holds an error: it is not a result"
    papermill = json.loads(notebook.read_text())["metadata"].get("papermill", {})
    assert not papermill.get("exception"), f"{notebook.relative_to(ROOT)}: papermill recorded an exception"


@pytest.mark.parametrize("run", RUNS_WITH_PREDICTIONS, ids=lambda p: p.name)
def test_metrics_follow_from_predictions(run):
    "Accuracy, n_eval and the share of 'yes' answers recomputed from predictions.jsonl (labels and P(yes))."
    metrics = json.loads((run/"metrics.json").read_text())
    lines = (run/"predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert metrics["n_eval"] == len(records), f"{run.name}: n_eval {metrics['n_eval']}, {len(records)} predictions"
    assert [r["index"] for r in records] == list(range(len(records))), f"{run.name}: predictions out of order"
    # P(yes) is stored to 6 decimals: an answer within that rounding of 0.5 may go either way.
    undecided = sum(abs(r["probability_yes"] - 0.5) <= 1e-6 for r in records)
    correct = sum((r["probability_yes"] >= 0.5) == bool(r["label"]) for r in records)
    reported = metrics["accuracy"] * len(records)
    assert abs(correct - reported) <= undecided + 1e-6, \
        f"{run.name}: predictions give {correct}/{len(records)} correct, metrics.json {metrics['accuracy']:.6f}"
    yes = sum(r["probability_yes"] >= 0.5 for r in records)
    assert abs(yes - metrics["predicted_yes_rate"] * len(records)) <= undecided + 1e-6, run.name
    assert math.isclose(metrics["majority_baseline"], max(sum(r["label"] for r in records),
                                                          sum(1 - r["label"] for r in records)) / len(records))


def test_each_run_folder_has_its_notebook():
    "Every runs/<name>/ with results was made by an executed notebook, kept beside it (runs/<name>.ipynb)."
    names = {p.stem for p in RUN_NOTEBOOKS}
    orphans = [p.parent.name for p in (ROOT/"runs").glob("*/metrics.json") if p.parent.name not in names]
    assert not orphans, f"results without an executed notebook: {orphans}"


TRAINING_RUNS = sorted(p.parent for p in (ROOT/"runs").glob("*/metrics.json")
                       if "parameters" in json.loads(p.read_text()) and "run_name" in json.loads(p.read_text()))


@pytest.mark.parametrize("run", TRAINING_RUNS, ids=lambda p: p.name)
def test_a_training_run_folder_holds_only_what_its_run_wrote(run):
    "One writer per folder: analyses of a run by other notebooks live in their own folders (runs/results/<run>/)."
    from boolq_nb.train import RUN_FILES
    extra = sorted({p.name for p in run.iterdir()} - set(RUN_FILES))
    assert not extra, f"runs/{run.name}/ holds files its training run did not write: {extra}"
