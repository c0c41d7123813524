"""Honest evaluation metrics (issue 9).

- VUS-PR and range-based F1: TSB-AD's own implementation (PyPI `tsb-ad`, the NeurIPS 2024
  benchmark's package; only its `evaluation` module is used).
- Event recall: a labelled fault counts as detected when the alert state is on at some
  evaluation from its start to `grace_s` after its end (the recording rules' 15 s rate window
  and the 5 s histogram flush delay what a fault looks like).
- Time to detect: first alerting evaluation minus the fault's start.
- False alarms: alert intervals that touch no fault (fault start to end + `window + grace`).
- Point-adjusted F1 is reported only next to the random score's (Kim et al., AAAI 2022).
"""

from __future__ import annotations

import numpy as np

# The features that name the right cause of each fault class (for "the top contributing
# feature names the right cause").
CAUSES = {
    "cache_flush": ["dohguard:cache_hit:ratio", "dohguard:callouts:rate", "dohguard:callout_latency_ms:p99",
                    "dohguard:scorer_queue_depth", "dohguard:scorer_inference_seconds:p99", "dohguard:es_bulk_seconds:p99"],
    "flood": ["dohguard:queries:rate", "dohguard:upstream_requests:rate", "dohguard:callouts:rate", "dohguard:cache_hit:ratio"],
    "random_subdomain": [
        "dohguard:nxdomain:ratio", "dohguard:qname_length:p95", "dohguard:label_length_max:p95",
        "dohguard:cache_hit:ratio", "dohguard:callouts:rate", "dohguard:queries:rate", "dohguard:upstream_requests:rate",
    ],
    "nxdomain_storm": ["dohguard:nxdomain:ratio", "dohguard:queries:rate", "dohguard:upstream_requests:rate", "dohguard:cache_hit:ratio"],
    "dga_burst": [
        "dohguard:nxdomain:ratio", "dohguard:cache_hit:ratio", "dohguard:callouts:rate", "dohguard:blocked:ratio",
        "dohguard:label_length_max:p95", "dohguard:qname_length:p95",
    ],
    "tunnel": ["dohguard:qtype_txt:ratio", "dohguard:qname_length:p95", "dohguard:label_length_max:p95"],
    "scorer_outage": [
        "dohguard:callout_failures:rate", "dohguard:callout_latency_ms:p99", "dohguard:events_dropped:rate",
        "dohguard:scorer_queue_depth", "dohguard:scorer_inference_seconds:p99", "dohguard:es_bulk_seconds:p99",
        "dohguard:downstream_latency_ms:p99",
    ],
    "upstream_outage": [
        "dohguard:upstream_5xx:rate", "dohguard:servfail:ratio", "dohguard:downstream_latency_ms:p99",
        "dohguard:downstream_connections:active", "dohguard:upstream_requests:rate",
    ],
    "upstream_latency": [
        "dohguard:downstream_latency_ms:p99", "dohguard:upstream_5xx:rate", "dohguard:servfail:ratio",
        "dohguard:downstream_connections:active", "dohguard:upstream_requests:rate",
    ],
}


def vus_pr(labels: np.ndarray, score: np.ndarray, sliding_window: int) -> float:
    from TSB_AD.evaluation.basic_metrics import generate_curve

    labels = np.asarray(labels, dtype=int)
    if labels.sum() == 0 or labels.sum() == len(labels):
        return float("nan")
    return float(generate_curve(labels, np.asarray(score, dtype=float), sliding_window, "opt", 250)[-1])


def range_f1(labels: np.ndarray, alerts: np.ndarray) -> float:
    from TSB_AD.evaluation.basic_metrics import basic_metricor

    return float(basic_metricor().metric_RF1(np.asarray(labels, int), None, preds=np.asarray(alerts, int)))


def point_adjusted_f1(labels: np.ndarray, alerts: np.ndarray) -> float:
    from TSB_AD.evaluation.basic_metrics import basic_metricor

    a = np.asarray(alerts, int)
    return float(basic_metricor().metric_PointF1PA(np.asarray(labels, int), a.astype(float), preds=a))


def event_outcomes(
    events: list[tuple[int, int, str, float]],
    times: np.ndarray,
    alerts: np.ndarray,
    contributions: np.ndarray,
    features: list[str],
    grace_s: int,
) -> list[dict]:
    """Per labelled fault (rows in the recording's time base): detected, time to detect, top
    features at the first alerting evaluation, and whether the top one names a right cause.
    `times` are the row indices the evaluations end at."""
    out = []
    for start, end, kind, intensity in events:
        sel = np.where((times >= start) & (times < end + grace_s) & alerts)[0]
        rec = {"class": kind, "intensity": intensity, "start": int(start), "end": int(end), "detected": bool(len(sel))}
        if len(sel):
            first = sel[0]
            rec["time_to_detect_s"] = int(times[first] - start)
            # The explanation an operator reads: contributions summed over the first 5 alerting
            # evaluations.
            c = contributions[sel[:5]].sum(axis=0)
            order = np.argsort(-c)[:3]
            rec["top_features"] = [features[i] for i in order]
            rec["cause_named"] = features[order[0]] in CAUSES.get(kind, [])
        out.append(rec)
    return out


def false_alarms(events: list[tuple[int, int, str, float]], times: np.ndarray, alerts: np.ndarray, after_s: int) -> int:
    """Alert intervals that overlap no fault (stretched to `after_s` past its end)."""
    from .alerting import alert_intervals

    covered = np.zeros(len(times), dtype=bool)
    for start, end, _, _ in events:
        covered |= (times >= start) & (times < end + after_s)
    return sum(1 for a, b in alert_intervals(alerts) if not covered[a:b].any())
