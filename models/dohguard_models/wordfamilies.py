"""Word-based DGA families (matsnu, suppobox, rovnix, gozi): a measured-only experiment beside
the evaluation protocol (``python -m dohguard_models word-families``; writes
``models/protocol/word_families.json``, which the protocol report includes).

The protocol's fast model reads FANCI-style features whose dictionary part only says *how
much* of a label is English words, which benign names share (``facebook`` = face + book). The
word families draw their words from small fixed lists (suppobox, matsnu) or one text (rovnix:
the US Declaration of Independence; gozi: word fragments of a document). This experiment adds
**word log-odds features**: each label is segmented against the same word list, and every
word gets the log-odds of appearing in DGA vs benign training names (add-one smoothed, counted
on the fold's training names only, cross-fitted in two halves for the training rows so a name
never scores its own words). Features per name: words, unknown words, max / min / mean / sum
of the words' log-odds, fraction of words with positive log-odds.

It is measured on the protocol's names (same data, split, samples and thresholds from
validation benign names), seen (every family trained) and with each word family left out
alone, for the protocol's fast model with and without the new features.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from . import features, metrics, prepare, protocol

WORD_FAMILIES = protocol.WORD_FAMILIES
ODDS_NAMES = ("words", "unknown_words", "max_word_logodds", "min_word_logodds",
              "mean_word_logodds", "sum_word_logodds", "positive_word_fraction")


def segments(texts: list[str], words: frozenset[str]) -> list[list[str]]:
    out = []
    for t in texts:
        label = features.split_label(t)[0]
        out.append([w for part in label.split("-")
                    for w in features.segment(part.replace(".", ""), words)])
    return out


class WordOdds:
    def __init__(self, dga: list[list[str]], benign: list[list[str]]):
        self.d = Counter(w for s in dga for w in set(s))
        self.b = Counter(w for s in benign for w in set(s))
        self.nd, self.nb = max(len(dga), 1), max(len(benign), 1)

    def logodds(self, w: str) -> float | None:
        if w not in self.d and w not in self.b:
            return None
        return math.log((self.d[w] + 1) / (self.nd + 2)) - math.log((self.b[w] + 1) / (self.nb + 2))

    def features(self, seg: list[str]) -> list[float]:
        lo = [self.logodds(w) for w in seg]
        known = [v for v in lo if v is not None]
        if not known:
            return [len(seg), len(seg), 0.0, 0.0, 0.0, 0.0, 0.0]
        return [len(seg), len(seg) - len(known), max(known), min(known),
                sum(known) / len(known), sum(known), sum(v > 0 for v in known) / len(known)]


def odds_features(names: protocol.Names, segs: list[list[str]], train: np.ndarray) -> np.ndarray:
    """Word log-odds features of every name, from the training rows ``train`` (a mask) only;
    each training row is scored by the table of the other half of the training rows."""
    y_dga = names.kind == "dga"
    half = np.array([hashlib.sha256(t.encode()).digest()[0] & 1 for t in names.text], bool)
    tables = {}
    for h in (False, True, None):
        m = train & ((half != h) if h is not None else True)
        tables[h] = WordOdds([segs[i] for i in np.nonzero(m & y_dga)[0]],
                             [segs[i] for i in np.nonzero(m & ~y_dga)[0]])
    out = np.zeros((len(names), len(ODDS_NAMES)), dtype=np.float32)
    for i, seg in enumerate(segs):
        table = tables[bool(half[i])] if train[i] else tables[None]
        out[i] = table.features(seg)
    return out


def _fit_eval(names, x, fit, train: np.ndarray, tests: dict[str, np.ndarray]) -> dict:
    is_b = names.kind == "benign"
    model = fit(x[train], (names.kind[train] == "dga").astype(np.int64))
    t = protocol.thresholds_on(model(x[is_b & (names.split == "val")]))
    test_b = model(x[is_b & (names.split == "test")])
    ext = names.kind == "external"
    out = {"thresholds": t,
           "test_benign_fpr": {k: metrics.rate_at(test_b, v) for k, v in t.items()},
           "holdout_benign_fpr": {k: metrics.rate_at(model(x[ext]), v) for k, v in t.items()},
           "recall": {}}
    for name, m in tests.items():
        s = model(x[m])
        out["recall"][name] = {"count": int(m.sum()),
                               **{f"recall_at_{k}": metrics.rate_at(s, v) for k, v in t.items()}}
    return out


def evaluate(names: protocol.Names, cfg: protocol.ProtocolConfig, words: frozenset[str],
             progress=print) -> dict:
    fit = protocol.default_fitter(cfg)
    lm_texts = [features.split_label(t)[0].replace(".", "") for t, k, s in
                zip(names.text, names.kind, names.split) if k == "benign" and s == "train"]
    lm = features.CharNgramModel(lm_texts)
    progress(f"FANCI features and word segmentation for {len(names)} names")
    x_base = features.featurise(names.text, lm, words)
    segs = segments(names.text, words)
    is_b, is_d = names.kind == "benign", names.kind == "dga"
    fams = sorted(set(names.family[is_d]))
    res: dict = {"features_added": list(ODDS_NAMES), "seen": {}, "left_out": {}}
    seen_train = (names.split == "train") & (is_b | is_d)
    seen_tests = {f: is_d & (names.split == "test") & (names.family == f) for f in fams}
    x_odds = odds_features(names, segs, seen_train)
    for arm, x in (("fast", x_base), ("fast+word_odds", np.hstack([x_base, x_odds]))):
        progress(f"seen families: {arm}")
        r = _fit_eval(names, x, fit, seen_train, seen_tests)
        r["macro_recall_at_1e-3_all_families"] = float(np.mean(
            [v["recall_at_1e-3"] for v in r["recall"].values()]))
        res["seen"][arm] = r
    for fam in WORD_FAMILIES:
        if fam not in fams:
            continue
        train = seen_train & ~(is_d & (names.family == fam))
        test = {fam: is_d & (names.family == fam)}
        x_odds = odds_features(names, segs, train)
        res["left_out"][fam] = {}
        for arm, x in (("fast", x_base), ("fast+word_odds", np.hstack([x_base, x_odds]))):
            progress(f"{fam} left out: {arm}")
            res["left_out"][fam][arm] = _fit_eval(names, x, fit, train, test)
    return res


def run(data_dir: Path, out: Path, cfg: protocol.ProtocolConfig, progress=print) -> dict:
    start = time.perf_counter()
    words = features.load_words()
    sources = [s for s in protocol.SOURCES
               if s.path not in {h.path for h in protocol.HOLDOUT_BENIGN}]
    prepared = prepare.prepare(data_dir, prepare.PrepareConfig(seed=cfg.seed,
                               held_out_families=()), sources=sources,
                               holdout_benign=protocol.HOLDOUT_BENIGN)
    names, _ = protocol.build_names(prepared, cfg)
    res = evaluate(names, cfg, words, progress)
    res["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "word_families.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def section(r: dict) -> str:
    p = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        "## Word-based families: word log-odds features (measured only, not shipped)",
        "",
        "The fast model with and without word log-odds features (" + ", ".join(
            f"`{n}`" for n in r["features_added"]) + "): each label is segmented against the "
        "word list and each word scored by its log-odds of appearing in DGA vs benign "
        "training names of the fit (cross-fitted for training rows). Same names and "
        "thresholds rule as the protocol. Goal: seen word families >= 80% at FPR 1e-3.",
        "",
        "| family | seen, fast @1e-3 / 1e-4 | seen, +word odds @1e-3 / 1e-4 | left out, fast @1e-3 "
        "| left out, +word odds @1e-3 / 1e-4 |",
        "|---|---:|---:|---:|---:|",
    ]
    sf, so = r["seen"]["fast"]["recall"], r["seen"]["fast+word_odds"]["recall"]
    for fam in WORD_FAMILIES:
        if fam not in sf:
            continue
        lo = r["left_out"].get(fam, {})
        lf = lo.get("fast", {}).get("recall", {}).get(fam, {})
        lw = lo.get("fast+word_odds", {}).get("recall", {}).get(fam, {})
        lines.append(
            f"| {fam} | {p(sf[fam]['recall_at_1e-3'])} / {p(sf[fam]['recall_at_1e-4'])} | "
            f"{p(so[fam]['recall_at_1e-3'])} / {p(so[fam]['recall_at_1e-4'])} | "
            f"{p(lf.get('recall_at_1e-3', float('nan')))} | "
            f"{p(lw.get('recall_at_1e-3', float('nan')))} / "
            f"{p(lw.get('recall_at_1e-4', float('nan')))} |")
    worst = min(so[f]["recall_at_1e-3"] for f in WORD_FAMILIES if f in so)
    a, b = r["seen"]["fast"], r["seen"]["fast+word_odds"]
    lines += [
        "",
        f"Worst seen word family with word odds: **{p(worst)}** at 1e-3 (goal 80%: "
        f"{'met' if worst >= 0.8 else '**missed**'}). Macro over all seen families at 1e-3: "
        f"fast {p(a['macro_recall_at_1e-3_all_families'])}, +word odds "
        f"{p(b['macro_recall_at_1e-3_all_families'])}; hold-out benign FPR at the 1e-3 "
        f"threshold: fast {p(a['holdout_benign_fpr']['1e-3'])}, +word odds "
        f"{p(b['holdout_benign_fpr']['1e-3'])}.",
        "",
    ]
    return "\n".join(lines)
