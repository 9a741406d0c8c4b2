"""The long fuzzing run: generated bad input against /score (in process and over HTTP) and the JSON-lines readers.

Run by hand (not a test; the bounded, seeded version of each check runs in `tests/test_fuzz.py`):

    python bench/fuzz.py --examples 10000 --out bench/results/fuzz.json

Per target it counts the inputs tried, problems (a 5xx, an answer that breaks the rule of
`boolq_nb.fuzzing.score_outcome_problem`, or an exception other than the clear error a reader must raise), hangs (no
answer within the request timeout) and distinct error messages (numbers blanked). The server is the real one
(`python -m boolq_nb.serve`, azmlinfsrv) on a free loopback port, serving a tiny random model by default: what is
fuzzed is the validation in front of the model, which does not depend on its weights (`--model` serves another).
"""
import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import requests
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT/"bench"))

from boolq_nb.data import read_boolq_jsonl  # noqa: E402
from boolq_nb.drift import read_pairs_jsonl  # noqa: E402
from boolq_nb.fuzzing import data_error_problem, fuzz_target, jsonl_files, score_bodies, score_outcome_problem  # noqa: E402
from boolq_nb.io import atomic_write_json  # noqa: E402
from boolq_nb.model import YesNoModel  # noqa: E402
from boolq_nb.onnx import load_model  # noqa: E402
from boolq_nb.predict import predict_jsonl, read_predict_jsonl  # noqa: E402
from boolq_nb.request import ScoreRequestError  # noqa: E402
from boolq_nb.serve import ScoringService, ServeSettings  # noqa: E402
from boolq_nb.testing import make_tiny_roberta  # noqa: E402
from serve import start_server, stop_server  # noqa: E402

METHODS = ["POST", "POST", "POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS"]
CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]


def in_process_check(service):
    def check(body):
        try:
            status, payload = 200, service.score(body)
        except ScoreRequestError as e:
            status, payload = e.status, {"message": str(e)}
        except Exception as e:  # noqa: BLE001 - what the server would answer with a 500
            return f"HTTP 500 ({type(e).__name__}: {str(e)[:120]})", None
        return score_outcome_problem(body, status, payload), payload.get("message") if status >= 400 else None
    return check


def http_check(url: str, timeout: float):
    session = requests.Session()
    def check(args):
        body, method, content_type = args
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = session.request(method, url + "/score", data=body, headers=headers, timeout=timeout)
        except requests.Timeout:
            return f"hang: no answer within {timeout} s", None
        except requests.ConnectionError as e:
            return f"connection error: {e}", None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message = payload.get("message") if isinstance(payload, dict) and response.status_code >= 400 else None
        if method == "POST":
            return score_outcome_problem(body, response.status_code, payload), message
        expected = (200, 405) if method in ("GET", "OPTIONS") else (405,)
        return (None if response.status_code in expected else f"{method}: HTTP {response.status_code}"), message
    return check


def reader_check(read, folder: Path):
    path = folder/"input.jsonl"
    def check(data):
        path.write_bytes(data)
        try:
            read(path)
        except Exception as e:  # noqa: BLE001 - which exceptions are allowed is the check
            return data_error_problem(path, e), str(e).split("\n")[0].replace(str(path), "<file>")
        return None, None
    return check


def predict_check(model, folder: Path):
    source, output = folder/"predict-input.jsonl", folder/"answers.jsonl"
    def check(data):
        output.unlink(missing_ok=True)
        source.write_bytes(data)
        try:
            predict_jsonl(model, source, output, batch_size=8)
        except Exception as e:  # noqa: BLE001
            left = sorted(p.name for p in folder.iterdir() if p.name != source.name)
            problem = data_error_problem(source, e) or (f"left {left} behind" if left else None)
            return problem, str(e).split("\n")[0].replace(str(source), "<file>")
        return None, None
    return check


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", message=".*duplicate .question, passage. pair")  # generated files repeat lines
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000, help="generated inputs per target")
    parser.add_argument("--http-examples", type=int, default=None, help="for the HTTP target (default: --examples)")
    parser.add_argument("--model", default=None, help="model folder to serve (default: a tiny random model)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before an HTTP request counts as a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT/"bench"/"results"/"fuzz.json"))
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="boolq-fuzz-"))
    model_dir = Path(args.model) if args.model else YesNoModel.from_backbone(
        str(make_tiny_roberta(tmp/"tiny")), max_length=64, device="cpu").save(tmp/"model")
    service = ScoringService(ServeSettings(model_dir=model_dir, max_batch_size=64, max_body_bytes=1_000_000))
    model = load_model(model_dir)
    targets, started = {}, time.time()

    def record(name, strategy, check, n):
        t0 = time.time()
        counts = fuzz_target(strategy, check, n, args.seed)
        targets[name] = {**counts._asdict(), "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(targets[name]), flush=True)

    record("score (in process)", score_bodies(), in_process_check(service), args.examples)
    proc, url = start_server(str(model_dir), "torch", 64, tmp/"server.log")
    try:
        record("score (HTTP, azmlinfsrv)", st.tuples(score_bodies(), st.sampled_from(METHODS), st.sampled_from(CONTENT_TYPES)),
               http_check(url, args.timeout), args.http_examples or args.examples)
        healthy = requests.post(url + "/score", json={"question": "is it", "passage": "It is."}, timeout=30).status_code
    finally:
        stop_server(proc)
    readers = {"read_boolq_jsonl (training data)": read_boolq_jsonl,
               "read_pairs_jsonl (boolq-drift input)": read_pairs_jsonl,
               "read_predict_jsonl (boolq-predict input)": lambda p: [x for b in read_predict_jsonl(p, 8) for x in b]}
    for name, read in readers.items():
        record(name, jsonl_files(), reader_check(read, mkdir(tmp/"readers")), args.examples)
    record("boolq-predict output (never partial)", jsonl_files(), predict_check(model, mkdir(tmp/"predict")),
           args.examples // 5)
    result = {"examples_per_target": args.examples, "seed": args.seed, "timeout_s": args.timeout,
              "model": "tiny random RoBERTa" if not args.model else str(args.model),
              "server_answers_after_http_fuzzing": healthy, "wall_s": round(time.time() - started, 1),
              "targets": targets,
              "reproduce": f"python bench/fuzz.py --examples {args.examples} --seed {args.seed}"}
    atomic_write_json(Path(args.out), result)
    print(json.dumps({k: (v["tried"], v["problems"], v["hangs"]) for k, v in targets.items()}))
    return 0 if all(v["problems"] == 0 for v in targets.values()) and healthy == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
