"""The shipped model in models/dga-cnn against the contract (docs/contracts.md) and the
shared encoding fixture that the Rust scorer also checks."""

import json

import numpy as np
import pytest
from conftest import MODELS_DIR

from dohguard_models import encoding, export

SHIPPED = MODELS_DIR / "dga-cnn"
FIXTURE = MODELS_DIR / "fixtures" / "encoding.json"


@pytest.fixture(scope="module")
def card():
    return json.loads((SHIPPED / "model.card.json").read_text())


@pytest.fixture(scope="module")
def fixture():
    return json.loads(FIXTURE.read_text())


def test_card_follows_the_contract(card):
    assert card["name"] == "dohguard-dga-cnn" and card["placeholder"] is False
    assert card["onnx_file"] == "model.onnx"
    assert card["sha256"] == export.sha256_of(SHIPPED / card["onnx_file"])
    assert card["input"] == {
        "name": "input_ids", "dtype": "int64", "text": "registered_domain",
        "alphabet": "abcdefghijklmnopqrstuvwxyz0123456789-._", "pad_id": 0, "unknown_id": 40,
        "max_length": 64, "padding": "left", "truncation": "left",
    }
    assert [o["name"] for o in card["outputs"]] == ["score"]
    assert 0.0 < card["thresholds"]["monitor"] <= card["thresholds"]["block"] <= 1.0


def test_model_is_small_and_has_a_dynamic_batch(card):
    path = SHIPPED / card["onnx_file"]
    assert path.stat().st_size < 1_000_000
    sess = export.session(path)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "input_ids" and inp.type == "tensor(int64)" and inp.shape[1] == 64
    assert out.name == "score" and out.type == "tensor(float)"
    for batch in (1, 7):
        scores = sess.run(["score"], {"input_ids": np.zeros((batch, 64), dtype=np.int64)})[0]
        assert scores.reshape(-1).shape == (batch,)


def test_fixture_is_for_the_shipped_model(card, fixture):
    assert fixture["model"]["sha256"] == card["sha256"]
    assert len(fixture["cases"]) >= 10


def test_fixture_ids_match_the_python_encoder(card, fixture):
    for case in fixture["cases"]:
        text = encoding.model_text(case["name"], card["input"]["text"])
        assert text == case["text"], case["name"]
        assert encoding.encode(text) == case["ids"], case["name"]


def test_fixture_scores_match_the_shipped_model(fixture):
    sess = export.session(SHIPPED / "model.onnx")
    ids = np.array([c["ids"] for c in fixture["cases"]], dtype=np.int64)
    got = export.onnx_scores(sess, ids)
    want = np.array([c["score"] for c in fixture["cases"]])
    assert np.max(np.abs(got - want)) <= fixture["score_tolerance"]


def test_shipped_model_separates_obvious_cases(card, fixture):
    # Loose on purpose: these must hold for any sound retrained model, not just this one.
    scores = {c["name"]: c["score"] for c in fixture["cases"]}
    monitor = card["thresholds"]["monitor"]
    benign = ["google.com", "www.wikipedia.org", "www.bbc.co.uk", "mail.example.co.uk"]
    dga = ["uhbqolxf.org", "1fs5192h14cdp39i51hok3m6n.org", "obuvifkoa.ddns.net"]
    assert all(scores[n] < monitor for n in benign)
    assert all(scores[n] >= monitor for n in dga)
    assert min(scores[n] for n in dga) > max(scores[n] for n in benign)


def test_report_covers_the_issue(card):
    report = json.loads((SHIPPED / "report.json").read_text())
    assert report["model"]["sha256"] == card["sha256"]
    for key in ("dga_seen_families", "dga_held_out_families", "phishing", "malware",
                "dga_per_family", "wordlist_families", "top_false_positives",
                "calibration_test", "throughput_onnxruntime_cpu"):
        assert key in report, key
    for png in ("roc.png", "family_recall.png", "score_histograms.png", "calibration.png"):
        assert (SHIPPED / png).stat().st_size > 1000
