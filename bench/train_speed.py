"""Training throughput of boolq_nb.train's path against a plain Hugging Face Trainer recipe, in one run.

Both train the same model (the bundled MiniLM unless --backbone says otherwise) on the same BoolQ training examples
for the same number of optimizer steps, with evaluation off, and report examples per second; FLOP/s are estimated
from the tokens each batch really computes (padding included) and compared with this machine's measured float32
matrix-multiply peak.

  baseline: the Trainer with default settings, inputs padded to max_length at tokenization, random batches
  project:  boolq_nb.train's TrainingArguments and BoolQTrainer: no padding at tokenization, per-batch padding
            (DataCollatorWithPadding), length-grouped batches

Dynamic padding does not change what the model learns per example (padding is masked out of attention and loss);
length grouping changes which examples share a batch, as in every reported run of this project.

  python bench/train_speed.py --steps 40 --out bench/results/train_speed.json
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from boolq_nb.data import atomic_write_json, load_boolq
from boolq_nb.features import make_collator, passage_text, tokenize_boolq
from boolq_nb.model import load_backbone
from boolq_nb.train import BoolQTrainer, TrainConfig, training_arguments


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    "Best float32 GFLOP/s of an n x n matrix product on this machine (all torch threads)."
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def flops_per_example(model, seq_len: int) -> float:
    "Training FLOPs (forward + backward, about 3x forward) for one sequence of seq_len tokens."
    cfg = model.config
    n_params = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    dense = 2 * n_params * seq_len                                              # weight matmuls
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * seq_len ** 2  # QK^T and AV
    return 3 * (dense + attention)


class BatchShapes(TrainerCallback):
    "Records the padded shape of every training batch the Trainer runs (by wrapping the collator)."
    def __init__(self, collator):
        self.collator, self.shapes = collator, []

    def __call__(self, features):
        batch = self.collator(features)
        self.shapes.append(tuple(batch["input_ids"].shape))
        return batch


def run(name, trainer_cls, args, model, train_dataset, collator, steps, batch_size):
    shapes = BatchShapes(collator)
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, data_collator=shapes)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    shapes.shapes = shapes.shapes[:steps]  # the dataloader may prefetch one batch more than it trains on
    flops = sum(b * flops_per_example(model, s) for b, s in shapes.shapes)
    return {"name": name, "seconds": round(seconds, 2), "examples": steps * batch_size,
            "examples_per_s": round(steps * batch_size / seconds, 3),
            "mean_padded_length": round(float(np.mean([s for _, s in shapes.shapes])), 1),
            "achieved_gflops": round(flops / seconds / 1e9, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--data-source", default=None, help="default: $BOOLQ_DATA_DIR, else google/boolq")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", default="bench/results/train_speed.json")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)
    n_examples = args.steps * args.batch_size
    data = load_boolq(args.data_source, max_train_samples=n_examples, max_eval_samples=1)["train"]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        # Baseline: the plain recipe of most examples, padded to max_length when tokenizing.
        model, tokenizer = load_backbone(args.backbone)
        texts = passage_text(data["passage"], data["title"], use_title=True)
        padded = data.add_column("text", texts).map(
            lambda b: {**tokenizer(b["question"], b["text"], truncation="only_second", max_length=args.max_length,
                                   padding="max_length"), "labels": b["label"]},
            batched=True, remove_columns=data.column_names + ["text"])
        baseline_args = TrainingArguments(output_dir=f"{scratch}/baseline", per_device_train_batch_size=args.batch_size,
                                          max_steps=args.steps, report_to="none", save_strategy="no",
                                          logging_strategy="no", disable_tqdm=True, seed=0)
        results.append(run("baseline: Trainer defaults, padded to max_length", Trainer, baseline_args, model, padded,
                           DataCollatorWithPadding(tokenizer), args.steps, args.batch_size))
        print(results[-1], flush=True)

        # The project's path: the very TrainingArguments and Trainer subclass boolq_nb.train uses.
        model, tokenizer = load_backbone(args.backbone)
        config = TrainConfig(run_name="bench", backbone=args.backbone, max_length=args.max_length, use_title=True,
                             batch_size=args.batch_size, report_to="none", output_dir=scratch, model_dir=scratch)
        project_args = training_arguments(config)
        project_args.max_steps, project_args.eval_strategy, project_args.save_strategy = args.steps, "no", "no"
        project_args.load_best_model_at_end, project_args.logging_strategy = False, "no"
        encoded = tokenize_boolq(data, tokenizer, args.max_length, use_title=True)
        results.append(run("project: boolq_nb.train (dynamic padding, length grouping)", BoolQTrainer, project_args,
                           model, encoded, make_collator(tokenizer), args.steps, args.batch_size))
        print(results[-1], flush=True)

    baseline, project = results
    report = {"backbone": args.backbone, "steps": args.steps, "batch_size": args.batch_size,
              "max_length": args.max_length, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "peak_gflops": round(peak, 1),
              "baseline_examples_per_s": baseline["examples_per_s"], "project_examples_per_s": project["examples_per_s"],
              "speedup": round(project["examples_per_s"] / baseline["examples_per_s"], 2),
              "achieved_gflops": project["achieved_gflops"],
              "achieved_share_of_peak": round(project["achieved_gflops"] / peak, 3),
              "baseline_achieved_gflops": baseline["achieved_gflops"], "runs": results,
              "command": "python " + " ".join(sys.argv)}
    atomic_write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
