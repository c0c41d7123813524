"""The committed fixture model is what make_fixture_model.py writes (so it can be regenerated),
and its z-score names the feature that moved."""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_committed_fixture_is_reproducible(tmp_path):
    subprocess.run([sys.executable, str(HERE / "make_fixture_model.py"), "--out", str(tmp_path)], check=True)
    committed = HERE / "fixtures" / "zscore"
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card == json.loads((committed / "model.card.json").read_text())
    assert (tmp_path / "model.onnx").read_bytes() == (committed / "model.onnx").read_bytes()
    fresh = json.loads((tmp_path / "fixture.json").read_text())
    assert fresh == json.loads((committed / "fixture.json").read_text())
    storm = fresh["windows"][1]
    top = max(range(len(card["features"])), key=lambda i: storm["contributions"][i])
    assert card["features"][top] == "dohguard:nxdomain:ratio"
    assert storm["score"] > card["threshold"] > fresh["windows"][0]["score"]
