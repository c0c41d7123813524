"""The ``lookalike-v1`` feature set (docs/contracts.md, contract 2): the Python twin
(``dohguard_models.lookalike``) and the Rust core (``dohguard_core::features::lookalike``, run
through ``core/examples/lookalike.rs``) agree within 1e-5 on every value over hundreds of
thousands of real registered domains; the shipped card and its ONNX model match.

The agreement test needs the data folder (../shared/data, or DOHGUARD_DATA) and fails without
it, like test_name_agreement.py: a check that silently does not run agrees with anything.
"""

import hashlib
import random
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dohguard_models import encoding, lookalike, lookalike_train
from dohguard_models.sources import one_per_line, rank_csv

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DOHGUARD_DATA", REPO.parent / "shared" / "data"))
CARD_DIR = REPO / "models" / "lookalike-v1"
SAMPLE = 120_000  # real names compared (seeded sample; every IDN name is kept)
EDGES = [
    "paypal.com", "xn--pypal-4ve.com", "xn--80ak6aa92e.com", "xn--zz-.com", "xn--a.com",
    "xn--.com", "xn---.com", "xn--99999999999999999999.com", "xn--bcher-kva.de",
    "faceb00k.com", "micros0ft-account.net", "wellsfargo-login.com", "gooogle.com",
    "amaz0n.co.uk", "a.b", "x", "localhost", "-", "a-b-c-d-e-f.xyz", "rnicrosoft.com",
    "vvellsfargo.com", "xn--mnchen-3ya.de", "xn--e1afmkfd.xn--p1ai",
]


