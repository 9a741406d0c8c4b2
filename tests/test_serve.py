"""boolq-serve (Azure's azmlinfsrv running boolq_nb/serve.py) over real HTTP, and boolq-predict from the command line."""
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import API_KEY, MAX_BATCH, MAX_BODY, MMAP_THRESHOLD, run_cli

PREDICT = ["-m", "boolq_nb.predict"]


AUTH = {"Authorization": f"Bearer {API_KEY}"}
PAIRS = [("is the castle old", "The castle is indeed old. It was described in many sources."),
         ("is the river long", "The river is not at all long. Its place in the region is small."),
         ("is the museum famous", "The museum is indeed famous."),
         ("is the treaty public", "The treaty is not at all public according to several accounts.")]


def _score(url, body, headers=AUTH):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url + "/score", data=data, headers={"Content-Type": "application/json", **headers}, timeout=60)


def test_health_and_status(server):
    assert requests.get(server + "/", timeout=10).text == "Healthy"
    status = requests.get(server + "/score", headers=AUTH, timeout=10).json()
    assert status["status"] == "ready" and status["backend"] == "torch" and status["max_batch_size"] == MAX_BATCH
    assert status["drift"]["enabled"] is False and "no drift monitor saved" in status["drift"]["reason"]
    # --malloc-mmap-threshold reached the worker, whose glibc took it
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert status["memory"] == {"malloc_mmap_threshold": MMAP_THRESHOLD, "set": glibc}


def test_single_and_batch_in_input_order(server, served_model):
    model, _ = served_model
    expected, _ = model.predict_proba([q for q, _ in PAIRS], [p for _, p in PAIRS])
    single = _score(server, {"question": PAIRS[0][0], "passage": PAIRS[0][1]})
    assert single.status_code == 200, single.text
    assert set(single.json()) == {"answer", "probability"}
    assert single.json()["answer"] == bool(expected[0] >= 0.5)
    batch = _score(server, {"inputs": [{"question": q, "passage": p} for q, p in PAIRS]})
    assert batch.status_code == 200, batch.text
    answers = batch.json()
    np.testing.assert_allclose([a["probability"] for a in answers], expected, atol=1e-4)
    assert [a["answer"] for a in answers] == list(expected >= 0.5)
    assert expected.std() > 0.01, "the answers should differ, or input order is not really checked"


def test_long_passage_is_truncated_and_says_so(server):
    response = _score(server, {"question": "is it long", "passage": "a very long passage " * 100})
    assert response.status_code == 200 and response.json()["truncated"] is True


BAD_REQUESTS = [
    (b'{"question": "is it", "passage": ', 400, "request body is not valid JSON"),
    (b'{"question": "is it"}', 400, "field 'passage' is missing"),
    (b'{"question": ["is it"], "passage": "p"}', 400, "field 'question' must be a string"),
    (b'{"question": "is it", "passage": "  "}', 400, "field 'passage' is empty"),
    (b'{"question": "", "passage": "p"}', 400, "field 'question' is empty"),
    (b'[{"question": "is it", "passage": "p"}]', 400, "request body must be a JSON object, got list"),
    (b'{"inputs": {"question": "q", "passage": "p"}}', 400, "'inputs' must be a list of objects, got dict"),
    (b'{"inputs": []}', 400, "'inputs' is empty"),
    (b'{"inputs": [{"question": "q", "passage": "p"}, 7]}', 400, "inputs[1]: expected a JSON object"),
    (json.dumps({"inputs": [{"question": "q", "passage": "p"}] * (MAX_BATCH + 1)}).encode(), 413,
     f"'inputs' has {MAX_BATCH + 1} items; at most {MAX_BATCH} per request"),
    (json.dumps({"question": "q", "passage": "p" * MAX_BODY}).encode(), 413,
     f"request body is over the limit of {MAX_BODY} bytes"),
    ('{"question": "caf\u00e9?", "passage": "p"}'.encode("latin-1"), 400, "request body is not valid UTF-8"),
    (b"", 400, "request body is empty"),
    (json.dumps({"question": "is " * 80, "passage": "p"}).encode(), 400, "tokens long"),
]


@pytest.mark.parametrize("body,status,message", BAD_REQUESTS, ids=[m for _, _, m in BAD_REQUESTS])
def test_bad_input_gets_4xx_naming_the_problem(server, body, status, message):
    response = _score(server, body)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert _score(server, {"question": "is it", "passage": "It is indeed."}).status_code == 200  # still answering


