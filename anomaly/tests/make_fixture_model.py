"""A tiny, hand-set anomaly model for the Rust detector's tests (and the placeholder shipped in
anomaly/model/ until a trained model replaces it): a per-feature z-score, written as an ONNX
graph with the input and outputs of contract 7 (docs/contracts.md), plus its model card and a
fixture of windows with the scores and contributions ONNX Runtime gives them.

    $DOHGUARD_PYTHON anomaly/tests/make_fixture_model.py --out anomaly/tests/fixtures/zscore
    $DOHGUARD_PYTHON anomaly/tests/make_fixture_model.py --out anomaly/model --placeholder

The graph, for a window x of shape [batch, features, window] (raw values, already filled):
    z = (x - center) / scale                     per feature
    e = mean over the last RECENT steps of z^2   [batch, features]
    score = max over features of sqrt(e)         [batch]  (the largest recent |z|)
    contributions = e / sum(e)                   [batch, features]  (shares of the energy)
So a fault that moves one feature names that feature first. Needs only numpy, onnx and
onnxruntime (no training, no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

WINDOW = 32
STEP_S = 1
RECENT = 5
# (feature of contract 5, center = median, scale): a quiet test stack sits near the centers;
# the wide scales keep traffic-volume features from outshouting the ratios.
FEATURES = [
    ("dohguard:queries:rate", 2.0, 50.0),
    ("dohguard:blocked:ratio", 0.1, 0.5),
    ("dohguard:nxdomain:ratio", 0.0, 0.05),
    ("dohguard:servfail:ratio", 0.0, 0.05),
    ("dohguard:callout_failures:rate", 0.0, 0.5),
    ("dohguard:upstream_5xx:rate", 0.0, 0.5),
    ("dohguard:downstream_latency_ms:p99", 5.0, 500.0),
    ("dohguard:qname_length:p95", 20.0, 40.0),
]


def build_graph() -> onnx.ModelProto:
    f = len(FEATURES)
    center = np.array([c for _, c, _ in FEATURES], dtype=np.float32).reshape(f, 1)
    scale = np.array([s for _, _, s in FEATURES], dtype=np.float32).reshape(f, 1)
    inits = [
        numpy_helper.from_array(center, "center"),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(np.array([-RECENT], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([WINDOW], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    nodes = [
        helper.make_node("Sub", ["window", "center"], ["centered"]),
        helper.make_node("Div", ["centered", "scale"], ["z"]),
        helper.make_node("Slice", ["z", "starts", "ends", "axis2"], ["recent"]),
        helper.make_node("Mul", ["recent", "recent"], ["z2"]),
        helper.make_node("ReduceMean", ["z2"], ["energy"], axes=[2], keepdims=0),
        helper.make_node("Sqrt", ["energy"], ["rms"]),
        helper.make_node("ReduceMax", ["rms"], ["score"], axes=[1], keepdims=0),
        helper.make_node("ReduceSum", ["energy", "axis1"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "eps"], ["total_eps"]),
        helper.make_node("Div", ["energy", "total_eps"], ["contributions"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dohguard-anomaly-zscore-fixture",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", f, WINDOW])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["batch", f]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def fill(window: list[list[float | None]], medians: list[float]) -> np.ndarray:
    """The card's `ffill-then-median`: a gap takes the last value before it in the window;
    a leading gap (or a feature missing throughout) takes the feature's median."""
    out = np.zeros((len(window), WINDOW), dtype=np.float32)
    for i, row in enumerate(window):
        last = medians[i]
        for t, v in enumerate(row):
            if v is not None and np.isfinite(v):
                last = v
            out[i, t] = last
    return out


def fixture_windows(rng: np.random.Generator) -> list[list[list[float | None]]]:
    medians = [c for _, c, _ in FEATURES]
    quiet = [[m + 0.01 * s * rng.standard_normal() for _ in range(WINDOW)] for (_, _, s), m in zip(FEATURES, medians)]
    storm = [list(r) for r in quiet]
    storm[2][-8:] = [0.6] * 8  # an NXDOMAIN storm in the last 8 s
    gappy = [list(r) for r in storm]
    gappy[2][-3:] = [None, None, None]  # scrapes lost: forward-filled
    gappy[6] = [None] * WINDOW  # a histogram without samples: the median
    gappy[0][:4] = [None] * 4  # a leading gap: the median
    return [quiet, storm, gappy]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--placeholder", action="store_true", help="mark the card as a placeholder for a trained model")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = build_graph()
    onnx_bytes = model.SerializeToString()
    (args.out / "model.onnx").write_bytes(onnx_bytes)
    medians = [c for _, c, _ in FEATURES]
    card = {
        "name": "dohguard-anomaly",
        "version": "zscore-fixture-1",
        "kind": "zscore-fixture",
        "placeholder": args.placeholder,
        "description": "hand-set per-feature z-score over the last 5 s (anomaly/tests/make_fixture_model.py), "
        "for tests; not trained",
        "onnx_file": "model.onnx",
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "step_s": STEP_S,
        "window": WINDOW,
        "features": [n for n, _, _ in FEATURES],
        "missing": "ffill-then-median",
        "medians": medians,
        "input": {"name": "window", "dtype": "float32", "shape": ["batch", "features", "window"]},
        "outputs": [
            {"name": "score", "shape": ["batch"]},
            {"name": "contributions", "shape": ["batch", "features"]},
        ],
        "threshold": 4.0,
        "smoothing": {"ewma_alpha": 0.5},
        "hysteresis": {"k": 3, "n": 5},
        "false_alarm_budget": {"per_week": 1},
    }
    (args.out / "model.card.json").write_text(json.dumps(card, indent=2) + "\n")

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    cases = []
    for raw in fixture_windows(np.random.default_rng(7)):
        filled = fill(raw, medians)
        score, contributions = session.run(None, {"window": filled[None]})
        cases.append(
            {
                "window": [[None if v is None else float(np.float32(v)) for v in row] for row in raw],
                "filled": filled.tolist(),
                "score": float(score[0]),
                "contributions": [float(c) for c in contributions[0]],
            }
        )
    fixture = {
        "model_version": f"{card['name']}-{card['version']}",
        "features": card["features"],
        "note": "window: raw values, features x steps, null = no sample; filled: after ffill-then-median; "
        "score/contributions: ONNX Runtime on filled",
        "windows": cases,
    }
    (args.out / "fixture.json").write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out}/model.onnx, model.card.json, fixture.json: scores {[round(c['score'], 3) for c in cases]}")


if __name__ == "__main__":
    main()
