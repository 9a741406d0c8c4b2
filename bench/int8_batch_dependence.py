"""Does a served answer depend on the other requests in its batch? P(yes) of dev pairs scored alone and in batches.

The batching server (`boolq-serve`) puts concurrent callers' items into one forward pass, padded to the longest. For
PyTorch and ONNX Runtime in float32 an item's answer should not depend on its companions (padding is masked), up to
float rounding. ONNX Runtime int8 (`quantize_dynamic`) quantizes activations with a scale computed over the whole
input tensor of each layer, that is over the whole batch, padding included, so an item's answer would move with what
shares its batch; the ONNX Runtime backends therefore run each item in a forward pass of its own (`one_item_per_pass`).
This script measures both ways: each of the first N dev pairs is scored alone (batch size 1) and within length-sorted
batches of 16 (as `predict_proba` batches them), per backend, and for each ONNX Runtime graph also on whole padded
batches (`onnx-whole-batches`, `onnx-int8-whole-batches`); it reports the largest, median and 99th percentile change
of P(yes), how many yes/no answers flip, and examples/s each way (whether one item per pass costs speed).

  python bench/int8_batch_dependence.py --model-dir MODEL --examples 256 --out bench/results/int8_batch_dependence.json
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boolq_nb.data import read_boolq_jsonl  # noqa: E402
from boolq_nb.io import atomic_write_json  # noqa: E402
from boolq_nb.model import YesNoModel  # noqa: E402
from boolq_nb.serve import BACKENDS, OnnxYesNoModel, load_model  # noqa: E402

WHOLE_BATCHES = {f"{backend}-whole-batches": backend for backend in ("onnx", "onnx-int8")}  # one_item_per_pass off


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
    parser.add_argument("--backends", default=",".join(BACKENDS + tuple(WHOLE_BATCHES)))
    parser.add_argument("--out", default=str(ROOT/"bench"/"results"/"int8_batch_dependence.json"))
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    unknown = [b for b in backends if b not in BACKENDS + tuple(WHOLE_BATCHES)]
    if unknown:
        parser.error(f"--backends: unknown {unknown}; choose from {list(BACKENDS + tuple(WHOLE_BATCHES))}")
    if not Path(args.data).is_file():
        parser.error(f"--data {args.data!r}: no such file (set BOOLQ_DATA_DIR or pass --data)")
    columns = read_boolq_jsonl(args.data)  # the project's reader: a bad line is an error naming file and line
    questions, passages, titles = (columns[k][:args.examples] for k in ("question", "passage", "title"))
    results = {"model": args.model_dir, "data": args.data, "examples": len(questions), "batch_size": args.batch_size,
               "backends": {}, "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:]))}
    for backend in backends:
        if backend == "torch":
            model = YesNoModel.load(args.model_dir, device="cpu")
        elif backend in WHOLE_BATCHES:
            per_item = load_model(args.model_dir, WHOLE_BATCHES[backend])
            model = OnnxYesNoModel(per_item, per_item.onnx_file, one_item_per_pass=False)
        else:
            model = load_model(args.model_dir, backend)
        results["backends"][backend] = batch_dependence(model, questions, passages, titles, args.batch_size)
        print(backend, results["backends"][backend], flush=True)
    atomic_write_json(Path(args.out), results)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
