"""Training loop: encodes the prepared rows, trains :class:`CharCNN` with fixed seeds, and
keeps the weights of the epoch with the best validation score.

Batches are drawn in length buckets (shuffle, then sort within small windows) so the
model's padding trim (see :mod:`dohguard_models.model`) removes most of each batch's
padding, which makes an epoch roughly twice as fast without changing what it computes. Phishing and malware rows carry a lower
loss weight than DGA rows: they look like ordinary names, and letting them pull as hard as
DGA rows raises the scores of benign names, which costs DGA recall at very low FPR.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import metrics
from .encoding import encode_batch
from .model import CharCNN, parameter_count
from .prepare import Row


@dataclass
class TrainConfig:
    seed: int = 20261121
    epochs: int = 4
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    embed_dim: int = 32
    channels: int = 96
    widths: tuple[int, ...] = (2, 3, 4, 5)
    hidden: int = 96
    dropout: float = 0.3
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"benign": 1.0, "dga": 1.0, "phishing": 0.5, "malware": 0.5}
    )
    # Training time budget: the learning-rate schedule follows it (see learning_rate), so
    # the whole run (with ~2 minutes of preparation and evaluation) fits in 15 minutes.
    # 0 = no budget: the schedule depends on steps only, for bit-for-bit reruns.
    max_minutes: float = 11.5
    threads: int = 2


@dataclass
class TrainResult:
    net: CharCNN
    history: list[dict]
    seconds: float
    parameters: int
    config: dict


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _bucketed_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    window = batch * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch] for i in range(0, len(chunk), batch))
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict(net: CharCNN, ids: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Probabilities for an encoded matrix (same trimming as training)."""
    net.eval()
    out = np.empty(len(ids), dtype=np.float32)
    lengths = (ids != 0).sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        out[idx] = torch.sigmoid(net(torch.from_numpy(ids[idx]))).numpy()
    return out


def train(train_rows: list[Row], val_rows: list[Row], cfg: TrainConfig) -> TrainResult:
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    x_train = encode_batch([r.text for r in train_rows])
    y_train = np.array([r.label for r in train_rows], dtype=np.float32)
    w_train = np.array([cfg.kind_weights.get(r.kind, 1.0) for r in train_rows], dtype=np.float32)
    lengths = (x_train != 0).sum(axis=1)
    x_val = encode_batch([r.text for r in val_rows])
    val_kind = np.array([r.kind for r in val_rows])

    net = CharCNN(cfg.embed_dim, cfg.channels, cfg.widths, cfg.hidden, cfg.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, cfg.epochs * math.ceil(len(train_rows) / cfg.batch_size))
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    rng = np.random.default_rng(cfg.seed)
    xt, yt, wt = torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(w_train)

    history: list[dict] = []
    best_state, best_key = None, None
    started = time.monotonic()
    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    stopped_early = False
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        batches = _bucketed_batches(lengths, cfg.batch_size, rng)
        total, seen = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for idx in bar:
            idx_t = torch.from_numpy(idx)
            loss = (loss_fn(net(xt[idx_t]), yt[idx_t]) * wt[idx_t]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            step += 1
            progress = max(step / total_steps, (time.monotonic() - started) / budget)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg.lr, progress)
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if seen % (cfg.batch_size * 200) < cfg.batch_size:
                bar.set_postfix(loss=f"{total / seen:.4f}")
            if progress >= 1.0 and step < total_steps:
                stopped_early = True
                break
        val = _validation_summary(predict(net, x_val), val_kind)
        val.update(epoch=epoch + 1, train_loss=total / max(seen, 1),
                   seconds=round(time.monotonic() - started, 1))
        history.append(val)
        tqdm.write(
            f"epoch {epoch + 1}: loss {val['train_loss']:.4f}  val dga auc {val['dga_auc']:.5f}"
            f"  tpr@1e-3 {val['dga_tpr_at_1e-3']:.4f}  tpr@1e-4 {val['dga_tpr_at_1e-4']:.4f}"
        )
        key = (val["dga_tpr_at_1e-4"] + val["dga_tpr_at_1e-3"], val["dga_auc"])
        if best_key is None or key > best_key:
            best_key = key
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        if stopped_early:
            tqdm.write(f"stopped in epoch {epoch + 1}: {cfg.max_minutes}-minute budget spent")
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    cfg_dict = asdict(cfg)
    cfg_dict["stopped_early"] = stopped_early
    cfg_dict["steps_done"] = step
    cfg_dict["steps_planned"] = total_steps
    return TrainResult(net, history, time.monotonic() - started, parameter_count(net), cfg_dict)


def learning_rate(peak: float, progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to zero. ``progress`` is the larger of the step
    fraction and the time-budget fraction, so a run on a busy machine still anneals fully
    before the budget ends instead of stopping at a high learning rate."""
    if progress < warmup:
        return peak * max(progress, 1e-3) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def _validation_summary(scores: np.ndarray, kinds: np.ndarray) -> dict:
    benign = scores[kinds == "benign"]
    dga = scores[kinds == "dga"]
    out = {}
    if len(benign) and len(dga):
        y = np.r_[np.zeros(len(benign)), np.ones(len(dga))]
        out["dga_auc"] = metrics.auc(y, np.r_[benign, dga])
        for fpr in (1e-3, 1e-4):
            out[f"dga_tpr_at_{fpr:.0e}".replace("e-0", "e-")] = metrics.rate_at(
                dga, metrics.threshold_at_fpr(benign, fpr)
            )
    else:
        out.update({"dga_auc": float("nan"), "dga_tpr_at_1e-3": 0.0, "dga_tpr_at_1e-4": 0.0})
    return out
