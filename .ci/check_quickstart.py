"""After the README's first command: did the quickstart leave only its own outputs, with the committed answers?

1. `git status` may show changes only in the quickstart's outputs (runs/quickstart.ipynb, runs/quickstart/); the
   model, checkpoints and venv are git-ignored. Anything else means the command wrote where it should not.
2. The new dev answers are compared with the committed ones (`git show HEAD:runs/quickstart/predictions.jsonl`):
   - Same precision and the same bfloat16 instructions (or float32 on both) as the committed run, same torch:
     the same arithmetic. Float32 reruns agreed within 1e-6 across CPUs, and a bfloat16 rerun on the same 2-core
     AMX CPU gave every P(yes) exactly (largest difference 0). Another core count splits the work of a matrix
     product differently, which can round otherwise, so the check allows at most 1 % of the answers to change and
     the accuracy to move 0.5 points, and reports (without failing) how many P(yes) moved by more than 1e-3.
   - Otherwise (bfloat16 against float32, or AMX against AVX512_BF16 kernels): another rounding at every step
     makes another training trajectory, as another seed would, so only the accuracy is compared: within 2.5 points
     (the MiniLM recipe's accuracy spreads by about 1 point, one standard deviation, over seeds).
Standard library only. Exit status 0 when the checks pass, 1 otherwise, with what differs.
"""
import json
import subprocess
import sys

RUN, NOTEBOOK = "runs/quickstart", "runs/quickstart.ipynb"
SAME_ARITHMETIC_EPS, SAME_ARITHMETIC_CHANGED, SAME_ARITHMETIC_POINTS, OTHER_ARITHMETIC_POINTS = 1e-3, 0.01, 0.5, 2.5


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def arithmetic(metrics: dict) -> tuple:
    "What decides the arithmetic of a run: its precision, the CPU's bfloat16 instructions it used, torch's version."
    precision = metrics.get("precision", "fp32")
    instructions = tuple(metrics.get("environment", {}).get("cpu", {}).get("bf16_instructions", ())) \
        if precision == "bf16" else ()
    return precision, instructions, metrics.get("environment", {}).get("torch")


def predictions(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main() -> int:
    problems = []
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=all").splitlines()]
    strays = [p for p in changed if p != NOTEBOOK and not p.startswith(RUN + "/")]
    if strays:
        problems.append(f"the quickstart changed files outside its outputs: {strays}")
    new_metrics = json.load(open(f"{RUN}/metrics.json"))
    old_metrics = json.loads(git("show", f"HEAD:{RUN}/metrics.json"))
    new = predictions(open(f"{RUN}/predictions.jsonl").read())
    old = predictions(git("show", f"HEAD:{RUN}/predictions.jsonl"))
    if len(new) != len(old):
        problems.append(f"{len(new)} dev answers against {len(old)} committed")
    same = arithmetic(new_metrics) == arithmetic(old_metrics)
    print(f"quickstart: dev accuracy {new_metrics['accuracy']:.2%} (committed {old_metrics['accuracy']:.2%}); "
          f"arithmetic {arithmetic(new_metrics)} against {arithmetic(old_metrics)}")
    if same and len(new) == len(old):
        eps = SAME_ARITHMETIC_EPS
        far = [i for i, (a, b) in enumerate(zip(new, old))
               if abs(a["probability_yes"] - b["probability_yes"]) > eps]
        flipped = [i for i, (a, b) in enumerate(zip(new, old))
                   if (a["probability_yes"] >= 0.5) != (b["probability_yes"] >= 0.5)
                   and min(abs(a["probability_yes"] - 0.5), abs(b["probability_yes"] - 0.5)) > eps]
        largest = max(abs(a["probability_yes"] - b["probability_yes"]) for a, b in zip(new, old))
        gap = 100 * abs(new_metrics["accuracy"] - old_metrics["accuracy"])
        print(f"same arithmetic: largest P(yes) difference {largest:.2e}, {len(far)} beyond {eps}; "
              f"{len(flipped)} answers changed; accuracy {gap:.2f} points apart")
        if len(flipped) > SAME_ARITHMETIC_CHANGED * len(old) or gap > SAME_ARITHMETIC_POINTS:
            problems.append(f"{len(flipped)} answers changed (at most {SAME_ARITHMETIC_CHANGED:.0%} allowed) and "
                            f"accuracy {gap:.2f} points apart (at most {SAME_ARITHMETIC_POINTS})"
                            + (f"; first change at dev index {flipped[0]}" if flipped else ""))
    elif not same:
        gap = 100 * abs(new_metrics["accuracy"] - old_metrics["accuracy"])
        agree = sum((a["probability_yes"] >= 0.5) == (b["probability_yes"] >= 0.5) for a, b in zip(new, old))
        print(f"other arithmetic: accuracy {gap:.2f} points apart (allowed {OTHER_ARITHMETIC_POINTS}), "
              f"{agree / max(len(old), 1):.1%} of answers the same")
        if gap > OTHER_ARITHMETIC_POINTS:
            problems.append(f"accuracy {gap:.2f} points from the committed run's, more than {OTHER_ARITHMETIC_POINTS}")
    for problem in problems:
        print(f"check_quickstart: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
