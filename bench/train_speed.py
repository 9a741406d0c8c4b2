"""Training throughput of boolq_nb.train's path against a plain Hugging Face Trainer recipe, in one run.

Both train the same model (the bundled MiniLM unless --backbone says otherwise) on the same BoolQ training examples
for the same number of optimizer steps, with evaluation off, and report examples per second. FLOP/s are estimated
twice and compared with this machine's measured float32 matrix-multiply peak (the best n x n product for n of 1024,
2048 and 4096, measured before the runs, after each and at the end: on a shared machine one measurement can fall on
a slow minute, which would lower the peak and flatter every share of it): `achieved` from the tokens each batch
computes (padding included), `useful` from the real tokens alone (padding excluded), the work any recipe must do.

  baseline: the Trainer with default settings, inputs padded to max_length at tokenization, random batches
  project:  boolq_nb.train's TrainingArguments and BoolQTrainer: no padding at tokenization, per-batch padding
            (DataCollatorWithPadding), length-grouped batches

Dynamic padding does not change what the model learns per example (padding is masked out of attention and loss);
length grouping changes which examples share a batch, as in every reported run of this project.

  python bench/train_speed.py --out bench/results/train_speed.json

The batches are those a run of the default configuration trains on. The Trainer's length grouping shuffles the
training set, cuts it into megabatches of min(n / (4 x batch size), 50) batches and sorts each by length, so the
padding of a batch depends on how many examples the run draws from: the Trainers here draw from the configuration's
training set (--train-examples; the quickstart's: all of train), and each path trains one whole megabatch (--steps;
50 steps of 16 on all of train, 31 on 2,000 examples), whose examples are a random sample of that set. (Drawing fewer examples, say 40
steps from 640, gives megabatches of 160 and more padding than a run on the configuration's data carries.)

A third run trains the project's path with the settings of the default configuration (--config, the quickstart's:
attention_dropout 0, which lets PyTorch use its fused attention kernel, the mean-pooling head, and fast_dropout,
which draws the other dropout masks four elements per random number; see 03_train); the report's `default_*`
figures are that run's. When the configuration sets fast_dropout, a fourth run trains the same path with PyTorch's
own dropout masks, so that the speed-up of the masks alone is measured in the same run. Evaluation is timed too: the
Trainer's prediction over length-sorted dev examples at the default evaluation batch size, beside YesNoModel's
batched inference (what boolq-predict and the server use) on the same examples.
On a CPU that computes bfloat16 natively (AMX or AVX512_BF16; `boolq_nb.model.native_bf16`), one more run trains the
default path under bfloat16 autocast, as `precision: auto` does there (with plain matrix-product attention, whose
bfloat16 backward is faster than the fused kernel's: `use_training_attention` in 03_train), and the bfloat16
matrix-multiply peak is measured beside the float32 one at every peak measurement; the report's `bf16_*` figures are
that run's, its useful FLOP/s as a share of each peak. Elsewhere the report says `bf16_native: false` and the
float32 runs are all there is. The paths other than the bfloat16 one train in float32 (`precision: fp32`).
--rounds N then trains the default path N more times, with the peak measured before each round and after the last:
each round's useful FLOP/s over the higher of the two peaks around it, and their median (`default_rounds`). The
speed of this shared machine moves by 20 % and more between minutes, for the training and the peak alike, so a share
of a peak measured minutes away can land anywhere; a round and the peaks around it share their minute.
--compile WARMUP adds the default path under torch.compile (inductor), timed after WARMUP untimed steps that compile
it (their time is reported apart as `compile_seconds`).
--profile N runs N more steps of each project run under torch.profiler and adds where the time goes (self CPU
time grouped into matrix products, attention, normalisation and activations, optimizer, embeddings, data loading)
to the report, with the profiler's table of the top operators next to it (train_speed.profile.txt).
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from boolq_nb.data import load_boolq
from boolq_nb.features import make_collator, passage_text, tokenize_boolq
from boolq_nb.io import atomic_write_json, atomic_write_text
from boolq_nb.model import cpu_capability, load_backbone, native_bf16
from boolq_nb.train import (BoolQTrainer, TrainConfig, load_param_file, training_arguments,
                            use_training_attention)

ROOT = Path(__file__).resolve().parent.parent


PEAK_SIZES = (1024, 2048, 4096)


def matmul_peak_gflops(sizes=PEAK_SIZES, repeats: int = 10, dtype=torch.float32) -> dict:
    """Best GFLOP/s of an n x n matrix product in `dtype` on this machine (all torch threads), for each n in `sizes`.

    The best size differs between machines (cache sizes, the BLAS library's blocking), and one size can land on a
    slow moment of a shared machine, so the peak is the best over several sizes, measured before and after the runs."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b  # warm up
        best = float("inf")
        for _ in range(repeats if n < 4096 else max(2, repeats // 4)):  # one 4096 product takes about a second
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        rates[n] = round(2 * n ** 3 / best / 1e9, 1)
    return rates


def megabatch_steps(n_examples: int, batch_size: int) -> int:
    "Batches in one length-grouping megabatch of the Trainer over `n_examples` (transformers' default multiplier)."
    return max(1, min(n_examples // (batch_size * 4), 50))


def flops_per_example(model, seq_len: int) -> float:
    """Training FLOPs (forward + backward, about 3x forward) for one sequence of seq_len tokens.

    The encoder layers' weights act on every token; the pooler and the classification head on one vector per
    sequence (the first token's or the mean), so they count once per sequence, not once per token."""
    cfg = model.config
    per_token = per_sequence = 0
    for name, p in model.named_parameters():
        if "embeddings" in name:
            continue
        if re.search(r"\.layers?\.\d+\.", name):
            per_token += p.numel()
        else:
            per_sequence += p.numel()
    dense = 2 * per_token * seq_len + 2 * per_sequence                          # weight matmuls
    attention = 2 * 2 * cfg.num_hidden_layers * cfg.hidden_size * seq_len ** 2  # QK^T and AV
    return 3 * (dense + attention)


class BatchShapes(TrainerCallback):
    "Records the padded shape and the real lengths of every training batch the Trainer runs (by wrapping the collator)."
    def __init__(self, collator):
        self.collator, self.shapes, self.lengths = collator, [], []

    def __call__(self, features):
        batch = self.collator(features)
        self.shapes.append(tuple(batch["input_ids"].shape))
        self.lengths.append(batch["attention_mask"].sum(dim=1).tolist())
        return batch


def warm_up(model, dataset, collator, batch_size):
    "One untimed forward and backward pass, so the first timed run does not pay alone for one-off start-up costs."
    batch = collator([dataset[i] for i in range(batch_size)])
    model(**batch).loss.backward()
    model.zero_grad()


def run(name, trainer_cls, args, model, train_dataset, collator, steps, batch_size):
    shapes = BatchShapes(collator)
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, data_collator=shapes)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    shapes.shapes = shapes.shapes[:steps]  # the dataloader may prefetch one batch more than it trains on
    lengths = [n for batch in shapes.lengths[:steps] for n in batch]
    flops = sum(b * flops_per_example(model, s) for b, s in shapes.shapes)
    useful = sum(flops_per_example(model, n) for n in lengths)
    return {"name": name, "seconds": round(seconds, 2), "examples": steps * batch_size,
            "examples_per_s": round(steps * batch_size / seconds, 3),
            "mean_padded_length": round(float(np.mean([s for _, s in shapes.shapes])), 1),
            "mean_real_length": round(float(np.mean(lengths)), 1),
            "achieved_gflops": round(flops / seconds / 1e9, 2), "useful_gflops": round(useful / seconds / 1e9, 2)}


def time_evaluation(model, tokenizer, dataset, encoded, eval_batch_size, max_length, scratch):
    "Examples/s of the Trainer's prediction over length-sorted examples, and of YesNoModel's batched inference."
    from boolq_nb.model import YesNoModel
    order = np.argsort(encoded["length"], kind="stable")
    sorted_split = encoded.select(order)
    args = TrainingArguments(output_dir=f"{scratch}/eval", per_device_eval_batch_size=eval_batch_size,
                             report_to="none", disable_tqdm=True)
    trainer = BoolQTrainer(model=model, args=args, data_collator=make_collator(tokenizer))
    trainer.predict(sorted_split.select(range(min(eval_batch_size, len(sorted_split)))))  # warm up
    start = time.perf_counter()
    trainer.predict(sorted_split)
    trainer_seconds = time.perf_counter() - start
    yes_no = YesNoModel(model, tokenizer, max_length, use_title=True, device="cpu")
    start = time.perf_counter()
    yes_no.predict_proba(dataset["question"], dataset["passage"], dataset["title"])
    inference_seconds = time.perf_counter() - start
    n = len(encoded)
    return {"examples": n, "eval_batch_size": eval_batch_size,
            "trainer_predict_examples_per_s": round(n / trainer_seconds, 2),
            "yes_no_model_examples_per_s": round(n / inference_seconds, 2)}


# Profiler event names (substrings) -> where the time goes; the first match wins, unmatched time is "other".
PROFILE_GROUPS = {
    "data loading and collation": ("DataLoader", "collat"),
    "optimizer (AdamW)": ("Optimizer.", "adamw", "_foreach_", "zero_grad"),
    "attention (scaled dot product)": ("scaled_dot_product", "_softmax", "bmm"),
    "matrix products (linear layers)": ("addmm", "aten::mm", "matmul", "linear"),
    "embeddings": ("embedding",),
    "normalisation, activations, dropout": ("layer_norm", "gelu", "dropout", "tanh", "bernoulli"),
    "elementwise and copies": ("aten::add", "aten::mul", "aten::div", "copy_", "aten::sum", "aten::fill_",
                               "aten::clone", "aten::to", "aten::contiguous", "cat"),
}


def profile_steps(trainer_cls, args, model, train_dataset, collator, steps):
    "Self CPU time of `steps` training steps grouped by PROFILE_GROUPS, and the profiler's top-operator table."
    from torch.profiler import ProfilerActivity, profile
    args.max_steps = steps
    trainer = trainer_cls(model=model, args=args, train_dataset=train_dataset, data_collator=collator)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    groups = dict.fromkeys([*PROFILE_GROUPS, "other"], 0.0)
    for event in events:
        name = event.key.lower()
        group = next((g for g, keys in PROFILE_GROUPS.items() if any(k.lower() in name for k in keys)), "other")
        groups[group] += event.self_cpu_time_total
    shares = {g: round(t / total, 3) for g, t in sorted(groups.items(), key=lambda kv: -kv[1])}
    return {"steps": steps, "self_cpu_seconds": round(total / 1e6, 2), "share_by_group": shares}, \
        events.table(sort_by="self_cpu_time_total", row_limit=30)


def compiled_run(name, args, config, encoded):
    """The default path with the Trainer's `torch_compile` (inductor), timed after `args.compile` untimed steps.

    Compilation happens in the first steps, and again when a second sequence length arrives and the graphs become
    dynamic; a full run amortises both, so they are timed apart (`compile_seconds`). A failure to compile is
    reported as the run's `error` instead of losing the other runs' figures."""
    model, tokenizer = load_backbone(args.backbone, attention_dropout=config.attention_dropout, pooling=config.pooling,
                                     fast_dropout=config.fast_dropout)
    compile_args = bench_arguments(config, args.compile)
    compile_args.torch_compile, compile_args.torch_compile_backend = True, "inductor"
    try:
        start = time.perf_counter()
        BoolQTrainer(model=model, args=compile_args, train_dataset=encoded,
                     data_collator=make_collator(tokenizer)).train()
        compile_seconds = time.perf_counter() - start
        compile_args.max_steps = args.steps
        # The same module: the compiled graphs are cached on it, and the timed Trainer finds them.
        return {**run(name, BoolQTrainer, compile_args, model, encoded, make_collator(tokenizer), args.steps,
                      args.batch_size), "compile_warmup_steps": args.compile, "compile_seconds": round(compile_seconds, 1)}
    except Exception as error:  # noqa: BLE001 -- any compiler failure is a result to report, not a crash
        return {"name": name, "error": f"{type(error).__name__}: {error}"[:2000], "examples_per_s": None,
                "achieved_gflops": None, "useful_gflops": None}


def bench_arguments(config, steps):
    "boolq_nb.train's TrainingArguments for `config`, for `steps` optimizer steps without evaluation, saving or logs."
    bench_args = training_arguments(config)
    bench_args.max_steps, bench_args.eval_strategy, bench_args.save_strategy = steps, "no", "no"
    bench_args.load_best_model_at_end, bench_args.logging_strategy = False, "no"
    return bench_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--data-source", default=None, help="default: $BOOLQ_DATA_DIR, else google/boolq")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per path (default: one length-grouping megabatch of --train-examples)")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="training examples the batches are drawn from (default: the configuration's "
                             "max_train_samples, all of train where it has none)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--eval-examples", type=int, default=640, help="dev examples for the evaluation timing")
    parser.add_argument("--out", default="bench/results/train_speed.json")
    parser.add_argument("--config", default=str(ROOT/"configs"/"quickstart.yaml"),
                        help="the default configuration, whose speed settings (attention_dropout, pooling, "
                             "fast_dropout) the third run uses")
    parser.add_argument("--compile", type=int, default=0, metavar="WARMUP",
                        help="also time the default path under torch.compile, after WARMUP untimed steps (0: no)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="train the default path N more times, each between two peak measurements (0: no)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N steps of each project run (0: no profile)")
    args = parser.parse_args(argv)
    # Only the settings that change the speed of a step are read from the configuration file.
    speed_settings = ("attention_dropout", "pooling", "fast_dropout")
    configured = TrainConfig(**{k: v for k, v in load_param_file(args.config).items() if k in speed_settings},
                             report_to="none")
    default_name = (f"default ({Path(args.config).name}): attention_dropout {configured.attention_dropout}, "
                    f"pooling {configured.pooling}" + (", fast_dropout" if configured.fast_dropout else ""))

    torch.manual_seed(0)
    peaks = []
    bf16_native = native_bf16()
    def measure_peak(when):
        peaks.append({"when": when, "gflops_by_size": matmul_peak_gflops()})
        if bf16_native:  # emulated bfloat16 has no peak worth comparing with
            peaks[-1]["bf16_gflops_by_size"] = matmul_peak_gflops(dtype=torch.bfloat16)
        print(f"matmul GFLOP/s by size on {torch.get_num_threads()} threads, {when}: float32 "
              f"{peaks[-1]['gflops_by_size']}, bfloat16 {peaks[-1].get('bf16_gflops_by_size', 'not native')}",
              flush=True)
    measure_peak("before the runs")
    train_examples = args.train_examples or load_param_file(args.config).get("max_train_samples")
    data = load_boolq(args.data_source, max_train_samples=train_examples, max_eval_samples=1)["train"]
    args.steps = args.steps or megabatch_steps(len(data), args.batch_size)
    print(f"{args.steps} steps of {args.batch_size} from {len(data)} training examples", flush=True)
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
        warm_up(model, padded, DataCollatorWithPadding(tokenizer), args.batch_size)
        results.append(run("baseline: Trainer defaults, padded to max_length", Trainer, baseline_args, model, padded,
                           DataCollatorWithPadding(tokenizer), args.steps, args.batch_size))
        print(results[-1], flush=True)
        measure_peak(f"after {results[-1]['name']}")

        # The project's path: the very TrainingArguments and Trainer subclass boolq_nb.train uses, with the
        # backbone's own attention dropout and head, then with the default configuration's (attention dropout 0
        # lets PyTorch run its fused attention kernel in training), and that without fast dropout masks.
        config = TrainConfig(run_name="bench", backbone=args.backbone, max_length=args.max_length, use_title=True,
                             batch_size=args.batch_size, report_to="none", output_dir=scratch, model_dir=scratch,
                             precision="fp32")
        project_args = bench_arguments(config, args.steps)
        default_config = replace(config, **{k: getattr(configured, k) for k in speed_settings})
        encoded = tokenize_boolq(data, tokenizer, args.max_length, use_title=True)
        profiles, tables = {}, []
        paths = [("project: boolq_nb.train (dynamic padding, length grouping)", config),
                 (default_name, default_config)]
        if default_config.fast_dropout:
            paths.append((f"{default_name.removesuffix(', fast_dropout')}, PyTorch's dropout masks",
                          replace(default_config, fast_dropout=False)))
        bf16_name = f"{default_name}, bfloat16 autocast"
        if bf16_native:  # what precision auto trains with on this CPU
            paths.append((bf16_name, replace(default_config, precision="bf16")))
        for name, path_config in paths:
            model, tokenizer = load_backbone(args.backbone, attention_dropout=path_config.attention_dropout,
                                             pooling=path_config.pooling, fast_dropout=path_config.fast_dropout)
            use_training_attention(model, path_config.precision, "cpu", path_config.attention_dropout)
            path_args = bench_arguments(path_config, args.steps)
            results.append(run(name, BoolQTrainer, path_args, model, encoded, make_collator(tokenizer),
                               args.steps, args.batch_size))
            print(results[-1], flush=True)
            measure_peak(f"after {name}")
            if args.profile:
                profiles[name], table = profile_steps(BoolQTrainer, path_args, model, encoded,
                                                      make_collator(tokenizer), args.profile)
                tables.append(f"{name}: {args.profile} steps\n{table}\n")
                print(json.dumps(profiles[name], indent=1), flush=True)
        if tables:
            atomic_write_text(Path(args.out).with_suffix(".profile.txt"), "\n".join(tables))

        dev = load_boolq(args.data_source, max_train_samples=1, max_eval_samples=args.eval_examples)["validation"]
        dev_encoded = tokenize_boolq(dev, tokenizer, args.max_length, use_title=True)
        model.eval()
        evaluation = time_evaluation(model, tokenizer, dev, dev_encoded, config.eval_batch_size, args.max_length,
                                     scratch)
        print(evaluation, flush=True)

        if args.compile:
            results.append(compiled_run(f"{default_name}, torch.compile (inductor)", args, default_config, encoded))
            print(results[-1], flush=True)

        rounds = []
        if args.rounds:
            measure_peak("before round 1")
        for r in range(args.rounds):
            model, tokenizer = load_backbone(args.backbone, attention_dropout=default_config.attention_dropout,
                                             pooling=default_config.pooling, fast_dropout=default_config.fast_dropout)
            project_args.max_steps = args.steps
            rounds.append(run(f"{default_name}, round {r + 1}", BoolQTrainer, project_args, model, encoded,
                              make_collator(tokenizer), args.steps, args.batch_size))
            measure_peak(f"after round {r + 1}")
            around = max(rate for measured in peaks[-2:] for rate in measured["gflops_by_size"].values())
            rounds[-1].update(peak_gflops_around=around,
                              useful_share_of_peak_around=round(rounds[-1]["useful_gflops"] / around, 3))
            print(rounds[-1], flush=True)

    measure_peak("after the runs")
    peak = max(rate for measured in peaks for rate in measured["gflops_by_size"].values())
    bf16_peak = max((rate for measured in peaks for rate in measured.get("bf16_gflops_by_size", {}).values()),
                    default=None)
    baseline, project, default = results[:3]
    bf16 = next((r for r in results if r["name"] == bf16_name), None)
    bf16_report = {"bf16_native": bf16_native, "cpu": cpu_capability()}
    if bf16:
        bf16_report.update(
            bf16_path=bf16["name"], bf16_examples_per_s=bf16["examples_per_s"],
            bf16_speedup_over_default=round(bf16["examples_per_s"] / default["examples_per_s"], 2),
            bf16_speedup_over_baseline=round(bf16["examples_per_s"] / baseline["examples_per_s"], 2),
            bf16_peak_gflops=round(bf16_peak, 1), bf16_useful_gflops=bf16["useful_gflops"],
            bf16_useful_share_of_bf16_peak=round(bf16["useful_gflops"] / bf16_peak, 3),
            bf16_useful_share_of_fp32_peak=round(bf16["useful_gflops"] / peak, 3))
    report = {"backbone": args.backbone, "steps": args.steps, "batch_size": args.batch_size,
              "train_examples": len(data),
              "megabatch_examples": megabatch_steps(len(data), args.batch_size) * args.batch_size,
              "max_length": args.max_length, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "peak_gflops": round(peak, 1),
              "peak_measurements": peaks,
              "baseline_examples_per_s": baseline["examples_per_s"], "project_examples_per_s": project["examples_per_s"],
              "speedup": round(project["examples_per_s"] / baseline["examples_per_s"], 2),
              "achieved_gflops": project["achieved_gflops"],
              "achieved_share_of_peak": round(project["achieved_gflops"] / peak, 3),
              "baseline_achieved_gflops": baseline["achieved_gflops"],
              "default_config": os.path.relpath(args.config, ROOT), "default_path": default["name"],
              "default_examples_per_s": default["examples_per_s"],
              "default_speedup": round(default["examples_per_s"] / baseline["examples_per_s"], 2),
              "default_useful_gflops": default["useful_gflops"],
              "default_useful_share_of_peak": round(default["useful_gflops"] / peak, 3),
              "default_rounds": {"rounds": rounds,
                                 "median_useful_share_of_peak_around": round(float(np.median(
                                     [r["useful_share_of_peak_around"] for r in rounds])), 3) if rounds else None},
              **bf16_report,
              "evaluation": evaluation,
              "runs": results, "profile": profiles or None,
              "command": "python " + " ".join(sys.argv)}
    atomic_write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
