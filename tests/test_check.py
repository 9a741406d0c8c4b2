"""boolq-check: the behavioural suite on a saved model (CLI, JSON report), over HTTP against a stub of boolq-serve, bad input."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import run_cli

REPORT_KEYS = {"model_dir", "model", "data", "seed", "n_facts", "n_per_test", "n_cases", "summary", "tests", "seconds"}
TEST_KEYS = {"test", "kind", "source", "description", "n", "failures", "failure_rate", "answer_error_rate",
             "failing_examples"}


@pytest.fixture(scope="module")
def model_dir(tiny_assets, tmp_path_factory):
    from boolq_nb.model import YesNoModel
    return YesNoModel.from_backbone(str(tiny_assets["backbone"]), max_length=128, device="cpu").save(
        tmp_path_factory.mktemp("check")/"model")


def _check_report(report, n_facts, with_dev):
    assert REPORT_KEYS <= set(report), set(report)
    assert {t["kind"] for t in report["tests"]} == {"MFT", "INV", "DIR"}
    assert {t["source"] for t in report["tests"]} == ({"templates", "dev"} if with_dev else {"templates"})
    assert sum(t["n"] for t in report["tests"]) == report["n_cases"]
    assert sum(s["n"] for s in report["summary"].values()) == report["n_cases"]
    assert report["n_facts"] == n_facts
    for t in report["tests"]:
        assert set(t) == TEST_KEYS, t
        assert t["failure_rate"] == round(t["failures"] / t["n"], 4)
        assert len(t["failing_examples"]) == min(t["failures"], 3)
        for e in t["failing_examples"]:
            assert 0 <= e["p_yes"] <= 1 and {"question", "passage", "title", "answer"} <= set(e)
            assert ("base" in e) == (t["kind"] != "MFT")


def test_cli_on_a_saved_model_writes_a_complete_report(model_dir, tiny_assets, tmp_path):
    out = tmp_path/"reports"/"check.json"
    proc = run_cli(["-m", "boolq_nb.check", "--model", str(model_dir), "--data", str(tiny_assets["data"]),
                    "--output", str(out), "--n-facts", "3", "--n-per-test", "10"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    _check_report(report, n_facts=3, with_dev=True)
    assert report["model_dir"] == str(model_dir.resolve()) and report["data"] == str(tiny_assets["data"].resolve())
    assert proc.stdout.startswith("| test | kind | source | n | failure rate | answer error rate |")
    assert proc.stdout.count("\n| ") == len(report["tests"])
    assert not list(out.parent.glob(".*tmp*"))  # the atomic write left nothing behind


def test_every_flag_has_help():
    from boolq_nb.check import build_parser
    actions = [a for a in build_parser()._actions if a.dest != "help"]
    assert actions and all(a.help for a in actions), [a.dest for a in actions if not a.help]


def test_always_yes_fails_directional_tests_and_an_oracle_passes(tiny_assets):
    from boolq_nb.check import build_suite, read_labelled_examples, run_suite, summarize
    suite = build_suite(seed=3, examples=read_labelled_examples(tiny_assets["data"]), n_facts=4, n_per_test=12)
    always_yes = run_suite(lambda q, p, t: np.ones(len(q)), suite)
    assert {r["failure_rate"] for r in always_yes if r["kind"] == "DIR"} == {1.0}
    assert summarize(always_yes)["DIR"]["failure_rate"] == 1.0
    assert summarize(always_yes)["INV"]["failure_rate"] == 0.0
    answers = {}
    for case in suite:
        for e in (case.example, case.base):
            if e is not None:
                assert answers.setdefault(e.key, e.answer) == e.answer, e  # no input has two expected answers
    oracle = run_suite(lambda q, p, t: np.array([float(answers[k]) for k in zip(q, p, t)]), suite)
    assert {r["failure_rate"] for r in oracle} == {0.0}


def test_generators_on_examples_with_known_answers():
    from boolq_nb.check import Example, dev_cases, directional
    from boolq_nb.edits import negate_question, swap_antonym
    base = Example("is it legal to do a cover of a song", "Covers are legal with a licence.", "Cover version", True)
    negated = directional("negated question", base, "dev", question=negate_question(base.question))
    assert (negated.example.question, negated.example.answer) == ("is it not legal to do a cover of a song", False)
    assert swap_antonym("was the sears tower the tallest building in the world", True) == \
        "was the sears tower the shortest building in the world"
    assert swap_antonym("can you get more than one varsity letter") is None
    cases = dev_cases([base, Example("is the sky blue", "The sky is blue.", "Sky", True)], seed=0, n_per_test=5)
    assert all(c.example.answer == c.base.answer for c in cases if c.kind == "INV")
    assert [c.example.question for c in cases if c.kind == "DIR"] == [negated.example.question]


@pytest.mark.skipif(not os.environ.get("BOOLQ_DATA_DIR"), reason="needs real BoolQ ($BOOLQ_DATA_DIR)")
def test_suite_from_real_dev_is_consistent_and_small():
    from boolq_nb.check import build_suite, read_labelled_examples
    suite = build_suite(examples=read_labelled_examples(os.environ["BOOLQ_DATA_DIR"]))
    dev = [c for c in suite if c.source == "dev"]
    assert {c.test for c in dev if c.kind == "DIR"} == {"negated question", "antonym in question"}
    assert len(suite) < 800


class _FlaskResponse:
    "A Flask test-client response seen through the part of `requests.Response` that boolq_nb.check reads."
    def __init__(self, response):
        self.status_code, self.headers, self.text = response.status_code, response.headers, response.get_data(as_text=True)

    def json(self):
        return json.loads(self.text)


@pytest.fixture()
def stub_server(served_model, monkeypatch):
    """`requests.post` answered in-process by a Flask app that speaks boolq-serve's /score: its own request parser,
    API key check and answer format, with the tiny served model. No socket is opened."""
    from flask import Flask, request
    from boolq_nb import request as request_checks, serve
    model, _ = served_model
    app, seen = Flask("stub-score"), []

    @app.post("/score")
    def score():
        if problem := serve.api_key_problem(request.headers, "secret"):
            return {"message": problem}, 401
        try:
            items, batched = request_checks.parse_score_body(request.get_data(), max_items=8)
        except request_checks.ScoreRequestError as e:
            return {"message": str(e)}, e.status
        seen.append(len(items))
        answers = model.predict([i["question"] for i in items], [i["passage"] for i in items],
                                [i.get("title", "") for i in items])
        return json.dumps([request_checks.prediction_json(a) for a in answers]), 200, {"Content-Type": "application/json"}

    client = app.test_client()

    def post(url, json=None, headers=None, timeout=None):
        assert url == "http://127.0.0.1:6789/score" and timeout is not None
        return _FlaskResponse(client.post("/score", json=json, headers=headers or {}))
    monkeypatch.setattr(requests, "post", post)
    return model, seen


def test_http_path_gives_the_model_s_own_results(stub_server):
    from boolq_nb.check import build_suite, http_predictor, run_suite
    model, seen = stub_server
    suite = build_suite(seed=1, n_facts=2, n_per_test=6)
    direct = run_suite(model.predict_proba, suite)
    over_http = run_suite(http_predictor("http://127.0.0.1:6789", batch_size=8, timeout=5, api_key="secret"), suite)
    assert [r["failures"] for r in over_http] == [r["failures"] for r in direct]
    assert 0 < sum(r["failures"] for r in direct) < sum(r["n"] for r in direct)  # the model answers both ways
    assert max(seen) == 8 and sum(seen) == len({e.key for c in suite for e in (c.example, c.base) if e})


def test_cli_over_http_and_a_refused_key(stub_server, tmp_path, capsys, monkeypatch):
    from boolq_nb.check import main
    out = tmp_path/"http.json"
    monkeypatch.setenv("BOOLQ_API_KEY", "secret")
    assert main(["--url", "http://127.0.0.1:6789/score", "--n-facts", "2", "--n-per-test", "4", "--batch-size", "8",
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["url"] == "http://127.0.0.1:6789/score" and "model_dir" not in report
    _check_report({**report, "model_dir": None, "model": None}, n_facts=2, with_dev=False)
    capsys.readouterr()
    assert main(["--url", "http://127.0.0.1:6789", "--api-key", "wrong", "--batch-size", "8"]) == 1
    assert "http://127.0.0.1:6789/score: HTTP 401: invalid API key" in capsys.readouterr().err
    assert main(["--url", "http://127.0.0.1:6789", "--batch-size", "9"]) == 1  # over the stub's limit of 8: 413
    assert "HTTP 413" in capsys.readouterr().err


def test_bad_input_is_named(model_dir, tmp_path, capsys):
    from boolq_nb.check import main
    for args, message in ((["--model", str(tmp_path/"nowhere")], "not a boolq_nb model folder"),
                          (["--model", str(model_dir), "--data", str(tmp_path)], "not a BoolQ data folder"),
                          (["--url", "127.0.0.1:6789"], "must be an http(s) URL"),
                          (["--model", str(model_dir), "--batch-size", "0"], "--batch-size must be a positive integer")):
        assert main(args) == 2
        assert message in capsys.readouterr().err, args
    with pytest.raises(SystemExit) as exit:
        main([])
    assert exit.value.code == 2 and "one of the arguments --model --url is required" in capsys.readouterr().err
