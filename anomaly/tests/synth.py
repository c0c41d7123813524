"""A small synthetic recording for the fast tests (the real data set is in anomaly/data; the
full evaluation runs on it, not here): a daily-cycled query rate with the other features
following it, noise, histogram gaps, and optional injected faults."""

import numpy as np

from dohguard_anomaly.features import FEATURES, Recording


def recording(rows: int, seed: int, faults=(), name: str = "synthetic") -> Recording:
    rng = np.random.default_rng(seed)
    f = {name: i for i, name in enumerate(FEATURES)}
    t = np.arange(rows)
    rate = 20 + 15 * np.sin(2 * np.pi * t / 600)
    x = np.zeros((rows, len(FEATURES)))
    x[:, f["dohguard:queries:rate"]] = rate + rng.normal(0, 1, rows)
    x[:, f["dohguard:callouts:rate"]] = 0.3 * rate + rng.normal(0, 0.5, rows)
    x[:, f["dohguard:upstream_requests:rate"]] = 0.6 * rate + rng.normal(0, 1, rows)
    x[:, f["dohguard:cache_hit:ratio"]] = 0.7 + rng.normal(0, 0.02, rows)
    x[:, f["dohguard:blocked:ratio"]] = 0.05 + rng.normal(0, 0.01, rows)
    x[:, f["dohguard:downstream_latency_ms:p99"]] = 8 + rng.gamma(2, 1, rows)
    x[:, f["dohguard:downstream_connections:active"]] = 6
    x[:, f["dohguard:nxdomain:ratio"]] = 0.1 + rng.normal(0, 0.02, rows)
    x[:, f["dohguard:qtype_a:ratio"]] = 0.6 + rng.normal(0, 0.03, rows)
    x[:, f["dohguard:qtype_aaaa:ratio"]] = 0.2 + rng.normal(0, 0.02, rows)
    x[:, f["dohguard:qtype_https:ratio"]] = 0.2 + rng.normal(0, 0.02, rows)
    x[:, f["dohguard:qname_length:p95"]] = 22 + rng.normal(0, 1, rows)
    x[:, f["dohguard:label_length_max:p95"]] = 9 + rng.normal(0, 0.5, rows)
    x[:, f["dohguard:callout_latency_ms:p99"]] = 3 + rng.gamma(2, 0.5, rows)
    x[:, f["dohguard:scorer_inference_seconds:p99"]] = 0.002 + rng.gamma(2, 0.0005, rows)
    x[:, f["dohguard:es_bulk_seconds:p99"]] = 0.01 + rng.gamma(2, 0.002, rows)
    x[rng.random(rows) < 0.1, f["dohguard:callout_latency_ms:p99"]] = np.nan  # no sample in the window
    label = np.zeros(rows, np.int8)
    cls = np.array([""] * rows, dtype=object)
    inten = np.full(rows, np.nan)
    for start, end, kind in faults:
        if kind == "flood":
            x[start:end, f["dohguard:queries:rate"]] *= 4
            x[start:end, f["dohguard:upstream_requests:rate"]] *= 3
        elif kind == "tunnel":
            x[start:end, f["dohguard:qtype_txt:ratio"]] = 0.05
            x[start:end, f["dohguard:qname_length:p95"]] = 110
        label[start:end] = 1
        cls[start:end] = kind
        inten[start:end] = 3
    return Recording(name, t.astype(np.int64) + 1_700_000_000, x, label, cls, inten, np.zeros(rows, np.int8))