def test_api_key_required(server):
    body = {"question": "is it", "passage": "It is indeed."}
    missing = _score(server, body, headers={})
    assert missing.status_code == 401 and "missing API key" in missing.json()["message"]
    assert _score(server, body, headers={"x-api-key": "wrong"}).status_code == 401
    assert _score(server, body, headers={"x-api-key": API_KEY}).status_code == 200
    assert requests.get(server + "/score", timeout=10).status_code == 401


def test_concurrent_requests_get_their_own_answers_in_order(server, served_model):
    "64 requests from 16 clients, batched together by the server's model thread: each gets its own answers, in order."
    model, _ = served_model
    expected, _ = model.predict_proba([q for q, _ in PAIRS], [p for _, p in PAIRS])
    def items(i):  # a different sequence of pairs for every request
        return [(i + k * (1 + i % 3)) % len(PAIRS) for k in range(1 + i % 3)]
    def one(i):
        body = {"inputs": [{"question": PAIRS[j][0], "passage": PAIRS[j][1]} for j in items(i)]}
        response = _score(server, body)
        return response.status_code, [a["probability"] for a in response.json()]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert [status for status, _ in results] == [200] * 64
    for i, (_, probs) in enumerate(results):
        np.testing.assert_allclose(probs, expected[items(i)], atol=1e-4, err_msg=f"request {i}")
    served = requests.get(server + "/score", headers=AUTH, timeout=10).json()["batching"]["served"]
    assert served["requests"] >= 64 and served["model_calls"] >= 1


class _GatedInfer:
    "Wraps the service's model call: records each call's size and holds the first at a gate until released."
    def __init__(self, infer):
        self.infer, self.sizes = infer, []
        self.gate, self.entered = threading.Event(), threading.Event()
    def __call__(self, items):
        self.sizes.append(len(items))
        self.entered.set()
        self.gate.wait(60)
        return self.infer(items)


def _wait_until(condition, what, timeout=60):
    "Wait for the model thread to reach a state (the limit only stops a broken test from hanging)."
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


@pytest.fixture
def gated_service(served_model):
    from boolq_nb.serve import ScoringService, ServeSettings
    _, model_dir = served_model
    service = ScoringService(ServeSettings(model_dir=model_dir, max_queue=6, max_padding=1.0))
    gated = service.batcher.infer = _GatedInfer(service.batcher.infer)
    yield service, gated
    gated.gate.set()
    service.close()


def test_waiting_requests_share_one_model_call(gated_service, served_model):
    "While the model thread is busy, requests queue; it then answers all of them in one forward pass."
    service, gated = gated_service
    model, _ = served_model
    expected, _ = model.predict_proba([q for q, _ in PAIRS], [p for _, p in PAIRS])
    bodies = [json.dumps({"question": q, "passage": p}).encode() for q, p in PAIRS]
    with ThreadPoolExecutor(len(PAIRS) + 1) as pool:
        first = pool.submit(service.score, bodies[0])
        assert gated.entered.wait(60)
        waiting = [pool.submit(service.score, body) for body in bodies]
        _wait_until(lambda: service.batcher._queued_items == len(PAIRS), "all requests queued")
        gated.gate.set()
        answers = [f.result(60) for f in waiting]
    assert first.result(60)["answer"] == bool(expected[0] >= 0.5)
    assert gated.sizes == [1, len(PAIRS)]
    np.testing.assert_allclose([a["probability"] for a in answers], expected, atol=1e-4)


def test_full_queue_gets_503_with_retry_after(gated_service):
    "A request that would overfill the queue is refused at once (503, Retry-After), through the entry script's run()."
    import flask
    import boolq_nb.serve as serve
    service, gated = gated_service
    body = json.dumps({"inputs": [{"question": q, "passage": p} for q, p in PAIRS[:3]]})
    app = flask.Flask("test")
    loaded, serve._service = serve._service, service
    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(service.score, body.encode())
            assert gated.entered.wait(60)
            queued = [pool.submit(service.score, body.encode()) for _ in range(2)]  # 6 items: the queue is full
            _wait_until(lambda: service.batcher._queued_items == 6, "six items queued")
            with app.test_request_context("/score", method="POST", data=body):
                busy = serve.run(flask.request)
            gated.gate.set()
            assert [len(f.result(60)) for f in [first, *queued]] == [3, 3, 3]
    finally:
        serve._service = loaded
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    assert "items already queued (limit 6)" in json.loads(busy.get_data())["message"]


