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


def _library_imports() -> dict[str, tuple[str, set[str]]]:
    "Each exported module: the notebook it comes from and the boolq_nb modules it imports (at any depth of code)."
    import ast
    import re
    modules = {}
    for path in sorted((ROOT/"boolq_nb").glob("*.py")):
        source = path.read_text()
        origin = re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", source)
        if not origin:
            continue
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("boolq_nb."):
                imported.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".")[1] for a in node.names if a.name.startswith("boolq_nb.")}
        modules[path.stem] = (origin.group(1), imported - {path.stem})
    return modules


def test_imports_run_one_way():
    """A notebook's number is its layer (00 data, 01 features, 02 model and its exports, 03 train, 04 tune, 05 drift
    and checks, 06 serving, 07 results, 08 docs, 9x test helpers): a module imports only from its own layer or
    earlier ones, and never in a cycle, so each notebook can be read knowing only those before it."""
    modules = _library_imports()
    assert {"data", "model", "onnx", "train", "serve"} <= set(modules)
    layer = {name: notebook[:2] for name, (notebook, _) in modules.items()}
    upward = [f"{name} ({modules[name][0]}) imports {dep} ({modules[dep][0]})"
              for name, (_, deps) in modules.items() for dep in sorted(deps) if dep in layer and layer[dep] > layer[name]]
    assert not upward, "imports against the notebooks' order: " + "; ".join(upward)
    import graphlib
    graphlib.TopologicalSorter({name: deps & set(modules) for name, (_, deps) in modules.items()}).prepare()  # CycleError