def _binary() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is not on PATH: `source scripts/env.sh` first")
    proc = subprocess.run([cargo, "build", "-p", "dohguard-core", "--example", "lookalike",
                           "--locked"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cargo build --example lookalike failed:\n{proc.stderr[-3000:]}")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = (target if target.is_absolute() else REPO / target) / "debug" / "examples" / "lookalike"
    if not binary.is_file():
        pytest.fail(f"{binary} not found after cargo build")
    return binary


def rust_features(texts: list[str]) -> np.ndarray:
    proc = subprocess.run([str(_binary())], input=("\n".join(texts) + "\n").encode(),
                          capture_output=True, check=True)
    rows = proc.stdout.decode().split("\n")[:-1]
    assert len(rows) == len(texts)
    return np.array([[float(v) for v in r.split("\t")] for r in rows], dtype=np.float32)


def real_texts() -> list[str]:
    """Registered domains of every phishing feed the detector uses and of the benign top
    lists (the brand source included), normalised as training and serving do."""
    if not DATA.is_dir():
        pytest.fail(f"data folder {DATA} not found: set DOHGUARD_DATA to the shared data sets")
    raws: list[str] = []
    for paths in lookalike_train.PHISHING_GROUPS.values():
        for p in paths:
            raws += [r.raw for r in one_per_line("phishing", "x")(DATA / p)]
    for p in ("tranco/tranco_top_100k.csv", "tranco/tranco_top-10k_2025-06.csv",
              "alexa_legacy/alexa_top_10w.txt"):
        raws += [r.raw for r in rank_csv("benign", "x")(DATA / p)]
    out: dict[str, None] = {}
    for raw in raws:
        try:
            name = encoding.normalise(raw.strip())
        except encoding.InvalidName:
            continue
        out.setdefault(encoding.registered_domain(name), None)
    return list(out)


def test_python_and_rust_agree_on_real_names():
    texts = real_texts()
    assert len(texts) >= 300_000, len(texts)  # the sources were read
    idn = [t for t in texts if "xn--" in t]
    assert len(idn) >= 100, len(idn)  # homoglyph and punycode paths are exercised
    rest = sorted(set(texts) - set(idn))
    texts = idn + random.Random(20261202).sample(rest, SAMPLE) + EDGES
    py = lookalike.featurise(texts)
    rs = rust_features(texts)
    diff = np.abs(py - rs)
    bad = np.nonzero(diff.max(axis=1) > 1e-5)[0]
    examples = [(texts[i], {lookalike.feature_names()[j]: (float(py[i, j]), float(rs[i, j]))
                            for j in np.nonzero(diff[i] > 1e-5)[0]}) for i in bad[:5]]
    assert len(bad) == 0, (len(bad), examples)
    # Each feature varies over the data: a column both sides leave at zero agrees trivially.
    base = py[:, :lookalike.BASE_WIDTH]
    assert (base.std(axis=0) > 0).all(), [n for n, s in zip(lookalike.BASE_NAMES,
                                                            base.std(axis=0)) if s == 0]
    assert (py[:, lookalike.BASE_WIDTH:].sum(axis=0) > 0).sum() >= 200  # suffix slots used


def test_the_features_describe_impersonation():
    f = dict(zip(lookalike.feature_names(), lookalike.features_of("xn--pypal-4ve.com")))
    assert f["idn"] == 1 and f["confusable_chars"] == 1 and f["brand_exact_disguised"] == 1
    f = dict(zip(lookalike.feature_names(), lookalike.features_of("paypal.com")))
    assert f["brand_exact"] == 1 and f["brand_exact_disguised"] == 0
    f = dict(zip(lookalike.feature_names(), lookalike.features_of("wellsfargo-login.com")))
    assert f["brand_contained_length"] == 10 and f["lures"] == 1 and f["brand_and_lure"] == 1
    f = dict(zip(lookalike.feature_names(), lookalike.features_of("gooogle.com")))
    assert f["brand_neighbour"] == 1 and f["brand_exact"] == 0
    f = dict(zip(lookalike.feature_names(), lookalike.features_of("qzxwvkjh.com")))
    assert f["brand_neighbour"] == 0 and f["brand_contained_length"] == 0
    assert lookalike.features_of("xn--99999999999999999999.com")[
        lookalike.feature_names().index("punycode_invalid")] == 1


def test_the_tables_are_the_committed_files():
    t = lookalike.tables()
    assert t.n_brands == 5000 and t.brands["google"] == 1
    assert t.confusables["\u0430"] == "a"  # Cyrillic a
    assert "login" in t.lures


def test_the_card_matches_its_model_and_onnx_matches_torch_free_scoring():
    card = json.loads((CARD_DIR / "model.card.json").read_text())
    onnx = CARD_DIR / card["onnx_file"]
    assert hashlib.sha256(onnx.read_bytes()).hexdigest() == card["sha256"]
    assert card["detector"] == "lookalike"
    assert card["input"] == {"kind": "features", "name": "features", "dtype": "float32",
                             "text": "registered_domain", "feature_set": lookalike.NAME,
                             "width": lookalike.WIDTH}
    assert 0 < card["thresholds"]["monitor"] < card["thresholds"]["block"] < 1
    texts = ["paypal-secure-login.xyz", "xn--pypal-4ve.com", "paypal.com", "wikipedia.org"]
    s = lookalike_train.ort_scores(onnx, lookalike.featurise(texts))
    assert s.shape == (4,) and ((s >= 0) & (s <= 1)).all()
    # A brand plus lure words on a cheap suffix scores above the brand itself. (An IDN
    # homoglyph of a brand, xn--pypal-4ve.com, does not: the feeds hold few such names; see
    # models/README.md.)
    assert s[0] > s[2] and s[0] > s[3]


def test_onnx_export_matches_pytorch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, lookalike.WIDTH)).astype(np.float32) * 3
    y = (x[:, 0] + x[:, 5] > 0).astype(np.float32)
    model = lookalike_train.fit(x, y, lookalike_train.Config(epochs=2, threads=1))
    path = lookalike_train.export(model, tmp_path)
    torch_s = lookalike_train.scores(model, x)
    ort_s = lookalike_train.ort_scores(path, x)
    assert np.max(np.abs(torch_s - ort_s)) < 1e-5
    other = lookalike_train.fit(x, 1 - y, lookalike_train.Config(epochs=2, threads=1))
    assert np.max(np.abs(lookalike_train.scores(other, x) - ort_s)) > 1e-2


def test_the_commands_refuse_bad_input_with_status_2(tmp_path, capsys):
    from dohguard_models import cli

    missing = tmp_path / "no-data"
    out = tmp_path / "out"
    assert cli.main(["lookalike", "--data", str(missing), "--out", str(out)]) == 2
    assert "no-data" in capsys.readouterr().err
    assert cli.main(["lookalike", "--data", str(tmp_path), "--out", str(out),
                     "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert cli.main(["word-families", "--data", str(missing), "--out", str(out)]) == 2
    assert cli.main(["lookalike-data", "--data", str(missing)]) == 2
    assert cli.main(["protocol", "--report-only", "--out", str(out)]) == 2
    assert "protocol.json" in capsys.readouterr().err
    assert not out.exists()
