"""ONNX export, the PyTorch-vs-ONNX Runtime parity check, and the model card.

The exported graph is the one the scorer runs: ``input_ids`` ``[batch, 64]`` int64 in,
``score`` ``[batch]`` float32 probabilities out, batch dimension dynamic. The legacy
TorchScript exporter (``dynamo=False``) writes one self-contained file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .encoding import ALPHABET, MAX_LENGTH, PAD_ID, UNKNOWN_ID
from .model import CharCNN, ScoreHead

OPSET = 17
CARD_NAME = "dohguard-dga-cnn"


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def export_onnx(net: CharCNN, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ScoreHead(net).eval()
    dummy = torch.zeros((2, MAX_LENGTH), dtype=torch.int64)
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (one self-contained file, no onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(head, dummy, path)


def _export(head: ScoreHead, dummy: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        head,
        (dummy,),
        str(path),
        input_names=["input_ids"],
        output_names=["score"],
        dynamic_axes={"input_ids": {0: "batch"}, "score": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_scores(sess: ort.InferenceSession, ids: np.ndarray, batch: int = 4096) -> np.ndarray:
    out = [sess.run(["score"], {"input_ids": ids[i : i + batch]})[0].reshape(-1)
           for i in range(0, len(ids), batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def check_parity(net: CharCNN, onnx_path: Path, ids: np.ndarray, atol: float = 1e-5) -> float:
    """Max absolute difference between PyTorch (full 64-column input, padding trim off) and
    ONNX Runtime on ``ids``; raises :class:`ParityError` above ``atol``."""
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(torch.from_numpy(ids), trim=False)).numpy()
    got = onnx_scores(session(onnx_path), ids)
    diff = float(np.max(np.abs(expected - got))) if len(ids) else 0.0
    if diff > atol:
        raise ParityError(f"ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol})")
    return diff


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_card(out_dir: Path, version: str, thresholds: dict[str, float], description: str) -> dict:
    card = {
        "name": CARD_NAME,
        "version": version,
        "placeholder": False,
        "description": description,
        "onnx_file": "model.onnx",
        "sha256": sha256_of(out_dir / "model.onnx"),
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
                "meaning": "probability that the name is DGA/malicious (sigmoid applied)",
            }
        ],
        "thresholds": thresholds,
    }
    (out_dir / "model.card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
