#!/usr/bin/env python3
"""Build the *placeholder* DGA model: a tiny, hand-weighted character model in ONNX.

It exists so the scorer can run, be tested and be benchmarked before the trained model
(`models/dga-cnn/`) lands. It follows the model card contract in docs/contracts.md exactly
(int64 `input_ids` [batch, max_length] -> float32 `score` [batch]), and is built with the
`onnx` helper API only (no torch), with fixed weights, so the output is byte-for-byte
deterministic.

How it scores: every character id looks up a hand-set "unusualness" weight (common English
letters negative, rare letters and digits positive); the mean over the non-padding
characters plus a small length term goes through a sigmoid. Random-looking strings
(`xjw3kq9z.com`) score high, dictionary-like names (`google.com`) low. It is NOT a trained
detector and its card says `"placeholder": true`.

Writes model.onnx, model.card.json and fixture.json (expected ids and scores).

Usage: python make_placeholder.py [--out-dir DIR] [--check]
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._"
PAD_ID = 0
UNKNOWN_ID = len(ALPHABET) + 1  # 40
MAX_LENGTH = 64
VERSION = "0.1.0"

# Hand-set weights per character (rough English letter frequency, inverted).
COMMON = "etaoinsrhl"
MEDIUM = "dcumfpgwyb"
RARE = "vk"
VERY_RARE = "xqjz"


def char_weight(c: str) -> float:
    if c in COMMON:
        return -1.0
    if c in MEDIUM:
        return 0.0
    if c in RARE:
        return 1.0
    if c in VERY_RARE:
        return 2.5
    if c.isdigit():
        return 2.0
    if c == ".":
        return -1.0
    if c == "_":
        return 1.0
    return 0.0  # '-'


def weight_table() -> np.ndarray:
    table = np.zeros(UNKNOWN_ID + 1, dtype=np.float32)
    for i, c in enumerate(ALPHABET):
        table[i + 1] = char_weight(c)
    table[UNKNOWN_ID] = 2.0
    table[PAD_ID] = 0.0
    return table


# logit = MEAN_GAIN * mean_weight + LENGTH_GAIN * length + BIAS
MEAN_GAIN = 4.0
LENGTH_GAIN = 0.06
BIAS = -0.8


def build_model() -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(weight_table(), "char_weight"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "pad_id"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(MEAN_GAIN, dtype=np.float32), "mean_gain"),
        numpy_helper.from_array(np.array(LENGTH_GAIN, dtype=np.float32), "length_gain"),
        numpy_helper.from_array(np.array(BIAS, dtype=np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Gather", ["char_weight", "input_ids"], ["per_char"], axis=0),
        helper.make_node("Greater", ["input_ids", "pad_id"], ["is_char"]),
        helper.make_node("Cast", ["is_char"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask", "axis_1"], ["length"], keepdims=0),
        helper.make_node("ReduceSum", ["per_char", "axis_1"], ["weight_sum"], keepdims=0),
        helper.make_node("Max", ["length", "one"], ["safe_length"]),
        helper.make_node("Div", ["weight_sum", "safe_length"], ["mean_weight"]),
        helper.make_node("Mul", ["mean_weight", "mean_gain"], ["mean_term"]),
        helper.make_node("Mul", ["length", "length_gain"], ["length_term"]),
        helper.make_node("Add", ["mean_term", "length_term"], ["partial"]),
        helper.make_node("Add", ["partial", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dohguard_placeholder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", MAX_LENGTH])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="dohguard-placeholder",
        producer_version=VERSION,
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def encode(name: str) -> list:
    """Contract encoding of an already-extracted text (left truncation, left padding)."""
    ids = [ALPHABET.index(c) + 1 if c in ALPHABET else UNKNOWN_ID for c in name.lower()]
    ids = ids[-MAX_LENGTH:]
    return [PAD_ID] * (MAX_LENGTH - len(ids)) + ids


# Model texts for the fixture: dictionary-like and DGA-like, plus encoding edge cases
# (unknown characters, underscore, hyphen, longer than max_length).
FIXTURE_TEXTS = [
    "google.com", "wikipedia.org", "facebook.com", "amazon.co.uk", "bbc.co.uk",
    "xjw3kq9z.com", "qz7x0vkj4w.net", "a1b2c3d4e5f6.info", "kq3jx9zv8w2m.ru",
    "my-shop_2024.example", "xn--bcher-kva.de", "UPPER.Case.COM", "weird!char.com",
    "a" * 80 + ".com",
]


def card(sha256: str) -> dict:
    return {
        "name": "placeholder",
        "version": VERSION,
        "placeholder": True,
        "description": "Hand-weighted character model for development and tests; not a trained detector.",
        "onnx_file": "model.onnx",
        "sha256": sha256,
        "input": {
            "name": "input_ids",
            "dtype": "int64",
            "text": "registered_domain",
            "alphabet": ALPHABET,
            "pad_id": PAD_ID,
            "unknown_id": UNKNOWN_ID,
            "max_length": MAX_LENGTH,
            "padding": "left",
            "truncation": "left",
        },
        "outputs": [
            {
                "name": "score",
                "dtype": "float32",
                "meaning": "probability-like score that the name is DGA/malicious (sigmoid applied); hand-set, not trained",
            }
        ],
        "thresholds": {"block": 0.9, "monitor": 0.5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(pathlib.Path(__file__).resolve().parent))
    parser.add_argument("--check", action="store_true", help="print the fixture scores")
    args = parser.parse_args()
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    data = build_model().SerializeToString()
    (out / "model.onnx").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (out / "model.card.json").write_text(json.dumps(card(sha), indent=2) + "\n")
    print(f"wrote {out / 'model.onnx'} ({len(data)} bytes, sha256 {sha})")

    # Expected ids and scores computed here, in Python with onnxruntime, and checked by the
    # scorer's Rust tests: the two encoders and runtimes must agree.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = np.array([encode(t) for t in FIXTURE_TEXTS], dtype=np.int64)
    scores = sess.run(["score"], {"input_ids": batch})[0]
    fixture = {
        "about": "Placeholder model: model text -> ids -> score, computed by make_placeholder.py "
        "with onnxruntime; the scorer's tests check the Rust side gives the same.",
        "model": {"name": "placeholder", "version": VERSION, "sha256": sha},
        "score_tolerance": 1e-5,
        "cases": [
            {"text": t, "ids": row.tolist(), "score": round(float(s), 7)}
            for t, row, s in zip(FIXTURE_TEXTS, batch, scores)
        ],
    }
    head = json.dumps({k: v for k, v in fixture.items() if k != "cases"}, indent=1)[:-2]
    cases = ",\n  ".join(json.dumps(c) for c in fixture["cases"])
    (out / "fixture.json").write_text(f'{head},\n "cases": [\n  {cases}\n ]\n}}\n')
    if args.check:
        for t, s in zip(FIXTURE_TEXTS, scores):
            print(f"{s:.4f}  {t}")


if __name__ == "__main__":
    main()
