"""boolq-serve (Azure's azmlinfsrv running boolq_nb/serve.py) over real HTTP, and boolq-predict from the command line."""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from conftest import API_KEY, MAX_BATCH, MAX_BODY, run_cli

PREDICT = ["-c", "import sys; from boolq_nb.serve import predict_main; sys.exit(predict_main())"]


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


def test_concurrent_requests_all_succeed(server):
    def one(i):
        q, p = PAIRS[i % len(PAIRS)]
        body = {"inputs": [{"question": q, "passage": p}] * (1 + i % 3)}
        response = _score(server, body)
        return response.status_code, len(response.json())
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert results == [(200, 1 + i % 3) for i in range(64)]


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
