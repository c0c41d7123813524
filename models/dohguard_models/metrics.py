"""Detection metrics in plain numpy: ROC, AUC, thresholds at a target false-positive rate,
and calibration. Kept dependency-free (no scikit-learn) because these few functions are
all the report needs and their tie handling is spelled out here."""

from __future__ import annotations

import numpy as np


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) over every distinct score, highest threshold first."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.int64)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    pos, neg = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[distinct]]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def threshold_at_fpr(benign_scores: np.ndarray, fpr: float) -> float:
    """Lowest threshold whose false-positive rate on ``benign_scores`` is at most ``fpr``
    (a name is flagged when ``score >= threshold``)."""
    desc = np.sort(benign_scores)[::-1]
    k = int(np.floor(fpr * len(desc)))  # false positives allowed
    if k >= len(desc):
        return 0.0
    return float(np.nextafter(np.float32(desc[k]), np.float32(np.inf)))


def rate_at(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores >= threshold)) if len(scores) else float("nan")


def calibration(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> dict:
    """Reliability table, expected calibration error and Brier score."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        conf, acc = float(scores[m].mean()), float(labels[m].mean())
        ece += m.mean() * abs(conf - acc)
        table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": int(m.sum()),
                      "mean_score": conf, "positive_rate": acc})
    brier = float(np.mean((scores - labels) ** 2))
    return {"ece": float(ece), "brier": brier, "bins": table}
