"""Fine-tune the serving model on what an installation has: the analysts' labels (the
console's label CSV) plus a sample of recent verdicts, then check the candidate and compare
it with the serving model on the distinct names of recent traffic (the shadow comparison).

A user's installation has no ``../shared/data``: this path needs only the serving model's
folder (its ONNX weights are the starting point: the initializers carry the PyTorch names),
the labels and the sample. ``python -m dohguard_models finetune --help`` runs it; the console
runs it as its "retrain" job and reads the JSON progress lines it prints.

Inputs (all ``name,label[,family,...]`` CSVs, read by :func:`sources.user_csv`, so the same
file works with ``train --csv``/``--extra-csv``):

- ``--labels``: the analysts' labels (contract 4's export). They win over the sample.
- ``--sample``: recent verdicts the console took as ground truth by rule (docs/contracts.md,
  "Retraining"): allowed names far below the monitor threshold are benign, names the model
  blocked are malicious. It anchors the model so a handful of labels does not move it
  elsewhere.
- ``--data-dir``: an operator's data folder: every ``*.csv`` file directly in it (sorted by
  name; ``name,label[,family]`` with that header, like ``train --csv``). Its rows join the
  sample and win over it (the labels still win over both). A missing folder, a folder with no
  ``.csv`` file, or files with no rows stop the run with a message saying so; a bad row is an
  error naming ``file:line``.
- ``--shadow``: one ``name`` per line (header ``name``): the distinct registered domains of
  the last N days, scored by both models.

Outputs in ``--out``: ``model.onnx``, ``model.card.json`` (the serving card's thresholds and
input contract, a new version, the candidate's sha256), ``report.json`` (checks, label metrics,
shadow comparison), ``report.md``, ``encoding.json`` (the fixture for this candidate).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from . import export, fixtures
from .encoding import InvalidName, encode_batch, model_text, normalise
from .model import CharCNN
from .sources import SourceError, user_csv

SHARED_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "encoding.json"


class FinetuneError(RuntimeError):
    """The inputs cannot produce a candidate (no labels, unreadable serving model, ...)."""


@dataclass
class FinetuneConfig:
    base: Path  # the serving model's card
    labels: Path
    out: Path
    sample: Path | None = None
    shadow: Path | None = None
    data_dir: Path | None = None  # an operator's folder of name,label[,family] CSVs
    version: str = ""
    epochs: int = 3
    max_seconds: float = 240.0
    batch_size: int = 64
    lr: float = 1e-3
    label_weight: float = 5.0  # an analyst's label counts this many sampled verdicts
    seed: int = 20261202
    threads: int = 2
    # Thresholds in force at the scorer (default: the serving card's).
    monitor: float | None = None
    block: float | None = None
    # A candidate whose precision or recall on the labels is below the serving model's by
    # more than this fails its checks (cannot be promoted).
    max_regression: float = 0.05
    max_changes: int = 500
    progress: callable = field(default=lambda stage, fraction, message="": None)


# --- the serving model as PyTorch -------------------------------------------------------


def load_onnx_net(onnx_path: Path) -> CharCNN:
    """The :class:`CharCNN` whose weights are the ONNX file's initializers (``net.*``)."""
    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as err:  # onnx raises several types for a bad file
        raise FinetuneError(f"{onnx_path}: not a readable ONNX model ({err})") from err
    weights = {i.name.removeprefix("net."): torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in graph.initializer}
    try:
        embed_dim = weights["embed.weight"].shape[1]
        convs = sorted(k for k in weights if k.startswith("convs.") and k.endswith(".weight"))
        channels = weights[convs[0]].shape[0]
        widths = tuple(int(weights[k].shape[2]) for k in convs)
        hidden = weights["head.0.weight"].shape[0]
    except (KeyError, IndexError) as err:
        raise FinetuneError(f"{onnx_path}: not a dohguard character CNN (missing {err})") from err
    net = CharCNN(embed_dim, channels, widths, hidden)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise FinetuneError(f"{onnx_path}: weights do not fit the CNN (missing {missing}, "
                            f"unexpected {unexpected})")
    return net


# --- inputs -----------------------------------------------------------------------------


def read_labelled(path: Path) -> list[tuple[str, int]]:
    """``(model text, 0|1)`` rows of a ``name,label[,family,...]`` CSV; a name that is not a
    DNS name is an error naming the file (nothing an analyst said is dropped silently)."""
    out = []
    for rec in user_csv(path):
        try:
            text = model_text(normalise(rec.raw.strip()))
        except InvalidName as err:
            raise SourceError(f"{path}: {err}") from err
        out.append((text, 0 if rec.kind == "benign" else 1))
    return out


