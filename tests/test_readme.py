"""README.md is generated from nbs/index.ipynb, and its results block from the runs it cites."""
import json

import pytest

from conftest import ROOT


def render_readme() -> str:
    import nbformat
    from nbconvert import MarkdownExporter
    body, _ = MarkdownExporter().from_notebook_node(nbformat.read(ROOT/"nbs"/"index.ipynb", as_version=4))
    return body


def test_readme_is_generated_from_index_notebook():
    assert (ROOT/"README.md").read_text() == render_readme(), \
        "README.md is stale: jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README"


def test_results_block_is_generated_from_runs():
    "The README's results block is exactly what boolq_nb.results makes of runs/ (and the fuzzing run): no typed numbers."
    from boolq_nb.results import readme_results, results_block
    expected = readme_results(ROOT/"runs", ROOT/"bench"/"results"/"fuzz.json")
    assert results_block((ROOT/"README.md").read_text(), "README.md") == expected, \
        "README results are stale: python -c \"from boolq_nb.results import update_index_results as u; " \
        "u('nbs/index.ipynb', 'runs', 'bench/results/fuzz.json')\", then regenerate README.md"


def test_seed_summaries_match_their_runs():
    "Each runs/*-seeds.json is what summarize_seeds gives for the runs it lists, and the README or the results notebook quotes its mean."
    from boolq_nb.train import summarize_seeds
    results = json.loads((ROOT/"runs"/"results.ipynb").read_text())  # the earlier subset runs are tabled there
    readme = (ROOT/"README.md").read_text() + "".join("".join(o.get("text", "")) for c in results["cells"]
                                                      for o in c.get("outputs", []))
    for path in sorted((ROOT/"runs").glob("*-seeds.json")):
        saved = json.loads(path.read_text())
        assert summarize_seeds([ROOT/p for p in saved["runs"]]) == {**saved, "runs": [str(ROOT/p) for p in saved["runs"]]}
        accuracy = saved["accuracy"]
        quoted = f"{100 * accuracy['mean']:.1f} ± {100 * accuracy['std']:.1f} %"
        assert quoted in readme, f"README or runs/results.ipynb should quote {path.name}'s accuracy as {quoted}"


def test_calibration_summary_matches_its_runs():
    "runs/calibration.json is what calibration_summary gives for the predictions it lists."
    from boolq_nb.evaluate import calibration_summary
    saved = json.loads((ROOT/"runs"/"calibration.json").read_text())
    files = [run["predictions"] for run in saved["runs"].values()]
    again = calibration_summary([ROOT/f for f in files], saved["folds"], saved["seed"])
    for run in again["runs"].values():
        run["predictions"] = str((ROOT/run["predictions"]).relative_to(ROOT))
    assert {k: v for k, v in again.items() if k != "runs"} == {k: v for k, v in saved.items() if k != "runs"}
    assert list(again["runs"]) == list(saved["runs"])
    for name, run in again["runs"].items():
        expected = saved["runs"][name]
        assert (run["predictions"], run["n"]) == (expected["predictions"], expected["n"]), name
        for key in ("temperature", "ece", "ece_temperature_scaled"):  # approx: an L-BFGS fit's last digits may
            assert run[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), (name, key)  # vary with the BLAS
