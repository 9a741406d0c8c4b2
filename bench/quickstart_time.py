"""How long the README's first command trains on this CPU, in which precision, and what it scores.

The quickstart (`configs/quickstart.yaml`) trains in bfloat16 where the CPU computes it natively and in float32
elsewhere (`precision: auto`), so its time depends on the CPU more than on anything else. This script keeps one
measurement per kind of CPU and precision in `bench/results/quickstart_time.json`, and the README's quickstart
paragraph quotes every measurement in another precision than the reported run's (`boolq_nb.results`).

  python bench/quickstart_time.py                     # train the quickstart into a temporary folder and record it
  python bench/quickstart_time.py --run runs/quickstart   # record a finished run (after the README's first command)

Without `--run` the quickstart runs through papermill with its outputs in a temporary folder (`output_dir` and
`model_dir`), so runs/ and models/ are left as they are; the papermill wall time (kernel start and imports
included) is recorded beside the run's own. BoolQ is read from `BOOLQ_DATA_DIR` (default `../shared/data/boolq`).
Each measurement also says how its dev answers compare with the reported run's (`runs/quickstart/predictions.jsonl`,
`boolq_nb.results.answer_agreement`): the share of answers that are the same and the largest change of P(yes), so a
run in another precision shows how far its answers moved.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boolq_nb.io import atomic_write_json  # noqa: E402
from boolq_nb.results import answer_agreement  # noqa: E402

OUT = ROOT/"bench"/"results"/"quickstart_time.json"


def measurement(metrics: dict, source: str, papermill_wall_s: float | None = None) -> dict:
    "One quickstart run's time and score, with the CPU and precision that decide them, from its `metrics.json`."
    environment = metrics.get("environment", {})
    cpu = environment.get("cpu") or {}
    return {"cpu": cpu.get("name"), "capability": cpu.get("capability"), "native_bf16": cpu.get("native_bf16"),
            "bf16_instructions": cpu.get("bf16_instructions", []), "threads": environment.get("torch_threads"),
            "precision": metrics.get("precision", "fp32"), "torch": environment.get("torch"),
            "n_train": metrics["n_train"], "epochs": metrics["epochs_run"], "accuracy": metrics["accuracy"],
            "wall_time_s": metrics["wall_time_s"], "train_time_s": metrics["train_time_s"],
            "train_examples_per_s": metrics["train_examples_per_s"], "papermill_wall_s": papermill_wall_s,
            "finished_at": metrics.get("finished_at"), "source": source}


def against_reported(run: Path) -> dict | None:
    "How the dev answers of the run folder `run` compare with the reported run's; None for the reported run itself."
    reported = ROOT/"runs"/"quickstart"
    return None if run.resolve() == reported.resolve() else answer_agreement(run, reported)


def same_machine(a: dict, b: dict) -> bool:
    "Measurements of one kind of CPU (name and instruction set) at one precision and thread count replace each other."
    return all(a.get(k) == b.get(k) for k in ("cpu", "capability", "bf16_instructions", "threads", "precision"))


def merge(measurements: list[dict], new: dict) -> list[dict]:
    "`measurements` with `new` in place of any of the same machine and precision, newest last."
    return [m for m in measurements if not same_machine(m, new)] + [new]


def run_quickstart(work: Path) -> tuple[dict, float]:
    "Train the quickstart with its outputs under `work`; its metrics and papermill's wall time."
    env = {**os.environ, "BOOLQ_DATA_DIR": os.environ.get("BOOLQ_DATA_DIR", str(ROOT.parent/"shared"/"data"/"boolq"))}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", "nbs/03_train.ipynb", str(work/"quickstart.ipynb"),
                    "-f", "configs/quickstart.yaml", "-p", "output_dir", str(work/"runs"),
                    "-p", "model_dir", str(work/"models"), "-p", "report_to", "none", "--log-output"],
                   cwd=ROOT, env=env, check=True)
    wall = time.perf_counter() - started
    return json.loads((work/"runs"/"quickstart"/"metrics.json").read_text()), wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished quickstart run folder to record instead of training one")
    parser.add_argument("--out", type=Path, default=OUT, help="the measurements file, updated in place")
    args = parser.parse_args(argv)
    if args.run:
        path = args.run/"metrics.json"
        if not path.is_file():
            parser.error(f"{path}: no metrics.json (is {args.run} a finished run folder?)")
        new = measurement(json.loads(path.read_text()), "the README's first command")
        new["against_reported_run"] = against_reported(args.run)
    else:
        with tempfile.TemporaryDirectory() as work:
            metrics, wall = run_quickstart(Path(work))
            new = measurement(metrics, "bench/quickstart_time.py", round(wall, 1))
            new["against_reported_run"] = against_reported(Path(work)/"runs"/"quickstart")
    old = json.loads(args.out.read_text())["measurements"] if args.out.is_file() else []
    atomic_write_json(args.out, {"config": "configs/quickstart.yaml", "measurements": merge(old, new)})
    print(f"{new['cpu']} ({new['capability']}, {new['threads']} threads), {new['precision']}: "
          f"{new['wall_time_s'] / 60:.1f} min, {new['train_examples_per_s']:.1f} examples/s, "
          f"dev accuracy {new['accuracy']:.1%} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
