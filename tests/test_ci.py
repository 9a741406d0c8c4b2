""".ci/run runs the README's two commands as written, and checks the quickstart's outputs between them."""
import importlib.util
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT/".ci"/f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_commands = _load("readme_commands").readme_commands


def test_ci_runs_the_readme_commands():
    "The README and CI cannot drift apart: .ci/run executes what readme_commands.py reads out of README.md."
    commands = readme_commands((ROOT/"README.md").read_text())
    assert len(commands) == 2 and "papermill nbs/03_train.ipynb runs/quickstart.ipynb" in commands[0]
    assert commands[1].endswith("pytest")
    ci = (ROOT/".ci"/"run").read_text()
    assert 'bash -c "$command_1"' in ci and 'bash -c "$command_2"' in ci
    assert (ci.index("$(python3 .ci/readme_commands.py 1)") < ci.index("\npython3 .ci/check_quickstart.py")
            < ci.index("$(python3 .ci/readme_commands.py 2)"))
    printed = subprocess.run([sys.executable, str(ROOT/".ci"/"readme_commands.py"), "1"], capture_output=True, text=True)
    assert printed.stdout.strip() == commands[0]


@pytest.mark.parametrize("text, problem", [
    ("# x\n", "no '## Quick start' section"),
    ("## Quick start\n```sh\na\n```\n## Next\n```sh\nb\n```\n", "has 1 sh block(s)"),
    ("## Quick start\n```sh\na\nb\n```\n```sh\nc\n```\n", "block 1 holds 2 lines"),
])
def test_readme_commands_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        readme_commands(text)


def _quickstart_repo(tmp_path, accuracy=0.7, precision="bf16", probabilities=(0.9, 0.2, 0.6)):
    repo = tmp_path/"repo"
    (repo/"runs"/"quickstart").mkdir(parents=True)
    _write_run(repo, accuracy, precision, probabilities)
    (repo/"README.md").write_text("x\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def _write_run(repo, accuracy, precision, probabilities):
    run = repo/"runs"/"quickstart"
    metrics = {"accuracy": accuracy, "precision": precision,
               "environment": {"torch": "2.13.0", "cpu": {"bf16_instructions": ["amx_bf16"]}}}
    (run/"metrics.json").write_text(json.dumps(metrics))
    (run/"predictions.jsonl").write_text("".join(json.dumps({"index": i, "probability_yes": p}) + "\n"
                                                 for i, p in enumerate(probabilities)))


def _check(repo):
    return subprocess.run([sys.executable, str(ROOT/".ci"/"check_quickstart.py")], cwd=repo, capture_output=True,
                          text=True)


def test_check_quickstart_accepts_the_same_answers(tmp_path):
    repo = _quickstart_repo(tmp_path)
    _write_run(repo, 0.7, "bf16", (0.9004, 0.2, 0.6))  # within 1e-3: another BLAS blocking, same answers
    assert _check(repo).returncode == 0


def test_check_quickstart_refuses_changed_answers_and_strays(tmp_path):
    repo = _quickstart_repo(tmp_path)
    _write_run(repo, 0.7, "bf16", (0.9, 0.2, 0.4))
    assert "answers changed" in _check(repo).stderr
    _write_run(repo, 0.7, "bf16", (0.9, 0.2, 0.6))
    (repo/"README.md").write_text("changed by the quickstart\n")
    assert "outside its outputs: ['README.md']" in _check(repo).stderr


def test_check_quickstart_compares_accuracy_across_arithmetic(tmp_path):
    repo = _quickstart_repo(tmp_path)
    _write_run(repo, 0.69, "fp32", (0.3, 0.2, 0.6))  # float32 against the committed bfloat16: another trajectory
    assert _check(repo).returncode == 0
    _write_run(repo, 0.65, "fp32", (0.3, 0.2, 0.6))
    assert "more than 2.5" in _check(repo).stderr
