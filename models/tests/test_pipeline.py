"""A tiny end-to-end run (CSV -> prepare -> train -> ONNX export with parity -> card ->
report -> fixture), the export parity check on its own, and the CLI's error handling."""

import json
import random

import numpy as np
import pytest
import torch

from dohguard_models import cli, export, metrics, pipeline
from dohguard_models.encoding import encode_batch
from dohguard_models.model import CharCNN

WORDS = ("blue river shop cloud news travel home garden photo music book city green "
         "smart data health food market sport game learn pet auto bank film art").split()


def _names(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    benign = {f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.choice(['', 'hub', 'ly'])}."
              f"{rng.choice(['com', 'org', 'net'])}" for _ in range(n * 3)}
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    dga = {"".join(rng.choice(letters) for _ in range(rng.randint(10, 18))) + "."
           + rng.choice(["com", "net", "biz", "ru"]) for _ in range(n)}
    return sorted(benign)[:n], sorted(dga)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    benign, dga = _names(500, 1)
    csv_path = tmp / "names.csv"
    csv_path.write_text("name,label\n" + "".join(f"{n},0\n" for n in benign)
                        + "".join(f"{n},1\n" for n in dga))
    out = tmp / "model"
    code = cli.main(["train", "--csv", str(csv_path), "--out", str(out), "--epochs", "3",
                     "--channels", "16", "--threads", "1", "--version", "test.1",
                     "--max-minutes", "0"])
    assert code == 0
    return out


def test_training_is_reproducible(tiny_run, tmp_path):
    """Same data, seeds and (steps-only) schedule -> the same model file, byte for byte."""
    csv_path = tiny_run.parent / "names.csv"
    again = tmp_path / "again"
    assert cli.main(["train", "--csv", str(csv_path), "--out", str(again), "--epochs", "3",
                     "--channels", "16", "--threads", "1", "--version", "test.1",
                     "--max-minutes", "0"]) == 0
    assert export.sha256_of(again / "model.onnx") == export.sha256_of(tiny_run / "model.onnx")


def test_tiny_run_writes_every_output(tiny_run):
    for f in ("model.onnx", "model.card.json", "report.md", "report.json", "manifest.json",
              "roc.png", "family_recall.png", "score_histograms.png", "calibration.png",
              "encoding.json"):
        assert (tiny_run / f).stat().st_size > 0, f
    card = json.loads((tiny_run / "model.card.json").read_text())
    assert card["sha256"] == export.sha256_of(tiny_run / "model.onnx")
    assert card["version"] == "test.1" and card["placeholder"] is False
    assert 0.0 < card["thresholds"]["monitor"] <= card["thresholds"]["block"] <= 1.0


def test_tiny_run_learns_something(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    # Random strings vs word pairs: even three tiny epochs separate them well.
    assert report["dga_all"]["auc"] > 0.9
    assert report["parity_max_abs_diff"] <= 1e-5


def test_tiny_run_fixture_matches_model(tiny_run):
    fixture = json.loads((tiny_run / "encoding.json").read_text())
    sess = export.session(tiny_run / "model.onnx")
    ids = np.array([c["ids"] for c in fixture["cases"]], dtype=np.int64)
    scores = export.onnx_scores(sess, ids)
    assert np.allclose(scores, [c["score"] for c in fixture["cases"]], atol=1e-5)


def test_export_parity_and_its_failure(tmp_path):
    torch.manual_seed(0)
    net = CharCNN(channels=8, hidden=8).eval()
    path = tmp_path / "m.onnx"
    export.export_onnx(net, path)
    ids = encode_batch(["google.com", "xjw3kq9z.com", "a" * 80 + ".net", "c"])
    assert export.check_parity(net, path, ids) <= 1e-5
    other = CharCNN(channels=8, hidden=8).eval()  # different weights, same graph
    with pytest.raises(export.ParityError):
        export.check_parity(other, path, ids)


def test_trimmed_batches_compute_the_full_width_result():
    torch.manual_seed(0)
    net = CharCNN(channels=8, hidden=8).eval()
    ids = torch.from_numpy(encode_batch(["ab.cd", "google.com", "x" * 30 + ".org"]))
    with torch.no_grad():
        trimmed, full = net(ids), net(ids, trim=False)
        assert torch.allclose(trimmed, full, atol=1e-6)
        # and on a batch of short names only, where most columns are dropped
        assert torch.allclose(net(ids[:1]), full[:1], atol=1e-6)


def test_threshold_at_fpr():
    benign = np.array([0.1, 0.2, 0.3, 0.9, 0.95], dtype=np.float32)
    t = metrics.threshold_at_fpr(benign, 0.2)  # one false positive of five allowed
    assert metrics.rate_at(benign, t) == pytest.approx(0.2)
    assert metrics.rate_at(benign, metrics.threshold_at_fpr(benign, 0.0)) == 0.0
    y = np.array([0, 0, 1, 1])
    assert metrics.auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert metrics.auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)


def test_cli_reports_bad_input_without_writing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx.com,perhaps\n")
    out = tmp_path / "out"
    assert cli.main(["train", "--csv", str(bad), "--out", str(out)]) == 2
    assert "label 'perhaps'" in capsys.readouterr().err
    assert not (out / "model.onnx").exists()


def test_cli_refuses_one_class_training(tmp_path, capsys):
    only_benign = tmp_path / "benign.csv"
    only_benign.write_text("name,label\n" + "".join(f"site{i}.com,0\n" for i in range(50)))
    assert cli.main(["train", "--csv", str(only_benign), "--out", str(tmp_path / "o")]) == 2
    assert "only benign names" in capsys.readouterr().err


def test_pipeline_defaults_point_at_the_shipped_model():
    assert pipeline.SHIPPED_DIR.name == "dga-cnn"
    assert pipeline.SHARED_FIXTURE.parts[-2:] == ("fixtures", "encoding.json")
