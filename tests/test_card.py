"Model cards: rendered from committed runs and from a minimal report, written atomically, parsed back by huggingface_hub."
import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from boolq_nb.card import model_card, write_model_card

ROOT = Path(__file__).resolve().parents[1]
FULL_RUN = "minilm-full-mean-lr1e-4-llrd0.9-fastdrop"
OPTIONAL_HEADINGS = ("### Across seeds", "## Serving backends", "## Passage ablation", "## Behavioural tests")


def _read(relative):
    return json.loads((ROOT/relative).read_text())


@pytest.fixture
def full_report():
    return _read(f"runs/{FULL_RUN}/metrics.json")


def _headings(card):
    return [line for line in card.text.splitlines() if line.startswith("#")]


def test_card_of_a_committed_run_parses_back(tmp_path, full_report):
    path = write_model_card(tmp_path, full_report)
    assert path == tmp_path/"README.md" and not list(tmp_path.glob(".*tmp-*"))
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert (data["language"], data["license"], data["library_name"], data["pipeline_tag"]) == (
        "en", "apache-2.0", "transformers", "text-classification")
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["datasets"] == ["google/boolq"] and "boolq" in data["tags"]
    index = data["model-index"][0]
    assert index["name"] == FULL_RUN
    result = index["results"][0]
    assert result["dataset"] == {"name": "BoolQ", "type": "google/boolq", "split": "validation"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"accuracy": full_report["accuracy"],
                                                                  "f1": full_report["f1"]}
    assert [r.metric_value for r in card.data.eval_results] == [full_report["accuracy"], full_report["f1"]]
    for heading in ("# " + FULL_RUN, "## Intended use and how to use it", "## Training data and procedure",
                    "### Compute", "## Evaluation", "## Limitations", "## License and citation"):
        assert heading in _headings(card), heading
    assert not set(OPTIONAL_HEADINGS) & set(_headings(card))
    for text in ("| accuracy | 72.4 % |", "| majority baseline (always the commoner answer) | 62.2 % |",
                 "| recall of \"no\" | 58.7 % |", "| expected calibration error (10 bins) | 0.130 |",
                 "| ECE after temperature scaling | 0.024 |", "temperature 2.424", "(8,955 examples)",
                 "epoch 3 of 3", "held-out slice of train", "evaluated once", "- **learning rate:** 0.0001",
                 f'YesNoModel.load("models/{FULL_RUN}/model")', f"boolq-serve --model models/{FULL_RUN}/model",
                 "CC BY-SA 3.0", "Clark et al., NAACL 2019", "mean pooling", "at most 256 tokens"):
        assert text in card.text, text


def test_optional_sections_appear_only_when_given(full_report):
    seeds = _read(f"runs/{FULL_RUN}-seeds.json")
    ablation = _read("runs/results/minilm-full/passage_ablation.json")
    serving = {"chosen": "onnx", "reference_accuracy": 0.7245, "backends": {"torch": {"accuracy": 0.7245},
                                                                             "onnx": {"accuracy": 0.7239}}}
    behaviour = {"tests": [{"test": "negated question", "kind": "DIR", "source": "dev", "n": 50, "failures": 15,
                            "failure_rate": 0.3}]}
    report = {**full_report, "seeds": seeds, "serving": serving, "precision": "bf16",
              "environment": {**full_report["environment"], "cpu": {"model": "EPYC", "cores": 2}}}
    card = model_card(report, ablation=ablation, behaviour=behaviour)
    assert set(OPTIONAL_HEADINGS) <= set(_headings(card))
    for text in ("| onnx (chosen) | 72.4 % | -0.06 points |", "| title only | 61.1 % |", "| negated question | DIR | dev | 50 | 30.0 % |",
                 "Trained with seeds 42, 43, 44", "- **precision:** bf16", "- **CPU:** model EPYC, cores 2",
                 "keeps 30.0 % of its answers under edits that should flip them; it fails most on negated question"):
        assert text in card.text, text
    only_ablation = model_card(full_report, ablation=ablation)
    assert [h for h in _headings(only_ablation) if h in OPTIONAL_HEADINGS] == ["## Passage ablation"]


def test_minimal_report(tmp_path):
    card = ModelCard.load(write_model_card(tmp_path, {"backbone": str(tmp_path), "accuracy": 0.61}))
    data = card.data.to_dict()
    assert "base_model" not in data and "license" not in data  # a local folder: no hub id, licence unknown
    assert data["model-index"][0]["results"][0]["metrics"] == [{"type": "accuracy", "value": 0.61, "name": "Accuracy"}]
    assert "| accuracy | 61.0 % |" in card.text and "its licence applies" in card.text
    assert not set(OPTIONAL_HEADINGS) & set(_headings(card))
    hub = model_card({"backbone": "roberta-large", "accuracy": 0.8}).data
    assert (hub.base_model, hub.license) == ("roberta-large", "mit")


@pytest.mark.parametrize("report, message", [({"backbone": "minilm"}, "lacks accuracy"),
                                              ({"accuracy": 0.5}, "lacks backbone"),
                                              ([0.5], "report must be a dict")])
def test_bad_report_is_refused(tmp_path, report, message):
    with pytest.raises((ValueError, TypeError), match=message):
        write_model_card(tmp_path, report)
    assert not (tmp_path/"README.md").exists()


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        write_model_card(tmp_path/"absent", {"backbone": "minilm", "accuracy": 0.5})
