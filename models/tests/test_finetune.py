"""The fine-tune path the console's retrain job runs: the label CSV the console exports is
read (extra columns included), the serving model's ONNX weights are the starting point, the
candidate passes its checks, labels move the scores, the shadow comparison lists changed
verdicts, and bad input fails with exit status 2 and no candidate."""

import json
from pathlib import Path

import numpy as np
import pytest

from dohguard_models import cli, export, finetune
from dohguard_models.encoding import encode_batch

MODELS = Path(__file__).resolve().parent.parent
BASE = MODELS / "dga-cnn" / "model.card.json"
HEADER = "name,label,family,labelled_by,labelled_at,reason\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_onnx_weights_load_into_the_cnn_with_identical_scores():
    net = finetune.load_onnx_net(BASE.parent / "model.onnx")
    texts = ["google.com", "xjw3kq9z.com", "qwpzkdlrhtx.net"]
    torch_scores = finetune._scores(net.eval(), texts)
    onnx_scores = export.onnx_scores(export.session(BASE.parent / "model.onnx"),
                                     encode_batch(texts))
    assert np.max(np.abs(torch_scores - onnx_scores)) < 1e-5


def test_finetune_on_console_labels_makes_a_checked_candidate(tmp_path, capsys):
    base = finetune.load_onnx_net(BASE.parent / "model.onnx").eval()
    # A name the serving model scores high, labelled benign by an analyst, and one it
    # scores low, labelled malicious: fine-tuning must move both.
    before = finetune._scores(base, ["zzqxkjw.info", "mybank-example.com"])
    assert before[0] > 0.99 and before[1] < 0.5, before
    labels = _write(tmp_path / "labels.csv", HEADER +
                    'zzqxkjw.info,benign,,alice,2026-12-02T10:00:00Z,"our host, vetted"\n'
                    "mybank-example.com,malicious,,bob,2026-12-02T10:01:00Z,phishing kit\n")
    sample = _write(tmp_path / "sample.csv", "name,label\nwikipedia.org,benign\n"
                    "example.com,benign\nhjkqwezxcvb.biz,malicious\n")
    shadow = _write(tmp_path / "shadow.csv", "name\nwww.zzqxkjw.info\ngoogle.com\n"
                    "mybank-example.com\n")
    out = tmp_path / "cand"
    rc = cli.main(["finetune", "--base", str(BASE), "--labels", str(labels), "--sample",
                   str(sample), "--shadow", str(shadow), "--out", str(out), "--epochs", "30",
                   "--version", "test.1", "--progress-json"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    stages = [x["stage"] for x in lines if "stage" in x]
    assert stages[0] == "prepare" and stages[-1] == "done" and "train" in stages
    assert lines[-1]["result"]["candidate"] == "dohguard-dga-cnn-test.1"

    card = json.loads((out / "model.card.json").read_text())
    assert card["sha256"] == export.sha256_of(out / "model.onnx")
    assert card["thresholds"] == json.loads(BASE.read_text())["thresholds"]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"], report["checks"]
    assert report["source"] == {**report["source"], "kind": "fine-tune", "labels": 2,
                                "labels_malicious": 1, "sample": 3, "training_rows": 5}
    after = export.onnx_scores(export.session(out / "model.onnx"),
                               encode_batch(["zzqxkjw.info", "mybank-example.com"]))
    assert after[0] < before[0] and after[1] > before[1], (before, after)
    sh = report["shadow"]
    assert sh["names"] == 3  # www.zzqxkjw.info is read at its registered domain
    assert sh["changed"] == len(sh["changes"]) >= 1
    assert {c["name"] for c in sh["changes"]} <= {"zzqxkjw.info", "mybank-example.com",
                                                   "google.com"}
    m = report["on_labels"]["monitor"]
    assert m["candidate"]["recall"] >= m["serving"]["recall"]
    assert (out / "report.md").read_text().startswith("# Candidate dohguard-dga-cnn-test.1")


def test_a_candidate_worse_on_the_labels_fails_its_check():
    base = {"precision": 1.0, "recall": 0.9}
    assert finetune.regression(base, {"precision": 0.97, "recall": 0.86}, 0.05) == []
    worse = finetune.regression(base, {"precision": 0.5, "recall": 0.5}, 0.05)
    assert len(worse) == 2 and "precision" in worse[0] and "recall" in worse[1]
    # Flagging nothing has no false positives: not worse than a model whose flags were wrong.
    assert finetune.regression({"precision": 0.0, "recall": 0.0},
                               {"precision": None, "recall": 0.0}, 0.05) == []
    assert finetune.regression({"precision": 1.0, "recall": None},
                               {"precision": None, "recall": None}, 0.05) == []


@pytest.mark.parametrize("labels, message", [
    (HEADER, "no labels"),
    (HEADER + "ok.com,perhaps,,a,b,c\n", "is not one of"),
    ("domain,verdict\nok.com,benign\n", "header must start with 'name,label'"),
    (HEADER + "bad name.com,benign,,a,b,c\n", "not allowed in a DNS name"),
])
def test_bad_labels_stop_with_status_2_and_no_candidate(tmp_path, capsys, labels, message):
    path = _write(tmp_path / "labels.csv", labels)
    out = tmp_path / "cand"
    rc = cli.main(["finetune", "--base", str(BASE), "--labels", str(path), "--out", str(out)])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (out / "model.onnx").exists()


def test_a_missing_serving_model_is_a_clear_error(tmp_path, capsys):
    labels = _write(tmp_path / "labels.csv", HEADER + "ok.com,benign,,a,b,c\n")
    rc = cli.main(["finetune", "--base", str(tmp_path / "nope.json"), "--labels", str(labels),
                   "--out", str(tmp_path / "cand")])
    assert rc == 2
    assert "serving model card" in capsys.readouterr().err


def test_an_operators_data_folder_joins_the_training_rows(tmp_path, capsys):
    # The folder's rows move the model (labels still win), and the report says what was used.
    labels = _write(tmp_path / "labels.csv", HEADER + "example.com,benign,,a,b,c\n")
    data = tmp_path / "ops-data"
    data.mkdir()
    _write(data / "a-known-bad.csv", "name,label,family\nmybank-example.com,malicious,phishing\n"
           "example.com,malicious,\n")
    _write(data / "b-ours.csv", "name,label\nzzqxkjw.info,benign\n")
    _write(data / "notes.txt", "not a csv: ignored\n")
    out = tmp_path / "cand"
    rc = cli.main(["finetune", "--base", str(BASE), "--labels", str(labels), "--data-dir",
                   str(data), "--out", str(out), "--epochs", "30", "--version", "test.2"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    src = report["source"]
    assert src["data_dir"] == str(data)
    assert src["data_files"] == ["a-known-bad.csv", "b-ours.csv"]
    assert src["data_rows"] == 3
    # example.com: the label (benign) wins over the folder's row; three distinct texts.
    assert src["training_rows"] == 3
    assert "3 rows of the data folder" in (out / "report.md").read_text()
    base = finetune.load_onnx_net(BASE.parent / "model.onnx").eval()
    before = finetune._scores(base, ["zzqxkjw.info", "mybank-example.com"])
    after = export.onnx_scores(export.session(out / "model.onnx"),
                               encode_batch(["zzqxkjw.info", "mybank-example.com"]))
    assert after[0] < before[0] and after[1] > before[1], (before, after)


@pytest.mark.parametrize("files, message", [
    (None, "not found"),
    ({}, "no .csv files"),
    ({"readme.txt": "hello\n"}, "no .csv files"),
    ({"empty.csv": "name,label\n"}, "hold no rows"),
    ({"bad.csv": "name,label\nok.com,perhaps\n"}, "bad.csv:2"),
])
def test_a_data_folder_with_nothing_usable_is_a_clear_error(tmp_path, capsys, files, message):
    labels = _write(tmp_path / "labels.csv", HEADER + "ok.com,benign,,a,b,c\n")
    data = tmp_path / "ops-data"
    if files is not None:
        data.mkdir()
        for name, text in files.items():
            _write(data / name, text)
    out = tmp_path / "cand"
    rc = cli.main(["finetune", "--base", str(BASE), "--labels", str(labels), "--data-dir",
                   str(data), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "ops-data" in err, err
    assert not (out / "model.onnx").exists()
