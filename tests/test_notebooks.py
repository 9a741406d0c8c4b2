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
