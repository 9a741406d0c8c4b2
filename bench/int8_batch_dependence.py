"""Does a served answer depend on the other requests in its batch, and what does each way of running a batch cost?

The batching server (`boolq-serve`) puts concurrent callers' items into one forward pass, padded to the longest. For
PyTorch and ONNX Runtime in float32 an item's answer should not depend on its companions (padding is masked), up to
float rounding. ONNX Runtime int8 (`quantize_dynamic`) quantizes activations with a scale computed over the whole
input tensor of each layer, that is over the whole batch, padding included, so an item's answer would move with what
shares its batch; the ONNX Runtime backends therefore run each item in a forward pass of its own (`one_item_per_pass`),
the items of a batch side by side, one intra-op thread each.

Each of the first N dev pairs is scored alone (batch size 1) and within length-sorted batches of 16 (as
`predict_proba` batches them), per variant; the script reports the largest, median and 99th percentile change of
P(yes), how many yes/no answers flip, and examples/s each way. Speeds on this project's shared 2-core machines move
by 20 % and more from one minute to the next, so the variants are timed in turn, `--rounds` times over (every variant
once per round), and each examples/s is the median over the rounds (each round's figure is kept too); the answers
and their changes are those of the first round. Variants:

  torch                      PyTorch, padded batches
  onnx, onnx-int8            what `load_model` serves: one item per pass, a batch's items side by side
  onnx-in-turn, onnx-int8-in-turn
                             one item per pass, a batch's items one after another on all the threads
  onnx-whole-batches, onnx-int8-whole-batches
                             whole padded batches (`one_item_per_pass=False`)
  onnx-int8-per-matrix       as onnx-int8, from an int8 export with one weight scale per matrix instead of one per
                             output channel (written to a temporary folder; the served export is per channel)
  onnx-int8-sdpa-attention   as onnx-int8, from an export of PyTorch's fused attention kernel ("sdpa", what the model
                             runs in PyTorch) instead of the eager attention of the served export (temporary folder too)

  python bench/int8_batch_dependence.py --model-dir MODEL --examples 256 --out bench/results/int8_batch_dependence.json
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boolq_nb.data import read_boolq_jsonl  # noqa: E402
from boolq_nb.io import atomic_write_json  # noqa: E402
from boolq_nb.model import YesNoModel  # noqa: E402
from boolq_nb.onnx import OnnxYesNoModel, export_onnx  # noqa: E402

# variant: (ONNX graph, how a batch runs); "torch" is PyTorch's own padded batches
ONNX_VARIANTS = {
    "onnx": ("float32", "side by side"), "onnx-int8": ("int8", "side by side"),
    "onnx-in-turn": ("float32", "in turn"), "onnx-int8-in-turn": ("int8", "in turn"),
    "onnx-whole-batches": ("float32", "whole batches"), "onnx-int8-whole-batches": ("int8", "whole batches"),
    "onnx-int8-per-matrix": ("int8 per matrix", "side by side"),
    "onnx-int8-sdpa-attention": ("int8 with PyTorch's fused attention", "side by side"),
}
VARIANTS = ("torch",) + tuple(ONNX_VARIANTS)


def onnx_graph(base: YesNoModel, model_dir: str, graph: str, scratch: Path) -> Path:
    "The ONNX file of `graph` for the model in `model_dir` (exported next to it, as `load_model` does)."
    if graph == "int8 with PyTorch's fused attention":
        return export_onnx(base, scratch, quantize=True, attention="sdpa")
    if graph != "int8 per matrix":
        return export_onnx(base, Path(model_dir)/"onnx", quantize=graph == "int8")
    per_matrix = scratch/"model.int8.per-matrix.onnx"
    if not per_matrix.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(export_onnx(base, Path(model_dir)/"onnx")), str(per_matrix), weight_type=QuantType.QInt8,
                         per_channel=False)
    return per_matrix


def variant_model(name: str, model_dir: str, scratch: Path) -> YesNoModel:
    base = YesNoModel.load(model_dir, device="cpu")
    if name == "torch":
        return base
    graph, batches = ONNX_VARIANTS[name]
    return OnnxYesNoModel(base, onnx_graph(base, model_dir, graph, scratch), one_item_per_pass=batches != "whole batches",
                          side_by_side=batches == "side by side")


def batch_dependence(model, questions, passages, titles, batch_size: int = 16) -> dict:
    "How P(yes) of each pair changes between scoring it alone and within batches of `batch_size`."
    titles = titles if model.use_title else None
    start = time.perf_counter()
    alone = np.array([model.predict_proba([q], [p], [t] if titles else None, batch_size=1)[0][0]
                      for q, p, t in zip(questions, passages, titles or [None] * len(questions))])
    alone_s, start = time.perf_counter() - start, time.perf_counter()
    batched, _ = model.predict_proba(questions, passages, titles, batch_size=batch_size)
    batched_s = time.perf_counter() - start
    change = np.abs(alone - batched)
    flips = (alone >= 0.5) != (batched >= 0.5)
    return {"alone_examples_per_s": round(len(alone) / alone_s, 1),
            "batched_examples_per_s": round(len(alone) / batched_s, 1),
            "max_change": float(change.max()), "median_change": float(np.median(change)),
            "p99_change": float(np.quantile(change, 0.99)), "answers_flipped": int(flips.sum()),
            "flipped_share": round(float(flips.mean()), 4),
            "largest_margin_flipped": float(np.abs(alone - 0.5)[flips].max()) if flips.any() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="a boolq_nb model folder")
    parser.add_argument("--data", default=os.path.join(os.environ.get("BOOLQ_DATA_DIR", ""), "dev.jsonl"),
                        help="a BoolQ JSON-lines file (default: $BOOLQ_DATA_DIR/dev.jsonl)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="times every variant is timed, in turn (medians)")
    parser.add_argument("--backends", default=",".join(VARIANTS), help="comma-separated variants (see above)")
    parser.add_argument("--out", default=str(ROOT/"bench"/"results"/"int8_batch_dependence.json"))
    args = parser.parse_args(argv)
    variants = args.backends.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--backends: unknown {unknown}; choose from {list(VARIANTS)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if not Path(args.data).is_file():
        parser.error(f"--data {args.data!r}: no such file (set BOOLQ_DATA_DIR or pass --data)")
    columns = read_boolq_jsonl(args.data)  # the project's reader: a bad line is an error naming file and line
    questions, passages, titles = (columns[k][:args.examples] for k in ("question", "passage", "title"))
    results = {"model": args.model_dir, "data": args.data, "examples": len(questions), "batch_size": args.batch_size,
               "rounds": args.rounds,
               "cpu_count": os.cpu_count(), "variants": {"torch": "PyTorch, padded batches",
                                                         **{k: f"{g}; {b}" for k, (g, b) in ONNX_VARIANTS.items()}},
               "backends": {},
               "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:]))}
    with tempfile.TemporaryDirectory(prefix="boolq-int8-") as scratch:
        models = {name: variant_model(name, args.model_dir, Path(scratch)) for name in variants}
        rounds = {name: [] for name in variants}
        for i in range(args.rounds):
            for name, model in models.items():
                rounds[name].append(batch_dependence(model, questions, passages, titles, args.batch_size))
                print(f"round {i + 1}: {name} {rounds[name][-1]}", flush=True)
        for name, measured in rounds.items():
            results["backends"][name] = {**measured[0], **{
                f"{way}_examples_per_s": float(np.median([m[f"{way}_examples_per_s"] for m in measured]))
                for way in ("alone", "batched")}, "rounds": [
                {k: m[k] for k in ("alone_examples_per_s", "batched_examples_per_s")} for m in measured]}
    atomic_write_json(Path(args.out), results)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
