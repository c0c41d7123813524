"""Export of the features from Prometheus to the data set's CSV.

One row per `step` (1 s): `timestamp` (Unix seconds), one column per feature (contract 5 in
docs/contracts.md; empty when Prometheus had no value, never 0), then the labels:
`is_anomaly` (0/1), `anomaly_class` (a key of `traffic.FAULTS`, or empty), `intensity`, and
`simulated` (0: recorded from the real stack).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time

import requests

from .features import FEATURES  # one definition of the feature list


class PrometheusError(RuntimeError):
    pass


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> dict[int, float]:
    """`{unix_second: value}` for a one-series expression; an error answer raises."""
    reply = requests.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    body = reply.json()
    if reply.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"{expr}: HTTP {reply.status_code}: {body.get('error', body)}")
    series = body["data"]["result"]
    if len(series) > 1:
        raise PrometheusError(f"{expr}: {len(series)} series, expected one")
    values: dict[int, float] = {}
    for ts, value in series[0]["values"] if series else []:
        v = float(value)
        if not math.isnan(v):
            values[int(round(float(ts)))] = v
    return values


def wait_until_recorded(prometheus: str, end_unix: float, timeout_s: float = 60.0) -> None:
    """Polls until the first feature has a sample at or after `end_unix`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        reply = requests.get(
            f"{prometheus}/api/v1/query", params={"query": f"timestamp({FEATURES[0]})"}, timeout=10
        ).json()
        result = reply.get("data", {}).get("result", [])
        if result and float(result[0]["value"][1]) >= end_unix:
            return
        time.sleep(0.5)
    raise PrometheusError(f"{FEATURES[0]} not evaluated up to {end_unix} within {timeout_s} s")


def export(prometheus: str, labels: dict, out_csv: str, step: float = 1.0) -> dict:
    start = math.ceil(labels["start_unix"])
    end = math.floor(labels["end_unix"])
    columns = {f: query_range(prometheus, f, start, end, step) for f in FEATURES}
    missing = [f for f, v in columns.items() if not v]
    faults = labels["faults"]
    rows = 0
    anomalous = 0
    with open(out_csv, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["timestamp", *FEATURES, "is_anomaly", "anomaly_class", "intensity", "simulated"])
        for ts in range(start, end + 1, int(step)):
            rel = ts - labels["start_unix"]
            active = [f for f in faults if f["start_s"] <= rel < f["start_s"] + f["duration_s"]]
            fault = active[0] if active else None
            row = [ts] + [repr(columns[f][ts]) if ts in columns[f] else "" for f in FEATURES]
            row += [1 if fault else 0, fault["kind"] if fault else "", fault["intensity"] if fault else "", 0]
            w.writerow(row)
            rows += 1
            anomalous += 1 if fault else 0
    with open(out_csv, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"rows": rows, "anomalous_rows": anomalous, "features_never_seen": missing, "sha256": digest}


def write_manifest(path: str, manifest: dict) -> None:
    with open(path, "w") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
