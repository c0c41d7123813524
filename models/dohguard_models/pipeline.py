"""The one-command retraining pipeline: prepare -> train -> export (+ parity) -> card ->
evaluation report -> shared encoding fixture. Each step is a module of its own; this file
only wires them and writes the outputs into one model folder."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import evaluate, export, fixtures, metrics, prepare, train
from .encoding import encode_batch

MODELS_DIR = Path(__file__).resolve().parent.parent
SHIPPED_DIR = MODELS_DIR / "dga-cnn"
SHARED_FIXTURE = MODELS_DIR / "fixtures" / "encoding.json"
DEFAULT_DATA = MODELS_DIR.parent.parent / "shared" / "data"


class PipelineError(RuntimeError):
    """The inputs cannot produce a model (for example no benign names to set thresholds)."""


@dataclass
class PipelineConfig:
    out: Path = SHIPPED_DIR
    data_dir: Path | None = DEFAULT_DATA
    user_csvs: list[Path] = field(default_factory=list)
    version: str = ""
    subsample: float = 1.0  # keep this fraction of every split (quick experiments, tests)
    fixture: Path | None = None
    prep: prepare.PrepareConfig = field(default_factory=prepare.PrepareConfig)
    train: train.TrainConfig = field(default_factory=train.TrainConfig)
    throughput: bool = True


def _check_usable(splits: dict[str, list[prepare.Row]]) -> None:
    for split in ("train", "val"):
        labels = {r.label for r in splits[split]}
        if labels != {0, 1}:
            have = "benign" if labels == {0} else "malicious" if labels == {1} else "no"
            raise PipelineError(
                f"the {split} split has only {have} names; training needs benign and malicious "
                f"names in both train and validation (add more labelled names)"
            )


def run(cfg: PipelineConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare.prepare(cfg.data_dir, cfg.prep, cfg.user_csvs)
    rows = prepared.rows
    if cfg.subsample < 1.0:
        rng = random.Random(cfg.prep.seed)
        rows = [r for r in rows if rng.random() < cfg.subsample]
    splits = prepare.rows_by_split(rows)
    _check_usable(splits)
    manifest = prepared.manifest
    manifest["subsample"] = cfg.subsample
    prepare.write_manifest(manifest, out / "manifest.json")

    result = train.train(splits["train"], splits["val"], cfg.train)

    onnx_path = out / "model.onnx"
    export.export_onnx(result.net, onnx_path)
    sample = encode_batch([r.text for r in splits["val"][:: max(1, len(splits["val"]) // 2048)]])
    parity = export.check_parity(result.net, onnx_path, sample)

    sess = export.session(onnx_path, threads=2)
    val_benign = [r.text for r in splits["val"] if r.label == 0]
    benign_scores = export.onnx_scores(sess, encode_batch(val_benign))
    thresholds = {
        "block": _round_up(metrics.threshold_at_fpr(benign_scores, 1e-4)),
        "monitor": _round_up(metrics.threshold_at_fpr(benign_scores, 1e-3)),
    }
    version = cfg.version or dt.datetime.now(dt.timezone.utc).strftime("%Y.%m.%d")
    card = export.write_card(
        out, version, thresholds,
        "Character CNN over the registered domain; trained by models/dohguard_models "
        "(see report.md). block = FPR 1e-4 and monitor = FPR 1e-3 on validation benign names.",
    )

    extra = {
        "model": {"name": card["name"], "version": version, "sha256": card["sha256"]},
        "card_thresholds": thresholds,
        "parity_max_abs_diff": parity,
        "training": {
            "parameters": result.parameters,
            "seconds": result.seconds,
            "history": result.history,
            "config": result.config,
            "onnx_bytes": onnx_path.stat().st_size,
        },
        "data": {
            "totals": manifest["totals"],
            "held_out_families": list(cfg.prep.held_out_families),
            "subsample": cfg.subsample,
        },
    }
    report = evaluate.evaluate(out, splits["val"], splits["test"],
                               cfg.prep.held_out_families, extra)
    fixture_path = cfg.fixture or (SHARED_FIXTURE if out.resolve() == SHIPPED_DIR else
                                   out / "encoding.json")
    fixtures.write_fixture(out, card, fixture_path)
    report["fixture"] = str(fixture_path)
    return report


def _round_up(x: float, digits: int = 6) -> float:
    """Round a threshold up (never admits more false positives than chosen)."""
    scale = 10**digits
    return float(min(1.0, np.ceil(x * scale) / scale))
