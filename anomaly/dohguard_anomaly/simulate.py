"""The simulator for long clean stretches and the "new normal at twice the traffic" case,
calibrated on recordings (issue 9). Every simulated row has `simulated = 1`.

How: a load-matched block bootstrap of real clean stretches. The clean rows of the given
recordings (no fault in the row or the `window + 30 s` before it) are cut into blocks of
`block` rows; each next block is drawn among the blocks whose first query rate is closest to
the current one (so the load wanders smoothly, as the daily cycle does), and joined with a
linear cross-fade of `fade` rows. The values are real readings of the real stack, so the
noise, the gaps (empty cells stay empty) and the cross-feature relations are the recorded
ones; what the simulator invents is only the order. It cannot invent behaviour the recordings
never showed (a real day's slow trends, weekly patterns): a clean simulated day tests the
false-alarm rate over as many evaluations as a day has, not a real diurnal shape.

`scale_traffic(rec, 2.0)` is the new normal at twice the traffic: the per-second rate
features are multiplied, ratios and quantiles are kept. A real recording at twice the rate
(`--rate 80`) is the honest version of the same test; the data set has both.
"""

from __future__ import annotations

import numpy as np

from .features import Recording, clean_mask

RATE_FEATURES = [
    "dohguard:queries:rate",
    "dohguard:callouts:rate",
    "dohguard:upstream_requests:rate",
]


def clean_blocks(recs: list[Recording], window: int, block: int) -> list[np.ndarray]:
    blocks = []
    for rec in recs:
        ok = clean_mask(rec, window)
        i = 0
        n = len(rec)
        while i + block <= n:
            if ok[i : i + block].all():
                blocks.append(rec.x[i : i + block])
                i += block
            else:
                i += 1
    return blocks


def _fade(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-fade the tail `a` into the head `b` (same shape); NaN stays NaN on either side."""
    w = np.linspace(0.0, 1.0, len(a) + 2)[1:-1][:, None]
    out = (1 - w) * a + w * b
    return np.where(np.isnan(a), b, np.where(np.isnan(b), a, out))


def simulate_clean(
    recs: list[Recording],
    rows: int,
    seed: int,
    window: int = 32,
    block: int = 90,
    fade: int = 10,
    name: str = "simulated",
) -> Recording:
    rng = np.random.default_rng(seed)
    blocks = clean_blocks(recs, window, block)
    if len(blocks) < 4:
        raise ValueError(f"{len(blocks)} clean blocks of {block} rows: too little clean data to simulate from")
    features = recs[0].features
    qi = features.index("dohguard:queries:rate")
    heads = np.array([np.nanmean(b[:5, qi]) for b in blocks])
    out = [blocks[rng.integers(len(blocks))]]
    total = block
    while total < rows:
        cur = np.nanmean(out[-1][-5:, qi])
        near = np.argsort(np.abs(heads - cur))[:6]
        nxt = blocks[int(rng.choice(near))]
        prev = out[-1]
        joined = _fade(prev[-fade:], nxt[:fade])
        out[-1] = np.concatenate([prev[:-fade], joined])
        out.append(nxt[fade:])
        total += block - fade
    x = np.concatenate(out)[:rows]
    n = len(x)
    return Recording(
        name,
        np.arange(n, dtype=np.int64),
        x,
        np.zeros(n, np.int8),
        np.array([""] * n, dtype=object),
        np.full(n, np.nan),
        np.ones(n, np.int8),
        list(features),
    )


def scale_traffic(rec: Recording, factor: float, name: str | None = None) -> Recording:
    x = rec.x.copy()
    for f in RATE_FEATURES:
        if f in rec.features:
            x[:, rec.features.index(f)] *= factor
    return Recording(
        name or f"{rec.name} x{factor:g} traffic",
        rec.timestamp.copy(),
        x,
        rec.is_anomaly.copy(),
        rec.anomaly_class.copy(),
        rec.intensity.copy(),
        np.ones(len(rec), np.int8),
        list(rec.features),
    )


def write_csv(rec: Recording, path: str) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *rec.features, "is_anomaly", "anomaly_class", "intensity", "simulated"])
        for i in range(len(rec)):
            cells = ["" if np.isnan(v) else repr(float(v)) for v in rec.x[i]]
            inten = "" if np.isnan(rec.intensity[i]) else repr(float(rec.intensity[i]))
            w.writerow([int(rec.timestamp[i]), *cells, int(rec.is_anomaly[i]), rec.anomaly_class[i], inten, int(rec.simulated[i])])