def test_refuses_public_bind_without_key(served_model, tmp_path):
    _, model_dir = served_model
    env = {k: v for k, v in os.environ.items() if k != "BOOLQ_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "boolq_nb.serve", "--model", str(model_dir), "--host", "0.0.0.0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "refusing to bind to 0.0.0.0 without an API key" in proc.stderr


def test_predict_cli_single_and_file(served_model, tmp_path):
    model, model_dir = served_model
    proc = run_cli([*PREDICT, "--model", str(model_dir), "--question", PAIRS[0][0], "--passage", PAIRS[0][1]], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected, _ = model.predict_proba([q for q, _ in PAIRS], [p for _, p in PAIRS])
    assert json.loads(proc.stdout)["answer"] == bool(expected[0] >= 0.5)

    labels = [True, False, True, False]
    lines = [json.dumps({"question": q, "passage": p, "answer": a}) for (q, p), a in zip(PAIRS, labels)]
    (tmp_path/"in.jsonl").write_text("\n".join(lines) + "\n")
    proc = run_cli([*PREDICT, "--model", str(model_dir), "--input", "in.jsonl", "--output", "out.jsonl",
                    "--batch-size", "3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    out = [json.loads(line) for line in (tmp_path/"out.jsonl").read_text().splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4]
    np.testing.assert_allclose([o["probability"] for o in out], expected, atol=1e-4)
    assert summary["n"] == 4 and summary["n_labelled"] == 4
    assert summary["accuracy"] == pytest.approx(np.mean((expected >= 0.5) == np.array(labels)))


def test_predict_cli_malformed_line_names_it_and_writes_nothing(served_model, tmp_path):
    _, model_dir = served_model
    (tmp_path/"in.jsonl").write_text(json.dumps({"question": "q", "passage": "p"}) + "\n"
                                     + '{"question": "q", "passage": "p"\n')
    proc = run_cli([*PREDICT, "--model", str(model_dir), "--input", "in.jsonl", "--output", "out.jsonl",
                    "--batch-size", "1"], cwd=tmp_path)
    assert proc.returncode == 2
    assert "in.jsonl:2: not valid JSON" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_predict_cli_onnx_agrees_with_torch(served_model, tmp_path):
    model, model_dir = served_model
    lines = [json.dumps({"question": q, "passage": p}) for q, p in PAIRS]
    (tmp_path/"in.jsonl").write_text("\n".join(lines) + "\n")
    proc = run_cli([*PREDICT, "--model", str(model_dir), "--backend", "onnx", "--input", "in.jsonl",
                    "--output", "out.jsonl"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected, _ = model.predict_proba([q for q, _ in PAIRS], [p for _, p in PAIRS])
    got = [json.loads(line)["probability"] for line in (tmp_path/"out.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_every_flag_of_serve_and_predict_explains_itself():
    "Each action of both parsers has a help text that says more than its default."
    import re
    from boolq_nb.predict import build_predict_parser
    from boolq_nb.serve import build_serve_parser
    for parser in (build_serve_parser(), build_predict_parser()):
        for action in parser._actions:
            text = (action.help or "").strip()
            assert text and not re.fullmatch(r"\(?default:? [^ ]*\)?", text), (parser.prog, action.option_strings, text)


def test_predict_progress_on_stderr_leaves_output_unchanged(served_model, tmp_path, capsys):
    "boolq-predict's progress bar goes to stderr only: the answers and the summary are the same with --quiet."
    from boolq_nb.predict import main
    _, model_dir = served_model
    lines = [json.dumps({"question": q, "passage": p, "answer": i % 2 == 0}) for i, (q, p) in enumerate(PAIRS * 3)]
    (tmp_path/"in.jsonl").write_text("\n".join(lines) + "\n")
    outputs = {}
    for mode, flags in (("progress", []), ("quiet", ["--quiet"])):
        out = tmp_path/f"out-{mode}.jsonl"
        assert main(["--model", str(model_dir), "--input", str(tmp_path/"in.jsonl"), "--output", str(out),
                     "--batch-size", "5", *flags]) == 0
        captured = capsys.readouterr()
        summary = json.loads(captured.out)
        summary.pop("output")
        outputs[mode] = (out.read_bytes(), summary, captured.err)
    assert outputs["progress"][:2] == outputs["quiet"][:2]
    assert "boolq-predict" in outputs["progress"][2] and "12/12" in outputs["progress"][2]
    assert "boolq-predict" not in outputs["quiet"][2]
    assert b"boolq-predict" not in outputs["progress"][0]


@pytest.fixture
def model_copy(served_model, tmp_path):
    "A copy of the served model's folder, so that a backends.json written here never reaches the shared server."
    import shutil
    _, model_dir = served_model
    return Path(shutil.copytree(model_dir, tmp_path/"model"))


@pytest.mark.parametrize("int8,onnx,chosen,measured", [
    (0.70, 0.71, "onnx-int8", ["onnx-int8"]),        # int8 within the bar: chosen, onnx not measured
    (0.60, 0.705, "onnx", ["onnx-int8", "onnx"]),    # int8 outside: onnx
    (0.60, 0.80, "torch", ["onnx-int8", "onnx"]),    # neither: PyTorch
])
def test_record_backends_chooses_the_fastest_within_the_bar(model_copy, monkeypatch, int8, onnx, chosen, measured):
    "On the tiny model with stubbed accuracies (PyTorch's 0.70): the record, and what `auto` then serves."
    import boolq_nb.onnx as bq_onnx
    asked = []
    def stubbed(model_dir, backend, *args):
        asked.append(backend)
        return {"onnx-int8": int8, "onnx": onnx}[backend]
    monkeypatch.setattr(bq_onnx, "accuracy_on_backend", stubbed)
    labels = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    record = bq_onnx.record_backends(model_copy, ["q"] * 10, ["p"] * 10, None, labels,
                                     pytorch_probabilities=np.full(10, 0.9))  # "yes" to all: 70 % right
    assert asked == measured == list(record["accuracy"])
    assert (record["chosen"], record["reference_accuracy"], record["bar"], record["n"]) == (chosen, 0.7, 0.005, 10)
    assert json.loads((model_copy/"backends.json").read_text()) == record
    backend, why = bq_onnx.resolve_backend(model_copy)
    assert backend == chosen and why.startswith(f"serving {chosen}: ") and str(model_copy/"backends.json") in why


def test_azure_settings_serve_the_recorded_backend(model_copy, monkeypatch):
    "BOOLQ_BACKEND unset (as in an Azure deployment that names none): the service runs what backends.json chose."
    import boolq_nb.onnx as bq_onnx
    from boolq_nb.serve import ScoringService, ServeSettings
    monkeypatch.setattr(bq_onnx, "accuracy_on_backend", lambda model_dir, backend, *args: {"onnx-int8": 0.5, "onnx": 0.7}[backend])
    bq_onnx.record_backends(model_copy, ["q"] * 10, ["p"] * 10, None, [1] * 7 + [0] * 3, np.full(10, 0.9))
    settings = ServeSettings.from_env({"BOOLQ_MODEL_DIR": str(model_copy)})
    assert settings.backend == "auto"
    service = ScoringService(settings)
    try:
        status = service.status()
        assert status["backend"] == "onnx" and status["model"].startswith("OnnxYesNoModel")
        assert status["backend_reason"].startswith("serving onnx: accuracy 70.0 % against PyTorch's 70.0 % on 10")
    finally:
        service.close()


def test_record_backends_command_on_tiny_data(model_copy, tiny_assets, capsys):
    "`boolq-serve --record-backends --data DIR`: a real measurement on the tiny dev split, written beside the model."
    from boolq_nb.serve import main
    assert main(["--model", str(model_copy), "--record-backends", "--data", str(tiny_assets["data"])]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert json.loads((model_copy/"backends.json").read_text()) == record
    assert record["n"] == 48 and record["candidates"] == ["onnx-int8", "onnx"]
    # float32 ONNX gives PyTorch's answers, so one of the two candidates passes: the measurement stops there
    assert record["chosen"] in ("onnx-int8", "onnx") and list(record["accuracy"])[-1] == record["chosen"]
    assert captured.err.strip().startswith(f"boolq-serve: serving {record['chosen']}: accuracy ")
    assert main(["--model", str(model_copy), "--record-backends", "--data", str(model_copy/"missing.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
