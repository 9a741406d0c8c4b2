"""README.md is generated from nbs/index.ipynb, its generated blocks and runs/README.md from the runs they cite; no
document speaks of the project's development history."""
import json
import re

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


REGENERATE = "python -m boolq_nb.results && jupyter nbconvert --to markdown nbs/index.ipynb --output-dir . --output README"


def test_generated_blocks_follow_from_runs(reported_runs):
    "The README's headline table and quickstart figures are exactly what boolq_nb.results makes of runs/: no typed numbers."
    from boolq_nb.results import (QUICKSTART_END, QUICKSTART_START, readme_quickstart, readme_results,
                                  results_block)
    readme = (ROOT/"README.md").read_text()
    assert results_block(readme, "README.md") == readme_results(reported_runs), f"README results are stale: {REGENERATE}"
    assert results_block(readme, "README.md", QUICKSTART_START, QUICKSTART_END) == readme_quickstart(reported_runs), \
        f"README quickstart figures are stale: {REGENERATE}"


def test_committed_runs_make_the_same_documents(tmp_path):
    """After the README's first command reran the quickstart, the documents are checked against a copy of runs/ as
    committed; that copy must make the committed documents (its run commands name configs/ found beside it)."""
    from conftest import committed_runs
    from boolq_nb.results import QUICKSTART_END, QUICKSTART_START, readme_quickstart, readme_results, results_block
    copy, readme = committed_runs(tmp_path), (ROOT/"README.md").read_text()
    assert readme_results(copy) == results_block(readme, "README.md")
    assert readme_quickstart(copy) == results_block(readme, "README.md", QUICKSTART_START, QUICKSTART_END)


def test_runs_index_follows_from_runs(reported_runs):
    "runs/README.md lists every run with the command that reproduces it, as boolq_nb.results makes it."
    from boolq_nb.results import runs_index
    assert (ROOT/"runs"/"README.md").read_text() == runs_index(reported_runs, ROOT), f"runs/README.md is stale: {REGENERATE}"


def test_readme_is_a_front_page():
    lines = len((ROOT/"README.md").read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines: at most 200 (the experiment record belongs in nbs/07_results.ipynb)"


def test_quick_start_commands():
    "CI reads the quick start's two commands out of the README: the first two sh blocks of its Quick start section."
    section = (ROOT/"README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert blocks[:2] == [
        'python3.11 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[dev]" && '
        "BOOLQ_DATA_DIR=../shared/data/boolq papermill nbs/03_train.ipynb runs/quickstart.ipynb -f configs/quickstart.yaml "
        "--log-output\n",
        ". .venv/bin/activate && pytest\n"]


# Development-history wording: stop numbers, sessions, commit hashes and a few phrases that narrate how the project got
# here rather than what it is. A hash is a bare 7-40-hex word with a digit and a letter, outside a URL or checksum field.
HISTORY = [re.compile(p, re.IGNORECASE) for p in (
    r"\bstops? [0-9]+\b", r"\bthis session\b", r"\bsession's\b", r"\bin a later session\b", r"\bat commit\b",
    r"\bthis machine's speed\b", r"\buntil stop\b", r"\bthe next runs\b", r"\bwe tried earlier\b")]
HASH = re.compile(r"(?<![\w/.#=:-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w/.-])")
CHECKSUM = re.compile(r"sha\d*|md5|checksum|digest|hash|integrity|https?://|\bid\b|\"id\"", re.IGNORECASE)


def history_files() -> list:
    files = [ROOT/"README.md", *sorted((ROOT/"nbs").glob("*.ipynb")),
             *sorted(p for p in (ROOT/"boolq_nb").glob("*.py") if p.name != "_modidx.py"),
             *sorted((ROOT/"bench").glob("*.py")), *sorted((ROOT/"bench").glob("*.sh")),
             *sorted((ROOT/"configs").rglob("*.yaml"))]
    return [f for f in files if f.is_file()]


def history_lines(path) -> list[tuple[int, str]]:
    "(line number, text) of each line to scan: a notebook's cell sources (never its outputs), any other file whole."
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells)
    else:
        text = path.read_text(encoding="utf-8")
    return list(enumerate(text.splitlines(), 1))


def history_problems(path) -> list[str]:
    problems = []
    for number, line in history_lines(path):
        found = [m.group(0) for p in HISTORY for m in p.finditer(line)]
        found += [m.group(0) for m in HASH.finditer(line) if not CHECKSUM.search(line[max(0, m.start() - 40):m.start()])]
        problems += [f"{path.relative_to(ROOT)}:{number}: {w!r} in {line.strip()[:120]!r}" for w in found]
    return problems


def test_history_scanner_finds_what_it_should():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        f = Path(d)/"x.md"
        f.write_text("measured at stop 28 this session\nrun at commit 7f468ab\nfine: sha256 0123abcd4567ef\n"
                     "fine: https://example.org/blob/7f468ab/x and deadbeef and 1234567 and model.int8.onnx\n")
        found = history_problems(f)
    assert [p.split(": ", 1)[1].split(" in ")[0] for p in found] == ["'stop 28'", "'this session'", "'at commit'", "'7f468ab'"], found


def test_no_development_history():
    "Documents, code and configs speak of the product (versions, dates, commands), not of how it came to be."
    problems = [p for f in history_files() for p in history_problems(f)]
    assert not problems, "development-history wording:\n" + "\n".join(problems)


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
