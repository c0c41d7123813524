#!/usr/bin/env python3
"""The original design, kept as a benchmark baseline: a small Flask app that loads the same
ONNX model through onnxruntime and scores one name per request (no batching, no cache, no
logging). `cargo xtask scorer-bench` serves it with gunicorn and drives it with the same load
generator as the Rust scorer.

It follows the same model card contract: registered domain from the public suffix list
(private section included, via `publicsuffixlist`), character ids, left truncation and padding.

Run: gunicorn -w 2 -b 127.0.0.1:8780 --chdir scorer/bench flask_baseline:app
(serves the shipped model, models/dga-cnn/; DOHGUARD_MODEL_CARD=<card path> picks another).
"""

import hashlib
import json
import os
import pathlib

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from publicsuffixlist import PublicSuffixList

# Default resolved from this file, not the working directory (gunicorn runs with --chdir).
SHIPPED_CARD = pathlib.Path(__file__).resolve().parents[2] / "models/dga-cnn/model.card.json"
CARD_PATH = pathlib.Path(os.environ.get("DOHGUARD_MODEL_CARD", SHIPPED_CARD))
DEBIAN_PSL = pathlib.Path("/usr/share/publicsuffix/public_suffix_list.dat")

card = json.loads(CARD_PATH.read_text())
onnx_path = CARD_PATH.parent / card["onnx_file"]
model_bytes = onnx_path.read_bytes()
if hashlib.sha256(model_bytes).hexdigest() != card["sha256"]:
    raise SystemExit(f"{onnx_path}: sha256 does not match the card")
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
spec = card["input"]
ids_of = {c: i + 1 for i, c in enumerate(spec["alphabet"])}
psl = (
    PublicSuffixList(source=DEBIAN_PSL.read_text().splitlines())
    if DEBIAN_PSL.is_file()
    else PublicSuffixList()
)
version = f'{card["name"]}-{card["version"]}'
block, monitor = card["thresholds"]["block"], card["thresholds"]["monitor"]

app = Flask(__name__)


def encode(text: str) -> list:
    ids = [ids_of.get(c, spec["unknown_id"]) for c in text.lower()][-spec["max_length"]:]
    return [spec["pad_id"]] * (spec["max_length"] - len(ids)) + ids


@app.post("/v1/score")
def score():
    body = request.get_json(force=False, silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return jsonify({"error": "bad request"}), 400
    name = body["name"].lower().rstrip(".")
    rd = psl.privatesuffix(name)
    text = (rd or name) if spec["text"] == "registered_domain" else name
    s = float(session.run(None, {spec["name"]: np.array([encode(text)], dtype=np.int64)})[0].reshape(-1)[0])
    verdict = "block" if s >= block else "monitor" if s >= monitor else "allow"
    return jsonify(
        name=name, registered_domain=rd, score=s, verdict=verdict, reason="model",
        scope="registered_domain" if rd else "name", model_version=version, ttl=3600,
    )


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
