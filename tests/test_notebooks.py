"""Every notebook executes cleanly under nbdev_test (tiny data and the tiny RoBERTa; `slow` cells skipped)."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT/"nbs").glob("[0-9]*.ipynb")) + ["index.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook(notebook):
    nbdev_test = Path(sys.executable).with_name("nbdev_test")
    proc = subprocess.run([str(nbdev_test), "--path", f"nbs/{notebook}", "--do_print"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_library_in_step_with_notebooks(tmp_path):
    "nbdev_export would not change boolq_nb/: nobody edited the library by hand or forgot to export."
    import shutil
    copy = tmp_path/"repo"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "models", "wandb", "*.egg-info", "_docs", "_proc", ".gpu", ".gpu.tmp"))
    nbdev_export = Path(sys.executable).with_name("nbdev_export")
    subprocess.run([str(nbdev_export)], cwd=copy, check=True, capture_output=True)
    for exported in sorted((ROOT/"boolq_nb").glob("*.py")):
        assert (copy/"boolq_nb"/exported.name).read_text() == exported.read_text(), \
            f"boolq_nb/{exported.name} differs from what nbdev_export makes of nbs/: run nbdev_export"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_is_valid_nbformat(notebook):
    "Every cell has a unique id (nbformat 4.5): papermill and JupyterLab warn about, and will refuse, cells without."
    import json
    import nbformat
    raw = json.loads((ROOT/"nbs"/notebook).read_text())  # nbformat.read would add missing ids itself, with a warning
    missing = [i for i, cell in enumerate(raw["cells"]) if "id" not in cell]
    assert not missing, f"nbs/{notebook}: cells {missing} have no id"
    nbformat.validate(nbformat.from_dict(raw))
    ids = [cell["id"] for cell in raw["cells"]]
    assert len(set(ids)) == len(ids), f"nbs/{notebook}: repeated cell ids"