def read_names(path: Path) -> list[str]:
    """The model texts of a ``name`` CSV (first column), de-duplicated in order."""
    import csv

    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    seen, out = set(), []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:1] != ["name"]:
            raise SourceError(f"{path}:1: header must start with 'name', found {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                text = model_text(normalise(row[0].strip()))
            except InvalidName as err:
                raise SourceError(f"{path}:{lineno}: {err}") from err
            if text not in seen:
                seen.add(text)
                out.append(text)
    return out


def read_data_dir(path: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """The rows of every ``*.csv`` directly in ``path`` (sorted by file name) and the files'
    names. A missing folder, no ``.csv`` file, or no row in any of them is a
    :class:`FinetuneError` saying which; a bad row a :class:`SourceError` naming file:line."""
    path = Path(path)
    if not path.is_dir():
        raise FinetuneError(f"data folder {path}: not found (or not a folder)")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        raise FinetuneError(f"data folder {path}: no .csv files (each needs the header "
                            "name,label[,family])")
    rows = []
    for f in files:
        rows.extend(read_labelled(f))
    if not rows:
        raise FinetuneError(f"data folder {path}: its {len(files)} .csv files hold no rows")
    return rows, [f.name for f in files]


def training_rows(labels: list[tuple[str, int]], sample: list[tuple[str, int]],
                  label_weight: float, data: list[tuple[str, int]] = ()
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels win over the data folder's rows, which win over the sample, for the same text;
    returns texts, targets, weights."""
    rows: dict[str, tuple[int, float]] = {t: (y, 1.0) for t, y in sample}
    for t, y in data:
        rows[t] = (y, 1.0)
    for t, y in labels:  # later labels (the export is oldest first) win
        rows[t] = (y, label_weight)
    texts = list(rows)
    return (texts, np.array([rows[t][0] for t in texts], dtype=np.float32),
            np.array([rows[t][1] for t in texts], dtype=np.float32))


# --- metrics ----------------------------------------------------------------------------


def verdicts(scores: np.ndarray, monitor: float, block: float) -> list[str]:
    """The scorer's rule (scorer/src/scoring.rs): ``>= block`` blocks, ``>= monitor`` monitors."""
    return ["block" if s >= block else "monitor" if s >= monitor else "allow" for s in scores]


def label_metrics(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Precision and recall of "flagged" (score >= threshold) against the labels; ``None``
    where undefined (nothing flagged, or no malicious label)."""
    flagged = scores >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    return {
        "threshold": threshold, "tp": tp, "fp": fp, "fn": fn,
        "tn": int(np.sum(~flagged & (y == 0))),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def regression(base: dict, cand: dict, margin: float) -> list[str]:
    """Why the candidate is worse than the serving model beyond ``margin`` (empty: it is not).
    A precision that is undefined because nothing is flagged counts as 1 (no false
    positives); recall is undefined only without malicious labels, and then not compared."""
    out = []
    for metric in ("precision", "recall"):
        b, c = base[metric], cand[metric]
        if metric == "precision":
            b, c = (1.0 if b is None else b), (1.0 if c is None else c)
        if b is not None and c is not None and c < b - margin:
            out.append(f"{metric} on the labels {round(c, 4)} is below the serving model's "
                       f"{round(b, 4)} by more than {margin}")
    return out


# --- the job ----------------------------------------------------------------------------


def _scores(net: CharCNN, texts: list[str]) -> np.ndarray:
    from .train import predict

    return predict(net, encode_batch(texts)) if texts else np.zeros(0, dtype=np.float32)


def _train(net: CharCNN, texts: list[str], y: np.ndarray, w: np.ndarray,
           cfg: FinetuneConfig) -> dict:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x = torch.from_numpy(encode_batch(texts))
    yt, wt = torch.from_numpy(y), torch.from_numpy(w)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    steps_per_epoch = max(1, math.ceil(len(texts) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    started, step, stopped_early, losses = time.monotonic(), 0, False, []
    for epoch in range(cfg.epochs):
        net.train()
        order = rng.permutation(len(texts))
        epoch_loss = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[i : i + cfg.batch_size])
            loss = (loss_fn(net(x[idx]), yt[idx]) * wt[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach()) * len(idx)
            step += 1
            if step % 10 == 0 or step == total:
                cfg.progress("train", 0.1 + 0.6 * step / total,
                             f"epoch {epoch + 1}/{cfg.epochs}, step {step}/{total}")
            if time.monotonic() - started > cfg.max_seconds:
                stopped_early = True
                break
        losses.append(epoch_loss / max(1, len(texts)))
        if stopped_early:
            break
    net.eval()
    return {"epochs_planned": cfg.epochs, "epochs_done": len(losses), "steps": step,
            "loss_per_epoch": losses, "stopped_early": stopped_early,
            "seconds": round(time.monotonic() - started, 2)}


def _fixture_check(out: Path, card: dict) -> dict:
    """The candidate encodes the shared fixture's names to the same ids (the contract the
    Rust scorer is tested against); its scores differ from the shipped model's by design."""
    mine = fixtures.build_fixture(out, card)
    if not SHARED_FIXTURE.is_file():
        return {"ok": False, "detail": f"{SHARED_FIXTURE} not found"}
    shared = json.loads(SHARED_FIXTURE.read_text())
    by_name = {c["name"]: c for c in shared["cases"]}
    bad = [c["name"] for c in mine["cases"]
           if c["name"] in by_name and (c["ids"] != by_name[c["name"]]["ids"]
                                        or c["text"] != by_name[c["name"]]["text"])]
    finite = all(math.isfinite(c["score"]) and 0.0 <= c["score"] <= 1.0 for c in mine["cases"])
    ok = not bad and finite and len(mine["cases"]) > 0
    detail = ("same text and ids as the shared fixture, scores in [0, 1]" if ok else
              f"differs from the shared fixture on {bad}" if bad else "a score outside [0, 1]")
    return {"ok": ok, "cases": len(mine["cases"]), "detail": detail}


def run(cfg: FinetuneConfig) -> dict:
    started = time.monotonic()
    cfg.progress("prepare", 0.0, "reading the serving model and the inputs")
    base_card_path = Path(cfg.base)
    try:
        base_card = json.loads(base_card_path.read_text())
    except (OSError, ValueError) as err:
        raise FinetuneError(f"serving model card {base_card_path}: {err}") from err
    base_onnx = base_card_path.parent / base_card.get("onnx_file", "model.onnx")
    if base_card.get("input", {}).get("text") != "registered_domain":
        raise FinetuneError(f"{base_card_path}: only registered-domain models can be fine-tuned")
    if export.sha256_of(base_onnx) != base_card.get("sha256"):
        raise FinetuneError(f"{base_onnx}: sha256 does not match its card")
    monitor = cfg.monitor if cfg.monitor is not None else base_card["thresholds"]["monitor"]
    block = cfg.block if cfg.block is not None else base_card["thresholds"]["block"]

    labels = read_labelled(cfg.labels)
    if not labels:
        raise FinetuneError(f"{cfg.labels}: no labels; label some domains first")
    sample = read_labelled(cfg.sample) if cfg.sample else []
    shadow = read_names(cfg.shadow) if cfg.shadow else []
    data, data_files = read_data_dir(cfg.data_dir) if cfg.data_dir else ([], [])
    texts, y, w = training_rows(labels, sample, cfg.label_weight, data)

    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    base = load_onnx_net(base_onnx).eval()
    net = load_onnx_net(base_onnx)
    history = _train(net, texts, y, w, cfg)

    cfg.progress("export", 0.72, "exporting ONNX and checking parity")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    export.export_onnx(net, onnx_path)
    checks: dict[str, dict] = {}
    try:
        diff = export.check_parity(net, onnx_path, encode_batch(texts[:2048]))
        checks["parity"] = {"ok": True, "max_abs_diff": diff}
    except export.ParityError as err:
        checks["parity"] = {"ok": False, "detail": str(err)}
    version = cfg.version or f"{base_card['version']}-ft.{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    card = export.write_card(
        out, version, dict(base_card["thresholds"]),
        f"Fine-tuned from {base_card['name']} {base_card['version']} on {len(labels)} analyst "
        f"labels, {len(sample)} sampled verdicts"
        + (f" and {len(data)} rows of the data folder {cfg.data_dir}" if cfg.data_dir else "")
        + " by dohguard_models.finetune (see report.md); "
        "thresholds are the serving model's.",
    )
    checks["card"] = {"ok": card["sha256"] == export.sha256_of(onnx_path),
                      "sha256": card["sha256"]}
    cfg.progress("check", 0.78, "checking the encoding fixture")
    checks["encoding_fixture"] = _fixture_check(out, card)
    (out / "encoding.json").write_text(json.dumps(fixtures.build_fixture(out, card), indent=1))

    cfg.progress("evaluate", 0.82, "scoring the labels with both models")
    label_texts = [t for t, _ in labels]
    y_labels = np.array([v for _, v in labels])
    cand_sess = export.session(onnx_path, threads=cfg.threads)
    base_sess = export.session(base_onnx, threads=cfg.threads)
    ls_base = export.onnx_scores(base_sess, encode_batch(label_texts))
    ls_cand = export.onnx_scores(cand_sess, encode_batch(label_texts))
    on_labels = {name: {"serving": label_metrics(ls_base, y_labels, t),
                        "candidate": label_metrics(ls_cand, y_labels, t)}
                 for name, t in (("monitor", monitor), ("block", block))}
    worse = regression(on_labels["monitor"]["serving"], on_labels["monitor"]["candidate"],
                       cfg.max_regression)
    checks["labels"] = {"ok": not worse, "margin": cfg.max_regression,
                        "detail": "; ".join(worse) or "not worse than the serving model on "
                                  "the labels (at the monitor threshold)"}

    cfg.progress("shadow", 0.88, f"scoring {len(shadow)} recent names with both models")
    shadow_report = shadow_compare(shadow, base_sess, cand_sess, monitor, block, cfg.max_changes)

    report = {
        "candidate": {"name": card["name"], "version": version, "sha256": card["sha256"],
                      "model_version": f"{card['name']}-{version}"},
        "serving": {"name": base_card["name"], "version": base_card["version"],
                    "sha256": base_card["sha256"],
                    "model_version": f"{base_card['name']}-{base_card['version']}"},
        "source": {"kind": "fine-tune", "base_card": str(base_card_path),
                   "labels": len(labels),
                   "labels_malicious": int(y_labels.sum()),
                   "sample": len(sample), "training_rows": len(texts),
                   "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
                   "data_files": data_files, "data_rows": len(data),
                   "label_weight": cfg.label_weight},
        "thresholds": {"monitor": monitor, "block": block},
        "training": history,
        "checks": checks,
        "passed": all(c["ok"] for c in checks.values()),
        "on_labels": on_labels,
        "shadow": shadow_report,
        "seconds": round(time.monotonic() - started, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(report_md(report))
    cfg.progress("done", 1.0, "candidate ready" if report["passed"] else "candidate failed its checks")
    return report


def shadow_compare(texts: list[str], base_sess, cand_sess, monitor: float, block: float,
                   max_changes: int) -> dict:
    """Both models' verdicts on ``texts``: the counts of each (serving -> candidate) pair and
    the names whose verdict changes, largest score change first."""
    ids = encode_batch(texts)
    sb = export.onnx_scores(base_sess, ids)
    sc = export.onnx_scores(cand_sess, ids)
    vb, vc = verdicts(sb, monitor, block), verdicts(sc, monitor, block)
    matrix: dict[str, int] = {}
    changes = []
    for t, a, b, x, z in zip(texts, vb, vc, sb, sc):
        matrix[f"{a}->{b}"] = matrix.get(f"{a}->{b}", 0) + 1
        if a != b:
            changes.append({"name": t, "serving": a, "candidate": b,
                            "serving_score": round(float(x), 6),
                            "candidate_score": round(float(z), 6)})
    changes.sort(key=lambda c: -abs(c["candidate_score"] - c["serving_score"]))
    return {"names": len(texts), "changed": len(changes), "pairs": matrix,
            "changes": changes[:max_changes], "changes_truncated": len(changes) > max_changes}


def report_md(r: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [f"# Candidate {r['candidate']['model_version']}", "",
             f"Fine-tuned from {r['serving']['model_version']} on {r['source']['labels']} labels "
             f"({r['source']['labels_malicious']} malicious) and {r['source']['sample']} sampled "
             f"verdicts" + (f", plus {r['source']['data_rows']} rows of the data folder "
                            f"{r['source']['data_dir']} ({', '.join(r['source']['data_files'])})"
                            if r['source'].get('data_dir') else "")
             + f"; {r['training']['epochs_done']} epoch(s), {r['training']['seconds']} s.",
             "", f"Checks: {'passed' if r['passed'] else 'FAILED'}", ""]
    lines += [f"- {k}: {'ok' if v['ok'] else 'FAILED'} {v.get('detail', '')}"
              for k, v in r["checks"].items()]
    lines += ["", "| on the labels | threshold | serving precision | serving recall | "
              "candidate precision | candidate recall |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in r["on_labels"].items():
        s, c = m["serving"], m["candidate"]
        lines.append(f"| {name} | {s['threshold']} | {pct(s['precision'])} | {pct(s['recall'])}"
                     f" | {pct(c['precision'])} | {pct(c['recall'])} |")
    sh = r["shadow"]
    lines += ["", f"Shadow comparison: {sh['names']} names, {sh['changed']} verdicts change.", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(sh["pairs"].items())]
    return "\n".join(lines) + "\n"


def progress_printer(stage: str, fraction: float, message: str = "") -> None:
    """One JSON line per progress step on stdout (the console reads them)."""
    print(json.dumps({"stage": stage, "progress": round(fraction, 3), "message": message}),
          flush=True)
    sys.stdout.flush()
