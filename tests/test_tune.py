"""boolq-tune: workers sharing one study (SQLite, PostgreSQL), a killed worker, and bad input."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from conftest import run_cli

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POSTGRES_URL = os.environ.get("BOOLQ_TEST_POSTGRES_URL")  # e.g. postgresql://boolq:boolq@localhost:5432/boolq_test
# One thread per worker: two workers on two busy cores, each with a spinning thread pool, run many times slower.
WORKER_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# One line per finished trial: "trial 2 (3 of 3 finished): score 0.5625; best 0.6250 (trial 0); elapsed 0:00:05, ..."
PROGRESS = re.compile(r"trial (\d+) \(\d+ of \d+ finished\): (?:score|pruned after epoch \d+ at) [\d.]+; "
                      r"(?:best [\d.]+ \(trial \d+\)|no complete trial yet); elapsed \d+:\d\d:\d\d, "
                      r"(?:about \d+:\d\d:\d\d left|time left unknown)")


def _tune_args(tiny_assets, tmp_path, study, n_trials, storage=None):
    "A study of tiny trials (32 examples, 1-3 epochs, about a second each) with heartbeats fast enough for a test."
    args = ["-m", "boolq_nb.tune", "--study-name", study, "--backbone", str(tiny_assets["backbone"]),
            "--data-source", str(tiny_assets["data"]), "--max-train-samples", "32", "--max-eval-samples", "16",
            "--max-length", "48", "--n-trials", str(n_trials), "--learning-rate-min", "5e-5",
            "--learning-rate-max", "1e-2", "--batch-sizes", "8,16", "--epochs-min", "1", "--epochs-max", "3",
            "--report-to", "none", "--output-dir", str(tmp_path/"runs"), "--model-dir", str(tmp_path/"models"),
            "--heartbeat-interval", "1", "--grace-period", "4"]
    return args + (["--storage", storage] if storage else [])


def _sqlite_url(tmp_path, study):
    return f"sqlite:///{tmp_path/'runs'/study/'study.db'}"


def _check_study(url, study, n_trials):
    "Exactly `n_trials` trials trained to a finish, each number once, and nothing left running or waiting."
    trials = optuna.load_study(study_name=study, storage=url).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == n_trials, [(t.number, t.state.name) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert all(t.state.is_finished() for t in trials), [(t.number, t.state.name) for t in trials]
    return trials


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_split_one_study(tiny_assets, tmp_path, backend):
    if backend == "postgresql" and not POSTGRES_URL:
        pytest.skip("set BOOLQ_TEST_POSTGRES_URL to a PostgreSQL database to run this test")
    study, n_trials = f"shared-{uuid.uuid4().hex[:8]}", 3
    storage = POSTGRES_URL if backend == "postgresql" else None
    args = _tune_args(tiny_assets, tmp_path, study, n_trials, storage)
    workers = [subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=WORKER_ENV) for _ in range(2)]
    try:
        outputs = [w.communicate(timeout=400) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    trials = _check_study(storage or _sqlite_url(tmp_path, study), study, n_trials)
    finished = [t for t in trials if t.state in FINISHED]
    # Each worker printed one progress line per trial it finished (none for a surplus trial), before its summary.
    progress = [line for out, _ in outputs for line in out.splitlines() if line.startswith("trial ")]
    assert all(PROGRESS.fullmatch(line) for line in progress), progress
    assert sorted(int(PROGRESS.fullmatch(line).group(1)) for line in progress) == sorted(t.number for t in finished)
    assert all(out.strip().splitlines()[-1].startswith("{") for out, _ in outputs)  # the summary comes last
    # Any extra trial is one created when both workers asked at the same moment: closed before it trained.
    assert all(t.user_attrs.get("surplus") and "run_name" not in t.user_attrs
               for t in trials if t.state == TrialState.FAIL)
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "one worker ran every trial"
    assert len({t.user_attrs["run_name"] for t in finished}) == n_trials
    assert sum(bool(t.user_attrs.get("default")) for t in finished) == 1
    summary = json.loads((tmp_path/"runs"/study/"summary.json").read_text())
    assert (summary["n_trials"], summary["n_complete"] + summary["n_pruned"]) == (n_trials, n_trials)
    assert summary["default_value"] is not None and summary["best_value"] >= summary["default_value"]
    for name in ("best.yaml", "trials.csv", "optimization_history.png", "parallel_coordinate.png"):
        assert (tmp_path/"runs"/study/name).is_file(), name


def test_killed_worker_is_continued(tiny_assets, tmp_path):
    study, n_trials = "killed", 2
    args = _tune_args(tiny_assets, tmp_path, study, n_trials)
    url = _sqlite_url(tmp_path, study)
    trials_dir = tmp_path/"models"/study/"trials"
    worker = subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env=WORKER_ENV)
    try:
        deadline = time.time() + 300
        # Kill hard once the first trial's training has started, i.e. mid-trial.
        while time.time() < deadline and not any(trials_dir.glob("*/checkpoints/train_config.json")):
            assert worker.poll() is None, "the worker ended before it could be killed"
            time.sleep(0.1)
        assert worker.poll() is None, "the worker ended before it could be killed"
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    running = [t for t in optuna.load_study(study_name=study, storage=url).trials if t.state == TrialState.RUNNING]
    assert len(running) == 1
    killed = running[0]
    assert not (tmp_path/"runs"/study/"trials"/killed.user_attrs["run_name"]/"metrics.json").exists()

    restarted = run_cli(args, cwd=tmp_path, timeout=400, env={"OMP_NUM_THREADS": "1"})
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    trials = _check_study(url, study, n_trials)
    assert trials[killed.number].state == TrialState.FAIL  # found dead by its stale heartbeat
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state in FINISHED and retries[0].params == killed.params
    assert not (trials_dir/killed.user_attrs["run_name"]).exists()  # the dead trial's checkpoints are gone
    assert json.loads(restarted.stdout.strip().splitlines()[-1])["n_trials"] == n_trials


@pytest.mark.parametrize("argv, message", [
    (["--n-trials", "0"], "parameter 'n_trials' must be at least 1"),
    (["--storage", "postgresql://nobody:secret@127.0.0.1:1/none"],
     "cannot open the study storage postgresql://nobody:***@127.0.0.1:1/none"),
    (["-f", "{params}"], "params.yaml: unknown parameter(s) ['n_trails']"),
    (["--learning-rate-min", "1e-3", "--learning-rate-max", "1e-2"], "the default training settings learning_rate=5e-05 lie outside the search space"),
])
def test_bad_input_is_refused_before_training(tmp_path, capsys, argv, message):
    from boolq_nb.tune import main
    (tmp_path/"params.yaml").write_text("n_trails: 10\n")
    argv = [a.format(params=tmp_path/"params.yaml") for a in argv]
    assert main([*argv, "--output-dir", str(tmp_path/"runs"), "--model-dir", str(tmp_path/"models")]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret" not in err, err
    assert not (tmp_path/"models").exists()
