"""The shipped model (anomaly/model/) keeps contract 7: the card's sha256 is the ONNX file's,
its features are contract 5's, ONNX Runtime reproduces the fixture the Rust detector checks
against (after this package's filling), and the report it cites exists."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dohguard_anomaly.features import FEATURES, fill_window

MODEL = Path(__file__).resolve().parents[1] / "model"


def card():
    return json.loads((MODEL / "model.card.json").read_text())


def test_the_card_names_the_onnx_file_by_its_hash_and_is_not_a_placeholder():
    c = card()
    assert c["placeholder"] is False
    assert c["sha256"] == hashlib.sha256((MODEL / c["onnx_file"]).read_bytes()).hexdigest()
    assert c["features"] == FEATURES
    assert len(c["medians"]) == len(FEATURES)
    assert c["threshold"] > 0 and np.isfinite(c["threshold"])
    assert 1 <= c["hysteresis"]["k"] <= c["hysteresis"]["n"]
    assert (MODEL / "report.md").exists() and (MODEL / "report.json").exists()


def test_onnx_runtime_reproduces_the_fixture_after_this_packages_filling():
    c = card()
    fixture = json.loads((MODEL / "fixture.json").read_text())
    assert fixture["features"] == c["features"]
    sess = ort.InferenceSession(str(MODEL / c["onnx_file"]), providers=["CPUExecutionProvider"])
    assert len(fixture["windows"]) >= 3
    for case in fixture["windows"]:
        raw = np.array([[np.nan if v is None else v for v in row] for row in case["window"]], dtype=np.float64)
        assert np.isnan(raw).any(), "each fixture window has gaps to fill"
        filled = fill_window(raw, np.array(c["medians"])).astype(np.float32)
        np.testing.assert_allclose(filled, np.array(case["filled"], dtype=np.float32), rtol=1e-6)
        score, contributions = sess.run(None, {"window": filled[None]})
        np.testing.assert_allclose(score[0], case["score"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(contributions[0], case["contributions"], rtol=1e-5, atol=1e-6)
    scores = [w["score"] for w in fixture["windows"]]
    assert max(scores) > c["threshold"] > min(scores), "the fixture has a clean window and a faulty one"
