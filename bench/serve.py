"""Serving throughput and latency: boolq-serve (PyTorch and ONNX Runtime) against a naive per-request pipeline.

Run by hand (not a test):

    python bench/serve.py --model models/quickstart/model --out bench/results/serve.json

For each backend the real server (`python -m boolq_nb.serve`, i.e. azmlinfsrv) is started on a free loopback port in a
second process and loaded from this one at concurrency 1, 4 and 16 with single-item and 16-item requests. Every setting
is bounded by a request count and a sending time limit (requests in flight then finish), and the run by a total budget
after which remaining settings are recorded as skipped: about 6 minutes on 2 quiet cores. The naive baseline is a
`transformers` text-classification pipeline called once per question in a plain loop (no server, no batching): the
`speedup_vs_naive` of a setting is its items/s over the naive items/s, measured in the same run on the same inputs.
Inputs are BoolQ dev pairs when $BOOLQ_DATA_DIR is set, else synthetic tiny pairs.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boolq_nb.data import read_boolq_jsonl  # noqa: E402
from boolq_nb.io import atomic_write_json  # noqa: E402
from boolq_nb.model import YesNoModel  # noqa: E402
from boolq_nb.testing import tiny_boolq_records  # noqa: E402


def load_pairs(n: int) -> list[dict]:
    data_dir = os.environ.get("BOOLQ_DATA_DIR")
    if data_dir and (Path(data_dir)/"dev.jsonl").is_file():
        cols = read_boolq_jsonl(Path(data_dir)/"dev.jsonl")
        pairs = [{"question": q, "passage": p, "title": t} for q, p, t in zip(cols["question"], cols["passage"], cols["title"])]
        source = f"{data_dir}/dev.jsonl"
    else:
        pairs = [{k: r[k] for k in ("question", "passage", "title")} for r in tiny_boolq_records(n, seed=7)]
        source = "synthetic (boolq_nb.testing.tiny_boolq_records)"
    return pairs[:n], source


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, backend: str, max_batch: int, log: Path):
    port = _free_port()
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "boolq_nb.serve", "--model", model, "--port", str(port),
                             "--backend", backend, "--max-batch-size", str(max_batch)],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k != "BOOLQ_API_KEY"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # the ONNX backend exports the model on first start
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            if requests.get(url + "/", timeout=5).status_code == 200:
                return proc, url
        except requests.RequestException:  # not accepting yet, or the worker still loading
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not up after 300 s; see {log}")


def stop_server(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def summarise(latencies_s: list[float], wall_s: float, items_per_request: int) -> dict:
    ms = np.array(latencies_s) * 1000
    return {"requests": len(ms), "wall_s": round(wall_s, 3), "requests_per_s": round(len(ms) / wall_s, 3),
            "items_per_s": round(len(ms) * items_per_request / wall_s, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def load_server(url: str, pairs: list[dict], concurrency: int, items: int, max_requests: int, time_limit: float) -> dict:
    "Send up to `max_requests` requests (stopping after `time_limit` s) from `concurrency` threads; all must succeed."
    session_per_thread = {}
    bodies = [json.dumps({"inputs": [pairs[(i * items + j) % len(pairs)] for j in range(items)]}
                         if items > 1 else pairs[i % len(pairs)]).encode() for i in range(max_requests)]
    requests.post(url + "/score", data=bodies[0], timeout=120).raise_for_status()  # warm-up
    start = time.perf_counter()
    deadline = start + time_limit

    def one(i):
        if time.perf_counter() > deadline:
            return None
        session = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        t0 = time.perf_counter()
        response = session.post(url + "/score", data=bodies[i], timeout=120)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            raise RuntimeError(f"request {i} failed: {response.status_code} {response.text[:200]}")
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for t in pool.map(one, range(max_requests)) if t is not None]
    return summarise(latencies, time.perf_counter() - start, items)


def naive_baseline(model_dir: str, pairs: list[dict], items: int, max_requests: int, time_limit: float) -> dict:
    "A text-classification pipeline called once per question in a plain loop: what a first prototype does."
    from transformers import pipeline
    info = json.loads((Path(model_dir)/"boolq_nb.json").read_text())
    classify = pipeline("text-classification", model=model_dir, device="cpu")
    classify({"text": pairs[0]["question"], "text_pair": pairs[0]["passage"]}, truncation="only_second",
             max_length=info["max_length"])  # warm-up
    latencies, start = [], time.perf_counter()
    for i in range(max_requests):
        if time.perf_counter() - start > time_limit:
            break
        t0 = time.perf_counter()
        for j in range(items):
            pair = pairs[(i * items + j) % len(pairs)]
            classify({"text": pair["question"], "text_pair": pair["passage"]}, truncation="only_second",
                     max_length=info["max_length"])
        latencies.append(time.perf_counter() - t0)
    return summarise(latencies, time.perf_counter() - start, items)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=str(ROOT/"bench"/"results"/"serve.json"))
    p.add_argument("--backends", default="torch,onnx", help="comma-separated: torch, onnx, onnx-int8")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--batch-sizes", default="1,16", help="items per request")
    p.add_argument("--max-requests", type=int, default=300, help="per setting")
    p.add_argument("--time-limit", type=float, default=10.0,
                   help="seconds per setting to send requests (those in flight then still finish)")
    p.add_argument("--pairs", type=int, default=512, help="distinct inputs cycled through")
    p.add_argument("--budget", type=float, default=450.0,
                   help="total seconds; settings not started by then are listed as skipped (a busy machine)")
    args = p.parse_args(argv)
    if not (Path(args.model)/"boolq_nb.json").is_file():
        p.error(f"{args.model}: not a boolq_nb model folder (no boolq_nb.json)")
    pairs, source = load_pairs(args.pairs)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    model = YesNoModel.load(args.model, device="cpu")
    results = {"model": args.model, "model_info": model.info, "max_length": model.max_length, "inputs": source,
               "cpu_count": os.cpu_count(), "max_requests": args.max_requests, "time_limit_s": args.time_limit,
               "naive": {}, "settings": [], "skipped": []}
    del model
    t_start = time.time()
    for items in batch_sizes:
        results["naive"][f"items_{items}"] = naive_baseline(args.model, pairs, items, args.max_requests, args.time_limit)
        print("naive", items, results["naive"][f"items_{items}"], flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="boolq-bench-serve-"))  # server logs, kept out of the repository
    print("server logs in", log_dir, flush=True)
    for backend in args.backends.split(","):
        if time.time() - t_start > args.budget:
            results["skipped"] += [{"backend": backend, "concurrency": c, "items_per_request": items,
                                    "reason": f"--budget of {args.budget} s spent"}
                                   for items in batch_sizes for c in concurrency]
            continue
        proc, url = start_server(args.model, backend, max(batch_sizes), log_dir/f"serve-{backend}.log")
        try:
            for items in batch_sizes:
                for c in concurrency:
                    if time.time() - t_start > args.budget:
                        results["skipped"].append({"backend": backend, "concurrency": c, "items_per_request": items,
                                                   "reason": f"--budget of {args.budget} s spent"})
                        continue
                    row = {"backend": backend, "concurrency": c, "items_per_request": items,
                           **load_server(url, pairs, c, items, args.max_requests, args.time_limit)}
                    row["speedup_vs_naive"] = round(row["items_per_s"] / results["naive"][f"items_{items}"]["items_per_s"], 3)
                    results["settings"].append(row)
                    print(row, flush=True)
        finally:
            stop_server(proc)
    results["total_s"] = round(time.time() - t_start, 1)
    atomic_write_json(args.out, results)
    print(f"wrote {args.out} in {results['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
