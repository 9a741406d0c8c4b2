"""Generated bad input (Hypothesis, seeded and bounded): /score in process and over HTTP, and the JSON-lines readers.

Every /score answer is a 2xx with one answer per item, in order, or a 4xx whose message names the problem; never a
5xx or a hang. Every reader either loads a file or raises a BoolQDataError naming the file (and line); boolq-predict
never leaves a partial output. `bench/fuzz.py` runs the same checks for thousands of inputs per target."""
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from boolq_nb.fuzzing import data_error_problem, jsonl_files, score_bodies, score_outcome_problem
from conftest import API_KEY, MAX_BATCH, MAX_BODY

# derandomize: the same examples on every run, so a failure here reproduces; no example database is written.
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
REQUEST_TIMEOUT = 30


@pytest.fixture(scope="module")
def scoring_service(served_model):
    from boolq_nb.serve import ScoringService, ServeSettings
    _, model_dir = served_model
    return ScoringService(ServeSettings(model_dir=model_dir, max_batch_size=MAX_BATCH, max_body_bytes=1_500_000))


def test_score_in_process(scoring_service):
    from boolq_nb.request import ScoreRequestError

    @settings(FUZZ, max_examples=300)
    @given(score_bodies())
    def check(body):
        try:
            status, payload = 200, scoring_service.score(body)
        except ScoreRequestError as e:
            status, payload = e.status, {"message": str(e)}
        assert score_outcome_problem(body, status, payload) is None, (status, payload)
    check()


METHODS = st.sampled_from(["POST", "POST", "POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS"])
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data", "application/json; charset=latin-1", ""])


def test_score_over_http(server):
    session = requests.Session()

    @settings(FUZZ, max_examples=60)
    @given(score_bodies(max_items=2 * MAX_BATCH), METHODS, CONTENT_TYPES)
    def check(body, method, content_type):
        headers = {"Authorization": f"Bearer {API_KEY}", **({"Content-Type": content_type} if content_type else {})}
        try:
            response = session.request(method, server + "/score", data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            pytest.fail(f"no answer within {REQUEST_TIMEOUT} s to {method} {body!r:.200}")
        assert response.status_code < 500, (response.status_code, response.text[:300])
        if method == "POST":
            try:
                payload = response.json()
            except ValueError:
                payload = None
            assert score_outcome_problem(body, response.status_code, payload) is None, (response.status_code,
                                                                                        response.text[:300])
        else:  # GET is the status page; other methods are refused
            assert response.status_code in (200, 405) if method in ("GET", "OPTIONS") else response.status_code == 405
    check()
    ok = session.post(server + "/score", json={"question": "is it", "passage": "It is."},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=REQUEST_TIMEOUT)
    assert ok.status_code == 200 and set(ok.json()) == {"answer", "probability"}  # still answering


def _readers():
    from boolq_nb.data import read_boolq_jsonl
    from boolq_nb.drift import read_pairs_jsonl
    from boolq_nb.predict import read_predict_jsonl
    return {"read_boolq_jsonl": read_boolq_jsonl, "read_pairs_jsonl": read_pairs_jsonl,
            "read_predict_jsonl": lambda path: [line for batch in read_predict_jsonl(path, 4) for line in batch]}


@pytest.mark.parametrize("reader", ["read_boolq_jsonl", "read_pairs_jsonl", "read_predict_jsonl"])
def test_jsonl_readers_load_or_name_file_and_line(reader, tmp_path_factory):
    read = _readers()[reader]
    folder = tmp_path_factory.mktemp(reader)

    @settings(FUZZ, max_examples=150)
    @given(jsonl_files())
    def check(data):
        path = folder/"input.jsonl"
        path.write_bytes(data)
        try:
            read(path)
        except Exception as e:  # noqa: BLE001 - the check is exactly which exceptions are allowed
            assert data_error_problem(path, e) is None, data_error_problem(path, e)
    check()


def test_predict_never_leaves_partial_output(served_model, tmp_path_factory):
    from boolq_nb.data import BoolQDataError
    from boolq_nb.predict import predict_jsonl
    model, _ = served_model
    folder = tmp_path_factory.mktemp("predict")

    @settings(FUZZ, max_examples=80)
    @given(jsonl_files())
    def check(data):
        source, output = folder/"input.jsonl", folder/"answers.jsonl"
        output.unlink(missing_ok=True)
        source.write_bytes(data)
        try:
            summary = predict_jsonl(model, source, output, batch_size=4)
        except BoolQDataError as e:
            assert str(source) in str(e)
            assert sorted(p.name for p in folder.iterdir()) == ["input.jsonl"], "a partial or temporary file was left"
            return
        lines = output.read_text(encoding="utf-8").splitlines()
        assert len(lines) == summary["n"] and all("answer" in json.loads(line) for line in lines)
    check()
