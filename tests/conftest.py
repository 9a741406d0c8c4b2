"""Shared fixtures. Tests never touch the network: hub calls fail at once instead of retrying."""
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    "A tiny BoolQ folder and a tiny RoBERTa, shared by the whole session."
    from boolq_nb.testing import make_tiny_roberta, write_tiny_boolq
    base = tmp_path_factory.mktemp("tiny")
    return {"data": write_tiny_boolq(base/"data", n_train=128, n_eval=48), "backbone": make_tiny_roberta(base/"roberta")}


def run_cli(args, cwd, timeout=600, env=None):
    "Run a console command of this package with the venv's interpreter; return the CompletedProcess."
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
