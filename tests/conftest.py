"""Shared fixtures. Tests never touch the network: hub calls fail at once instead of retrying."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    "A tiny BoolQ folder, a tiny RoBERTa (`backbone`) and a tiny two-segment BERT, shared by the whole session."
    from boolq_nb.testing import make_tiny_bert, make_tiny_roberta, write_tiny_boolq
    base = tmp_path_factory.mktemp("tiny")
    return {"data": write_tiny_boolq(base/"data", n_train=128, n_eval=48), "backbone": make_tiny_roberta(base/"roberta"),
            "bert": make_tiny_bert(base/"bert")}


def run_cli(args, cwd, timeout=600, env=None):
    "Run a console command of this package with the venv's interpreter; return the CompletedProcess."
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


API_KEY = "test-key-123"
MAX_BATCH, MAX_BODY, MMAP_THRESHOLD = 8, 20_000, 65536


@pytest.fixture(scope="session")
def served_model(tiny_assets, tmp_path_factory):
    "A tiny model whose answers depend on the input (larger weights than the default initialisation)."
    import torch
    from boolq_nb.model import YesNoModel
    model = YesNoModel.from_backbone(str(tiny_assets["backbone"]), max_length=64, device="cpu")
    with torch.no_grad():
        for name, weight in model.model.named_parameters():
            if weight.dim() == 2 and "embeddings" not in name:
                weight.mul_(30.0)
    return model, model.save(tmp_path_factory.mktemp("serve")/"model")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(served_model, tmp_path_factory):
    "The real server on a free loopback port, started once; stopped (SIGTERM to its process group) at the end."
    _, model_dir = served_model
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log")/"server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "boolq_nb.serve", "--model", str(model_dir), "--port", str(port),
                                 "--max-batch-size", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY),
                                 "--malloc-mmap-threshold", str(MMAP_THRESHOLD)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "BOOLQ_API_KEY": API_KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, f"server not up after 180 s:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(url + "/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not accepting yet, or the worker still loading
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="session")
def reported_runs(tmp_path_factory):
    """runs/ as committed: the README's first command reruns the quickstart, whose wall time (and, on another CPU,
    its figures) then differ from the committed record that README.md and runs/README.md quote. A rerun leaves the
    working tree's runs/quickstart/ different from HEAD's; the generated documents are checked against HEAD's."""
    rerun = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "runs/quickstart"], cwd=ROOT).returncode == 1
    return committed_runs(tmp_path_factory.mktemp("committed")) if rerun else ROOT/"runs"


def committed_runs(root: Path) -> Path:
    """A copy of the project's runs/ under `root` with the quickstart's record as HEAD has it, and configs/ beside it:
    the generated documents name the config that reproduces each run, found relative to runs/, and quote the
    quickstart's times on other CPUs from bench/results/."""
    import shutil
    copy = root/"runs"
    shutil.copytree(ROOT/"runs", copy)
    shutil.copytree(ROOT/"configs", root/"configs")
    if (ROOT/"bench"/"results").is_dir():  # the quickstart's times on other CPUs, which the README quotes
        shutil.copytree(ROOT/"bench"/"results", root/"bench"/"results")
    for name in ("metrics.json", "predictions.jsonl"):
        committed = subprocess.run(["git", "show", f"HEAD:runs/quickstart/{name}"], cwd=ROOT, capture_output=True,
                                   check=True).stdout
        (copy/"quickstart"/name).write_bytes(committed)
    return copy
