"""The detectors, side by side. Every exportable one is a torch module from RAW filled windows
[batch, features, window] to (score [batch], contributions [batch, features]) with the
per-feature standardisation inside the graph, so the Rust detector feeds raw values
(contract 7). Contributions add up to the score, so "which features made the score" is a
plain reading of the output.

- `autoencoder`: the proposal's convolutional autoencoder over the features x time image,
  mean-squared reconstruction error per feature.
- `pca`: PCA reconstruction of every row of the window (the TSB-AD benchmark's strong simple
  baseline).
- `zscore`: robust z-score of the window's last rows against the training median/MAD.
- `kmeans`: Netdata's per-metric k-means (k = 2 on the last 6 differenced values of each
  metric; a metric is anomalous above the 99th percentile of its training distances; the score
  is the share of anomalous metrics, Netdata's "anomaly rate").
- `kmeans_levels`: `kmeans` with one more coordinate for the features whose rise means
  trouble (`RISING_IS_BAD`): how far the mean of their last rows stands above the clean
  training level, in standardised units, zero below it. Differences alone see a change only
  while it happens: a storm that holds steady stops being anomalous once the rate windows
  have caught up with it.
- `static`: threshold rules as an operator writes them in Prometheus (contract 5's static
  alerts, plus three common ones), score = number of rules firing.
- `rolling_zscore` (Python only): robust z-score against a rolling 5-minute baseline of the
  same recording, the stand-in for "same hour of day" (the recordings are shorter than a day).
- `random`: a random score, the floor every metric is read against.

For the reconstruction models the per-feature errors are divided by their mean on clean
training windows ("scores standardised per feature"), so a feature that is always noisy does
not drown one that never moves.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .features import FEATURES

CLIP = 10.0  # standardised values are clipped: one absurd reading (a 9 s latency spike on a loaded host) cannot dominate
LOAD_GMAX = 10.0  # the load factor's cap: below 1/100 of the training traffic, noise is not scaled further
KMEANS_MIN_THRESHOLD = 0.5  # z units: a feature that never moved in training is not anomalous for a wobble under half its smallest meaningful change
ERR_FLOOR = 1.0  # per-feature clean reconstruction error floor (z^2 units): a feature that never moved is not divided by ~0


class Standardise(nn.Module):
    """z = (t(x) - centre) / (scale * g), clipped; t = log1p for the traffic volumes
    (`log_mask`).

    g is the load factor (1 without `load_ref`): the features measured over the queries of
    the rate window (shares, quantiles, the log volumes; `noise_mask`) wobble by sampling
    noise that grows as 1/sqrt(queries): at a tenth of the training traffic a share jumps
    about three times as far from one scrape to the next with nothing wrong. Their scale is
    multiplied by g = sqrt(load_ref / queries rate of the row), clamped to [1, LOAD_GMAX], so a
    lightly used gateway's noise reads as noise, not as an anomaly; at or above the training
    load g = 1 and nothing changes."""

    def __init__(self, centre: np.ndarray, scale: np.ndarray, log_mask: np.ndarray,
                 noise_mask: np.ndarray | None = None, load_index: int = 0, load_ref: float | None = None):
        super().__init__()
        self.register_buffer("centre", torch.tensor(centre, dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("log", torch.tensor(np.asarray(log_mask, dtype=bool)).view(1, -1, 1))
        self.load_ref = float(load_ref) if load_ref else 0.0
        self.load_index = int(load_index)
        noise = np.zeros(len(centre), bool) if noise_mask is None else np.asarray(noise_mask, dtype=bool)
        self.register_buffer("noise", torch.tensor(noise.astype(np.float32)).view(1, -1, 1))

    def load_factor(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 1]: g of the window, from its mean query rate (one g for the whole window:
        a g changing from row to row would turn a feature that holds still into one that
        moves)."""
        q = torch.clamp(x[:, self.load_index : self.load_index + 1, :].mean(dim=2, keepdim=True), min=1e-3)
        return torch.clamp(torch.sqrt(self.load_ref / q), 1.0, LOAD_GMAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.where(self.log, torch.log1p(torch.clamp(x, min=0.0)), x)
        scale = self.scale
        if self.load_ref > 0:
            scale = scale * (1.0 + self.noise * (self.load_factor(x) - 1.0))
        return torch.clamp((t - self.centre) / scale, -CLIP, CLIP)


class ConvAE(nn.Module):
    """features x window -> bottleneck -> features x window (1-D convolutions over time,
    features as channels)."""

    def __init__(self, n_features: int, window: int, hidden: int = 32, latent: int = 8):
        super().__init__()
        assert window % 4 == 0, "window must be a multiple of 4"
        self.encoder = nn.Sequential(
            nn.Conv1d(n_features, hidden, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, latent, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(latent, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, n_features, 5, padding=2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(z))


class ReconstructionScorer(nn.Module):
    """Raw window -> standardise -> reconstruct -> per-feature mean squared error / its clean
    reference -> contributions (sum = score)."""

    def __init__(self, std: Standardise, recon: nn.Module, ref: np.ndarray):
        super().__init__()
        self.std = std
        self.recon = recon
        self.register_buffer("inv_ref", torch.tensor(1.0 / ref / len(ref), dtype=torch.float32).view(1, -1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.std(x)
        err = ((self.recon(z) - z) ** 2).mean(dim=2)
        contributions = err * self.inv_ref
        return contributions.sum(dim=1), contributions


class PCARecon(nn.Module):
    """Row-wise PCA reconstruction of a standardised window [batch, features, window]."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1))
        p = torch.tensor(components, dtype=torch.float32)  # [k, F]
        self.register_buffer("proj", p.T @ p)  # [F, F]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = z - self.mean
        return torch.einsum("fg,bgt->bft", self.proj, c) + self.mean


class ZScoreScorer(nn.Module):
    """Mean squared robust z of the last `tail` rows, per feature / its clean reference."""

    def __init__(self, std: Standardise, ref: np.ndarray, tail: int):
        super().__init__()
        self.std = std
        self.tail = tail
        self.register_buffer("inv_ref", torch.tensor(1.0 / ref / len(ref), dtype=torch.float32).view(1, -1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.std(x)[:, :, -self.tail :]
        contributions = (z**2).mean(dim=2) * self.inv_ref
        return contributions.sum(dim=1), contributions


class KMeansScorer(nn.Module):
    """Netdata-style: per feature, the last `lags` differences of the standardised series,
    distance to the nearest of k centroids, anomalous above that feature's threshold; the score
    is the share of anomalous features (Netdata's anomaly rate).

    Contributions split the score among the anomalous features in proportion to how far each
    is past its own threshold (distance / threshold - 1): they sum to the score, and the
    feature that moved most unusually (in units of its own clean 99th percentile) comes
    first. (An equal 1/F share per anomalous feature would tie and name the first feature of
    the list.)"""

    def __init__(self, std: Standardise, centroids: np.ndarray, thresholds: np.ndarray, lags: int,
                 level_mask: np.ndarray | None = None):
        super().__init__()
        self.std = std
        self.lags = lags
        # [F, k, lags] (differences only) or [F, k, lags + 1] (with the level coordinate).
        self.register_buffer("centroids", torch.tensor(centroids, dtype=torch.float32))
        self.register_buffer("thresholds", torch.tensor(thresholds, dtype=torch.float32).view(1, -1))
        self.levels = level_mask is not None
        if self.levels:
            mask = np.asarray(level_mask, dtype=np.float32).reshape(1, -1, 1)
            self.register_buffer("level_mask", torch.tensor(mask))

    def vectors(self, x: torch.Tensor) -> torch.Tensor:
        """[B, F, lags (+ 1)]: each feature's last `lags` differences (and its level)."""
        z = self.std(x)[:, :, -(self.lags + 1) :]
        v = z[:, :, 1:] - z[:, :, :-1]
        if self.levels:
            level = torch.relu(z[:, :, 1:].mean(dim=2, keepdim=True)) * self.level_mask
            v = torch.cat([v, level], dim=2)
        return v

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vectors(x)
        d = ((v.unsqueeze(2) - self.centroids.unsqueeze(0)) ** 2).sum(dim=3)  # [B, F, k]
        return torch.sqrt(d.min(dim=2).values)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.distances(x)
        excess = torch.relu(d / self.thresholds - 1.0)  # [B, F], > 0 exactly where anomalous
        score = (excess > 0).to(torch.float32).sum(dim=1) / d.shape[1]
        share = excess / torch.clamp(excess.sum(dim=1, keepdim=True), min=1e-12)
        return score, share * score.unsqueeze(1)


# Static rules: (feature, threshold, meaning). The first two are contract 5's alerting rules
# that read a feature (DohguardScorerDown reads `up`, which is not a feature: a scorer outage
# shows here as callout failures); the other three are what an operator commonly adds.
STATIC_RULES = [
    ("dohguard:callout_failures:rate", 0.5, "DohguardCalloutFailures: > 0.5 failed callouts/s"),
    ("dohguard:events_dropped:rate", 0.0, "DohguardEventsDropped: any dropped event"),
    ("dohguard:upstream_5xx:rate", 0.5, "upstream 5xx > 0.5/s"),
    ("dohguard:servfail:ratio", 0.05, "SERVFAIL share > 5%"),
    ("dohguard:downstream_latency_ms:p99", 1000.0, "p99 latency > 1 s"),
]


class StaticScorer(nn.Module):
    """Number of static rules firing on the window's last row (`for:` is the hysteresis)."""

    def __init__(self, features: list[str]):
        super().__init__()
        idx = [features.index(f) for f, _, _ in STATIC_RULES if f in features]
        thr = [t for f, t, _ in STATIC_RULES if f in features]
        self.register_buffer("idx", torch.tensor(idx, dtype=torch.long))
        self.register_buffer("thr", torch.tensor(thr, dtype=torch.float32).view(1, -1))
        self.n_features = len(features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = x[:, :, -1]
        fire = (last[:, self.idx] > self.thr).to(torch.float32)  # [B, rules]
        contributions = torch.zeros(x.shape[0], self.n_features, dtype=torch.float32)
        contributions = contributions.index_add(1, self.idx, fire)
        return fire.sum(dim=1), contributions


# ---------------------------------------------------------------- fitting


def _torch_threads(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def score_module(module: nn.Module, w: np.ndarray, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Runs a scorer module on raw windows [n, F, W] (float32); returns (score, contributions)."""
    module.eval()
    scores, contribs = [], []
    with torch.no_grad():
        for i in range(0, len(w), batch):
            s, c = module(torch.from_numpy(np.ascontiguousarray(w[i : i + batch], dtype=np.float32)))
            scores.append(s.numpy())
            contribs.append(c.numpy())
    if not scores:
        return np.zeros(0, np.float32), np.zeros((0, w.shape[1]), np.float32)
    return np.concatenate(scores), np.concatenate(contribs)


def _error_ref(std: Standardise, recon: nn.Module, w: np.ndarray) -> np.ndarray:
    recon.eval()
    with torch.no_grad():
        errs = []
        for i in range(0, len(w), 4096):
            z = std(torch.from_numpy(w[i : i + 4096]))
            errs.append(((recon(z) - z) ** 2).mean(dim=2).numpy())
    return np.maximum(np.concatenate(errs).mean(axis=0), ERR_FLOOR)


def fit_autoencoder(
    std: Standardise,
    train: np.ndarray,
    epochs: int = 30,
    hidden: int = 32,
    latent: int = 8,
    seed: int = 0,
    threads: int = 2,
    progress=None,
    max_seconds: float = 420.0,
) -> ReconstructionScorer:
    import time

    _torch_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n, f, wl = train.shape
    ae = ConvAE(f, wl, hidden, latent)
    opt = torch.optim.Adam(ae.parameters(), lr=2e-3, weight_decay=1e-5)
    with torch.no_grad():
        z_all = std(torch.from_numpy(train))
    started = time.time()
    for epoch in range(epochs):
        ae.train()
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, 128):
            zb = z_all[order[i : i + 128]]
            # Light noise on the input: the clean data set is small; denoising keeps the
            # autoencoder from learning the identity on the features that never move.
            loss = ((ae(zb + 0.05 * torch.randn_like(zb)) - zb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(zb)
        if progress:
            progress(epoch + 1, total / n)
        if time.time() - started > max_seconds:
            break
    ref = _error_ref(std, ae, train)
    return ReconstructionScorer(std, ae, ref)


def fit_pca(std: Standardise, train: np.ndarray, variance: float = 0.95) -> ReconstructionScorer:
    with torch.no_grad():
        z = std(torch.from_numpy(train)).numpy()
    rows = z.transpose(0, 2, 1).reshape(-1, z.shape[1])
    mean = rows.mean(axis=0)
    _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
    explained = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-12)
    k = int(np.searchsorted(explained, variance) + 1)
    k = max(1, min(k, len(s) - 1))
    recon = PCARecon(mean, vt[:k])
    ref = _error_ref(std, recon, train)
    return ReconstructionScorer(std, recon, ref)


def fit_zscore(std: Standardise, train: np.ndarray, tail: int = 5) -> ZScoreScorer:
    with torch.no_grad():
        z = std(torch.from_numpy(train))[:, :, -tail:]
    ref = np.maximum((z**2).mean(dim=2).mean(dim=0).numpy(), ERR_FLOOR)
    return ZScoreScorer(std, ref, tail)


def fit_kmeans(std: Standardise, train: np.ndarray, k: int = 2, lags: int = 5, seed: int = 0, q: float = 99.0,
               level_mask: np.ndarray | None = None) -> KMeansScorer:
    """`level_mask` (bool per feature) adds the level coordinate (`kmeans_levels`)."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # constant features: fewer distinct points than k

    f = train.shape[1]
    dims = lags + (1 if level_mask is not None else 0)
    shape = KMeansScorer(std, np.zeros((f, k, dims), np.float32), np.zeros(f), lags, level_mask)
    with torch.no_grad():
        v = shape.vectors(torch.from_numpy(train)).numpy()  # [n, F, dims]
    cents = np.zeros((f, k, dims), np.float32)
    for i in range(f):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(v[:, i, :])
        cents[i] = km.cluster_centers_
    probe = KMeansScorer(std, cents, np.zeros(f), lags, level_mask)
    with torch.no_grad():
        d = probe.distances(torch.from_numpy(train)).numpy()
    thr = np.maximum(np.percentile(d, q, axis=0), KMEANS_MIN_THRESHOLD)
    return KMeansScorer(std, cents, thr, lags, level_mask)


def rolling_zscore(x_filled: np.ndarray, ends: np.ndarray, features: list[str], baseline: int = 300, tail: int = 5, gap: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Python-only baseline: per feature, robust z of the mean of the last `tail` rows against
    the median/MAD of the `baseline` rows ending `gap` rows earlier (a rolling baseline in
    place of the same hour of day, which a recording shorter than a day does not have)."""
    from .features import scale_floor, transform

    x_filled = transform(x_filled, features)
    floors = np.array([scale_floor(f) for f in features])
    n, f = x_filled.shape
    scores = np.zeros(len(ends))
    contribs = np.zeros((len(ends), f))
    for j, e in enumerate(ends):
        lo = max(0, e - gap - baseline)
        hi = max(lo + 1, e - gap)
        base = x_filled[lo:hi]
        med = np.median(base, axis=0)
        mad = np.maximum(1.4826 * np.median(np.abs(base - med), axis=0), floors)
        z = (x_filled[e - tail + 1 : e + 1].mean(axis=0) - med) / mad
        c = np.minimum(z**2, CLIP**2) / f
        contribs[j] = c
        scores[j] = c.sum()
    return scores, contribs


def random_scores(n: int, n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, np.tile(s[:, None] / n_features, (1, n_features))


def export_onnx(module: nn.Module, n_features: int, window: int, path: str) -> None:
    """ONNX with the contract-7 names: input `window` [batch, features, window] float32,
    outputs `score` [batch] and `contributions` [batch, features]."""
    module.eval()
    dummy = torch.zeros(2, n_features, window, dtype=torch.float32)
    torch.onnx.export(
        module,
        (dummy,),
        path,
        input_names=["window"],
        output_names=["score", "contributions"],
        dynamic_axes={"window": {0: "batch"}, "score": {0: "batch"}, "contributions": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


EXPORTABLE = ["autoencoder", "pca", "zscore", "kmeans", "kmeans_levels", "static"]
ALL_KINDS = EXPORTABLE + ["rolling_zscore", "random"]

__all__ = ["FEATURES", "EXPORTABLE", "ALL_KINDS", "math"]
