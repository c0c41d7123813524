"""The honest evaluation protocol (issue 8): leave-family-out, leave-style-out, over time,
and benign false positives on a benign source never trained on.

Each held-out evaluation trains a FAST model per fold (gradient-boosted trees over the
engineered features of :mod:`dohguard_models.features`), so the whole protocol runs in
minutes on two CPU cores. The shipped character CNN is scored on the same names through ONNX
Runtime, but only where that is honest: it was trained on most families, so its figures are
marked per family as "seen in its training" or "unseen", and its macro figures use its
unseen families only.

Rules that keep it honest:

- thresholds are chosen on *validation* benign names (FPR 1e-3 and 1e-4) and applied
  unchanged to test benign names, held-out DGA names and the hold-out benign source;
- a held-out family (or style) contributes no name to that fold's training, and every
  family in the style table has its names in exactly one of the train/held-out sides;
- the benign character n-gram model is fitted on benign training names only.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import features, metrics, prepare
from .sources import SOURCES, Source, rank_csv
from .styles import FAMILY_STYLE, STYLES, style_of

FPRS = (1e-3, 1e-4)
WORD_FAMILIES = ("matsnu", "suppobox", "rovnix", "gozi")
GOALS = {
    "seen_auc": 0.999,
    "seen_tpr_at_1e-4": 0.90,
    "lofo_macro_tpr_at_1e-3": 0.80,
    "lofo_macro_tpr_at_1e-4": 0.60,
    "loso_macro_tpr_at_1e-3": 0.60,
    "word_families_seen_tpr_at_1e-3": 0.80,
}

# The newest Tranco lists (2026-08) are the benign source never used for training.
HOLDOUT_BENIGN = [
    Source("tranco/tranco_top_50k.csv", rank_csv("benign", "tranco_2026")),
    Source("tranco/tranco_top_10k.csv", rank_csv("benign", "tranco_2026")),
    Source("tranco/tranco_top_100k.csv", rank_csv("benign", "tranco_2026")),
]

# Dated DGA feeds (SOURCES.tsv): the andrewaeva generator output and the 2017 feeds are old,
# the 2019 chrmor sample and the 2020 UMUDGA set are new. The ddofm files are undated mixes.
OLD_DGA = [
    *(s for s in SOURCES if s.path.startswith("andrewaeva_dga/")),
    *(s for s in SOURCES if s.path.startswith(("bambenek_2017/", "netlab360_2017/dga"))),
]
NEW_DGA = [s for s in SOURCES if s.path.startswith(("chrmor_sample/", "umudga_subset/"))]
UNDATED_DGA = [s for s in SOURCES if s.path.startswith(("ddofm_dga/", "banjori/"))]


class ProtocolError(RuntimeError):
    """The data cannot support the protocol (for example no benign validation names)."""


@dataclass
class ProtocolConfig:
    seed: int = 20261121  # the shipped model's split seed: its val/test names stay unseen
    min_family: int = 200  # names a family needs to be held out and reported on its own
    folds: int = 5
    per_family: int = 3000  # DGA names used per family (seeded sample)
    benign_train: int = 100000  # benign training names (seeded sample of the train split)
    min_time_names: int = 100  # new-feed names a family needs in the over-time test
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 63


@dataclass
class Names:
    """One row per registered domain used by the protocol."""

    text: list[str]
    kind: np.ndarray  # "benign" | "dga" | "external"
    family: np.ndarray
    split: np.ndarray  # train | val | test ("test" for external names)

    def __len__(self) -> int:
        return len(self.text)


@dataclass
class Fold:
    name: str
    held_out: list[str]
    trained_families: list[str]
    thresholds: dict[str, float]
    test_benign_fpr: dict[str, float]
    external_fpr: dict[str, float]
    recall: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


def _k(fpr: float) -> str:
    return f"{fpr:.0e}".replace("e-0", "e-")


# ---------------------------------------------------------------- data


def build_names(prepared: prepare.Prepared, cfg: ProtocolConfig) -> tuple[Names, dict]:
    """Benign train (sampled), val and test; DGA names of the families in the style table
    (sampled per family); the hold-out benign source. Returns the names and what was left
    out."""
    rng = random.Random(cfg.seed)
    by_family: dict[str, list[prepare.Row]] = defaultdict(list)
    benign: dict[str, list[prepare.Row]] = defaultdict(list)
    for r in prepared.rows:
        if r.kind == "benign":
            benign[r.split].append(r)
        elif r.kind == "dga":
            by_family[r.family].append(r)
    if not benign["val"] or not benign["test"]:
        raise ProtocolError("the protocol needs benign names in the val and test splits")
    left_out = {f: len(v) for f, v in sorted(by_family.items()) if f not in FAMILY_STYLE}
    train_benign = benign["train"]
    if len(train_benign) > cfg.benign_train:
        train_benign = rng.sample(train_benign, cfg.benign_train)
    cols: list[tuple[str, str, str, str]] = []  # (text, kind, family, split)
    cols += [(r.text, "benign", r.family, r.split)
             for r in [*train_benign, *benign["val"], *benign["test"]]]
    for f in sorted(by_family):
        if f not in FAMILY_STYLE:
            continue
        rows = by_family[f]
        if len(rows) > cfg.per_family:
            rows = rng.sample(rows, cfg.per_family)
        cols += [(r.text, "dga", f, r.split) for r in rows]
    cols += [(t, "external", "tranco_2026", "test") for t in prepared.holdout_benign]
    text, kind, fam, split = (list(c) for c in zip(*cols))
    names = Names(text, np.array(kind), np.array(fam), np.array(split))
    return names, {"families_not_in_style_table": left_out}


def read_dated(data_dir: Path) -> dict[str, dict[str, set[str]]]:
    """{"old"|"new"|"undated": {family: registered domains}} from the dated DGA feeds."""
    out: dict[str, dict[str, set[str]]] = {}
    for era, srcs in (("old", OLD_DGA), ("new", NEW_DGA), ("undated", UNDATED_DGA)):
        recs, _ = prepare._read([(data_dir / s.path, s.read, 99) for s in srcs])
        fams: dict[str, set[str]] = defaultdict(set)
        for _, rd, rec, _ in recs:
            if rec.kind == "dga":
                fams[rec.family].add(rd)
        out[era] = dict(fams)
    return out


# ---------------------------------------------------------------- folds


def assign_folds(counts: dict[str, int], k: int) -> list[list[str]]:
    """Families into ``k`` groups of similar size (largest first, to the smallest group);
    deterministic, every family in exactly one group."""
    k = max(1, min(k, len(counts)))
    groups: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for fam in sorted(counts, key=lambda f: (-counts[f], f)):
        i = min(range(k), key=lambda j: (sizes[j], j))
        groups[i].append(fam)
        sizes[i] += counts[fam]
    return [sorted(g) for g in groups]


def default_fitter(cfg: ProtocolConfig) -> Callable[[np.ndarray, np.ndarray], Callable]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        clf = HistGradientBoostingClassifier(
            max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
            max_leaf_nodes=cfg.max_leaf_nodes, l2_regularization=1.0, early_stopping=False,
            random_state=cfg.seed,
        )
        clf.fit(x, y)
        return lambda z: clf.predict_proba(z)[:, 1]

    return fit


def thresholds_on(val_benign_scores: np.ndarray) -> dict[str, float]:
    return {_k(f): metrics.threshold_at_fpr(val_benign_scores, f) for f in FPRS}


def run_fold(name: str, names: Names, x: np.ndarray, fit, held_out: list[str],
             excluded: set[str]) -> Fold:
    """Train on benign train names and the train-split DGA names of every family not in
    ``excluded``; thresholds on val benign; recall on every name of ``held_out``."""
    start = time.perf_counter()
    is_benign = names.kind == "benign"
    dga_train = (names.kind == "dga") & (names.split == "train") & ~np.isin(
        names.family, sorted(excluded))
    train = (is_benign & (names.split == "train")) | dga_train
    if not (is_benign & (names.split == "train")).any() or not dga_train.any():
        raise ProtocolError(f"fold {name}: no benign or no DGA training names")
    model = fit(x[train], (names.kind[train] == "dga").astype(np.int64))
    val_b = is_benign & (names.split == "val")
    t = thresholds_on(model(x[val_b]))
    test_b = model(x[is_benign & (names.split == "test")])
    ext_mask = names.kind == "external"
    ext = model(x[ext_mask]) if ext_mask.any() else np.array([])
    fold = Fold(
        name=name, held_out=sorted(held_out),
        trained_families=sorted(set(names.family[dga_train])), thresholds=t,
        test_benign_fpr={k: metrics.rate_at(test_b, v) for k, v in t.items()},
        external_fpr={k: metrics.rate_at(ext, v) for k, v in t.items()},
    )
    for fam in held_out:
        m = (names.kind == "dga") & (names.family == fam)
        s = model(x[m])
        fold.recall[fam] = {"count": int(m.sum()),
                            **{f"recall_at_{k}": metrics.rate_at(s, v) for k, v in t.items()}}
    fold.seconds = time.perf_counter() - start
    return fold


def run_seen(names: Names, x: np.ndarray, fit) -> dict:
    """Every family in training (train split); AUC and TPR on the test split."""
    is_b = names.kind == "benign"
    train = (names.split == "train") & (is_b | (names.kind == "dga"))
    model = fit(x[train], (names.kind[train] == "dga").astype(np.int64))
    t = thresholds_on(model(x[is_b & (names.split == "val")]))
    test_b = model(x[is_b & (names.split == "test")])
    out = {"thresholds": t, "per_family": {}}
    dga_test = (names.kind == "dga") & (names.split == "test")
    out["all"] = _block(test_b, model(x[dga_test]), t)
    for fam in sorted(set(names.family[dga_test])):
        s = model(x[dga_test & (names.family == fam)])
        out["per_family"][fam] = {"count": int(len(s)), **{
            f"recall_at_{k}": metrics.rate_at(s, v) for k, v in t.items()}}
    out["test_benign_fpr"] = {k: metrics.rate_at(test_b, v) for k, v in t.items()}
    ext = names.kind == "external"
    out["external_fpr"] = {k: metrics.rate_at(model(x[ext]), v) for k, v in t.items()} \
        if ext.any() else {}
    out["external_count"] = int(ext.sum())
    return out


def _block(benign: np.ndarray, pos: np.ndarray, t: dict[str, float]) -> dict:
    y = np.r_[np.zeros(len(benign)), np.ones(len(pos))]
    return {"count": int(len(pos)), "auc": metrics.auc(y, np.r_[benign, pos]),
            **{f"tpr_at_{k}": metrics.rate_at(pos, v) for k, v in t.items()}}


def _macro(recalls: dict[str, dict], key: str) -> float:
    vals = [d[key] for d in recalls.values()]
    return float(np.mean(vals)) if vals else float("nan")


def leave_family_out(names: Names, x: np.ndarray, fit, cfg: ProtocolConfig) -> dict:
    counts = {f: int(((names.kind == "dga") & (names.family == f)).sum())
              for f in sorted(set(names.family[names.kind == "dga"]))}
    eligible = {f: n for f, n in counts.items() if n >= cfg.min_family}
    folds = [run_fold(f"family-fold-{i + 1}", names, x, fit, g, set(g))
             for i, g in enumerate(assign_folds(eligible, cfg.folds))]
    recall = {f: d for fold in folds for f, d in fold.recall.items()}
    return {
        "min_family": cfg.min_family,
        "eligible": eligible,
        "not_held_out_too_small": {f: n for f, n in counts.items() if f not in eligible},
        "folds": [asdict(f) for f in folds],
        "per_family": dict(sorted(recall.items())),
        **{f"macro_recall_at_{_k(p)}": _macro(recall, f"recall_at_{_k(p)}") for p in FPRS},
    }


def leave_style_out(names: Names, x: np.ndarray, fit, cfg: ProtocolConfig) -> dict:
    dga_fams = set(names.family[names.kind == "dga"])
    out: dict = {"styles": {}}
    for style in STYLES:
        fams = sorted(f for f in dga_fams if style_of(f) == style)
        if not fams:
            continue
        reported = [f for f in fams
                    if ((names.kind == "dga") & (names.family == f)).sum() >= cfg.min_family]
        fold = run_fold(f"style-{style}", names, x, fit, reported, set(fams))
        pooled_mask = (names.kind == "dga") & np.isin(names.family, fams)
        out["styles"][style] = {
            "families": fams, "reported_families": reported, "fold": asdict(fold),
            "pooled_count": int(pooled_mask.sum()),
            **{f"macro_recall_at_{_k(p)}": _macro(fold.recall, f"recall_at_{_k(p)}")
               for p in FPRS},
        }
    for p in FPRS:
        key = f"macro_recall_at_{_k(p)}"
        vals = [s[key] for s in out["styles"].values() if not np.isnan(s[key])]
        out[f"mean_over_styles_{key}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def over_time(names: Names, x: np.ndarray, x_of: Callable[[list[str]], np.ndarray],
              dated: dict, fit, cfg: ProtocolConfig) -> dict:
    """Train on benign train names and every old-feed DGA name; test on the names that only
    the new feeds list, per family seen in the old feeds."""
    rng = random.Random(cfg.seed)
    old, new, undated = dated["old"], dated["new"], dated["undated"]
    all_old = set().union(*old.values()) if old else set()
    all_undated = set().union(*undated.values()) if undated else set()
    old_texts: list[str] = []
    for f in sorted(old):
        if f in FAMILY_STYLE:
            pick = sorted(old[f])
            old_texts += rng.sample(pick, min(len(pick), cfg.per_family))
    tests = {}
    for f in sorted(new):
        only_new = sorted(new[f] - all_old - all_undated)
        if f in FAMILY_STYLE and len(only_new) >= cfg.min_time_names:
            tests[f] = rng.sample(only_new, min(len(only_new), cfg.per_family))
    if not old_texts or not tests:
        return {"skipped": "no family with both old and new-only names"}
    is_b = names.kind == "benign"
    xb = x[is_b & (names.split == "train")]
    xo = x_of(old_texts)
    model = fit(np.r_[xb, xo], np.r_[np.zeros(len(xb)), np.ones(len(xo))].astype(np.int64))
    t = thresholds_on(model(x[is_b & (names.split == "val")]))
    res = {}
    for f, texts in tests.items():
        s = model(x_of(texts))
        res[f] = {"count": len(texts), "family_in_old_feeds": f in old,
                  **{f"recall_at_{k}": metrics.rate_at(s, v) for k, v in t.items()}}
    seen = {f: d for f, d in res.items() if d["family_in_old_feeds"]}
    return {
        "old_sources": [s.path for s in OLD_DGA], "new_sources": [s.path for s in NEW_DGA],
        "undated_sources_excluded_from_test": [s.path for s in UNDATED_DGA],
        "old_training_names": len(old_texts), "thresholds": t, "per_family": res,
        **{f"macro_recall_seen_families_at_{_k(p)}": _macro(seen, f"recall_at_{_k(p)}")
           for p in FPRS},
    }


# ---------------------------------------------------------------- the shipped CNN


def cnn_scores(model_dir: Path, texts: list[str]) -> np.ndarray:
    from .encoding import encode_batch
    from .export import onnx_scores, session

    sess = session(model_dir / "model.onnx", threads=1)
    out = np.zeros(len(texts), dtype=np.float32)
    for i in range(0, len(texts), 8192):
        out[i:i + 8192] = onnx_scores(sess, encode_batch(texts[i:i + 8192]))
    return out


def cnn_evaluation(names: Names, scores: np.ndarray, shipped_manifest: dict,
                   lofo: dict, seed: int) -> dict:
    """The shipped CNN on the protocol's names, where honest: only names outside its training
    split (same salted hash and seed as its manifest), thresholds from val benign."""
    train_counts = shipped_manifest["counts"]["train"].get("dga", {})
    seen_fams = {f for f, n in train_counts.items() if n > 0}
    cfgm = shipped_manifest["config"]
    if cfgm["seed"] != seed:
        raise ProtocolError(f"shipped model's split seed {cfgm['seed']} != protocol seed {seed}")
    in_cnn_train = np.array([
        prepare._split_of(t, cfgm["seed"], cfgm["val_fraction"], cfgm["test_fraction"]) == "train"
        and f not in cfgm["held_out_families"]
        for t, f in zip(names.text, names.family)])
    is_b = names.kind == "benign"
    val_b = scores[is_b & (names.split == "val")]
    t = thresholds_on(val_b)
    test_b = scores[is_b & (names.split == "test")]
    ext = (names.kind == "external") & ~in_cnn_train
    per_family = {}
    for fam in sorted(set(names.family[names.kind == "dga"])):
        m = (names.kind == "dga") & (names.family == fam) & ~in_cnn_train
        s = scores[m]
        per_family[fam] = {"count": int(m.sum()), "seen_in_cnn_training": fam in seen_fams,
                           **{f"recall_at_{k}": metrics.rate_at(s, v) for k, v in t.items()}}
    unseen = {f: d for f, d in per_family.items()
              if not d["seen_in_cnn_training"] and f in lofo["eligible"]}
    seen_test = (names.kind == "dga") & (names.split == "test") & np.isin(
        names.family, sorted(seen_fams)) & ~in_cnn_train
    word = {f: per_family[f] for f in WORD_FAMILIES if f in per_family}
    return {
        "model_dir": "models/dga-cnn", "thresholds": t,
        "test_benign_fpr": {k: metrics.rate_at(test_b, v) for k, v in t.items()},
        "external_count": int(ext.sum()),
        "external_fpr": {k: metrics.rate_at(scores[ext], v) for k, v in t.items()},
        "seen_families_test": _block(test_b, scores[seen_test], t),
        "per_family": per_family,
        "unseen_families": sorted(unseen),
        **{f"unseen_macro_recall_at_{_k(p)}": _macro(unseen, f"recall_at_{_k(p)}")
           for p in FPRS},
        "word_families": word,
    }


# ---------------------------------------------------------------- the run


def run(data_dir: Path, out: Path, cfg: ProtocolConfig, shipped: Path | None,
        words: frozenset[str] | None = None, progress: Callable[[str], None] = print) -> dict:
    start = time.perf_counter()
    prep_cfg = prepare.PrepareConfig(seed=cfg.seed, held_out_families=())
    progress("preparing data (benign cleaning on; the 2026 Tranco lists held out)")
    sources = [s for s in SOURCES if s.path not in {h.path for h in HOLDOUT_BENIGN}]
    prepared = prepare.prepare(data_dir, prep_cfg, sources=sources,
                               holdout_benign=HOLDOUT_BENIGN)
    names, left_out = build_names(prepared, cfg)
    progress("reading the dated feeds")
    dated = read_dated(data_dir)
    report = evaluate_all(names, dated, cfg, words=words, shipped=shipped, progress=progress)
    report["data"] = {
        "manifest_totals": prepared.manifest["totals"],
        "benign_cleaning": {k: v for k, v in prepared.manifest["label_policy"][
            "benign_cleaning"].items() if k != "sources"},
        "holdout_benign": prepared.manifest.get("holdout_benign", {}),
        **left_out,
    }
    report["run"] = {
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.node() or 'this machine'}: {os.cpu_count()} CPUs, "
                   f"load average {os.getloadavg()[0]:.1f} at the end",
        "command": "python -m dohguard_models protocol",
        "config": asdict(cfg),
    }
    write_report(out, report)
    return report


def evaluate_all(names: Names, dated: dict, cfg: ProtocolConfig, words=None,
                 shipped: Path | None = None, fit=None,
                 progress: Callable[[str], None] = print) -> dict:
    fit = fit or default_fitter(cfg)
    words = words if words is not None else features.load_words()
    lm_texts = [features.split_label(t)[0].replace(".", "") for t, k, s in
                zip(names.text, names.kind, names.split) if k == "benign" and s == "train"]
    lm = features.CharNgramModel(lm_texts)
    x_of = lambda texts: features.featurise(texts, lm, words)  # noqa: E731
    progress(f"features for {len(names)} names")
    t0 = time.perf_counter()
    x = x_of(names.text)
    feat_s = time.perf_counter() - t0
    progress("seen families")
    seen = run_seen(names, x, fit)
    progress("leave-family-out")
    lofo = leave_family_out(names, x, fit, cfg)
    progress("leave-style-out")
    loso = leave_style_out(names, x, fit, cfg)
    progress("over time")
    time_res = over_time(names, x, x_of, dated, fit, cfg)
    report = {
        "model": {"fast": "HistGradientBoostingClassifier over engineered features",
                  "features": list(features.FEATURE_NAMES), "feature_seconds": feat_s,
                  "names": len(names)},
        "goals": GOALS, "seen": seen, "leave_family_out": lofo, "leave_style_out": loso,
        "over_time": time_res,
        "styles": {f: {"style": s, "reason": r} for f, (s, r) in sorted(FAMILY_STYLE.items())},
    }
    if shipped is not None:
        progress("scoring the shipped CNN")
        manifest = json.loads((shipped / "manifest.json").read_text())
        report["cnn"] = cnn_evaluation(names, cnn_scores(shipped, names.text), manifest,
                                       lofo, cfg.seed)
    report["goal_check"] = goal_check(report)
    return report


def goal_check(r: dict) -> dict:
    seen, lofo, loso = r["seen"], r["leave_family_out"], r["leave_style_out"]
    word = [seen["per_family"][f]["recall_at_1e-3"] for f in WORD_FAMILIES
            if f in seen["per_family"]]
    out = {"fast_model": {
        "seen_auc": seen["all"]["auc"],
        "seen_tpr_at_1e-4": seen["all"]["tpr_at_1e-4"],
        "lofo_macro_tpr_at_1e-3": lofo["macro_recall_at_1e-3"],
        "lofo_macro_tpr_at_1e-4": lofo["macro_recall_at_1e-4"],
        "loso_macro_tpr_at_1e-3": loso["mean_over_styles_macro_recall_at_1e-3"],
        "word_families_seen_tpr_at_1e-3": min(word) if word else float("nan"),
    }}
    if "cnn" in r:
        c = r["cnn"]
        cw = [d["recall_at_1e-3"] for d in c["word_families"].values()
              if d["seen_in_cnn_training"]]
        out["shipped_cnn"] = {
            "seen_auc": c["seen_families_test"]["auc"],
            "seen_tpr_at_1e-4": c["seen_families_test"]["tpr_at_1e-4"],
            "lofo_macro_tpr_at_1e-3": c["unseen_macro_recall_at_1e-3"],
            "lofo_macro_tpr_at_1e-4": c["unseen_macro_recall_at_1e-4"],
            "loso_macro_tpr_at_1e-3": float("nan"),
            "word_families_seen_tpr_at_1e-3": min(cw) if cw else float("nan"),
        }
    for m in out.values():
        for g, target in GOALS.items():
            v = m.get(g, float("nan"))
            m[f"{g}_met"] = None if np.isnan(v) else bool(v >= target)
    return out


# ---------------------------------------------------------------- report


def write_report(out: Path, r: dict) -> None:
    from . import protocol_report

    out.mkdir(parents=True, exist_ok=True)
    extra = detector_sections(out, r)
    (out / "protocol.json").write_text(json.dumps(r, indent=1, default=_json) + "\n")
    protocol_report.plots(out, r)
    (out / "report.md").write_text(protocol_report.markdown(r) + extra)


def detector_sections(out: Path, r: dict) -> str:
    """The look-alike phishing and word-family figures (``python -m dohguard_models
    lookalike`` and ``word-families`` write them beside the protocol's files): copied into
    ``r`` and rendered as report sections; absent files are said to be absent."""
    from . import lookalike_report, wordfamilies

    parts = []
    for key, file, render, command in (
            ("lookalike", "lookalike.json", lookalike_report.section, "lookalike"),
            ("word_families", "word_families.json", wordfamilies.section, "word-families")):
        path = out / file
        if path.is_file():
            r[key] = json.loads(path.read_text())
            parts.append(render(r[key]))
            if key == "lookalike" and (out / "lookalike_recall.png").is_file():
                parts.append("![look-alike recall by held-out source and date]"
                             "(lookalike_recall.png)\n")
        else:
            parts.append(f"## {key}\n\nNot measured: run `python -m dohguard_models {command}`.\n")
    return "\n" + "\n".join(parts)


def rerender(out: Path) -> dict:
    """Rewrite report.md (and protocol.json) from protocol.json and the detector files,
    without rerunning the protocol."""
    r = json.loads((out / "protocol.json").read_text())
    write_report(out, r)
    return r


def _json(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
