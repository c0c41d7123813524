"""`AnomalyModel`: the one class an operator needs to retrain and adjust the detector, without
knowing machine learning.

    from dohguard_anomaly import AnomalyModel
    m = AnomalyModel()                                   # the shipped kind and settings
    m.exclude_incident("2026-12-01T10:00Z", "2026-12-01T11:30Z")   # a known outage
    m.fit_prometheus("http://127.0.0.1:9090", "2026-11-24T00:00Z", "2026-12-01T00:00Z")
    m.set_false_alarm_budget(per_week=1)                 # recalibrates the threshold
    print(m.evaluate_csv("labelled.csv"))                # recall, time to detect, false alarms
    print(m.explain(window))                             # which features made the score
    m.save("anomaly/model")                              # model.onnx + model.card.json

Every method checks its input and raises `DataError` with a message that says what is wrong
(an empty range, a missing metric, a NaN-only column, too little clean data).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from . import alerting, detectors, scoring
from .features import (
    FEATURES,
    DataError,
    Recording,
    clean_mask,
    fill_rows,
    fill_window,
    LOAD_FEATURE,
    log_mask,
    RISING_IS_BAD,
    load_csv,
    noise_mask,
    medians,
    robust_scale,
    windows,
)

KINDS = detectors.EXPORTABLE
CALIBRATION_SETTLE_S = 60
WARMUP_MARGIN_S = 60  # the card's warm-up: one window plus this (15 s rate windows, 5 s histogram flushes, traffic starting)


class _PythonOnly(torch.nn.Module):
    """The baselines that are not windows-in, score-out graphs: the rolling-baseline z-score
    (it needs five minutes of history) and the random score. Evaluation only; not exported."""

    def __init__(self, kind: str, seed: int):
        super().__init__()
        self.kind = kind
        self.seed = seed

    def score_rows(self, x: np.ndarray, ends: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "rolling_zscore":
            return detectors.rolling_zscore(x, ends, features)
        self.seed += 1
        return detectors.random_scores(len(ends), len(features), self.seed)


def _unix(t) -> float:
    """Unix seconds from a number, a datetime or an ISO 8601 string ('Z' allowed)."""
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, _dt.datetime):
        return t.timestamp()
    if isinstance(t, str):
        try:
            d = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"not a time: {t!r} (use Unix seconds or ISO 8601, e.g. 2026-12-01T10:00Z)") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=_dt.timezone.utc)
        return d.timestamp()
    raise DataError(f"not a time: {t!r}")


class AnomalyModel:
    """Learns what the gateway's metrics look like when nothing is wrong, and scores how far a
    window of metrics is from that.

    kind: which detector ("autoencoder", "pca", "zscore", "kmeans", "kmeans_levels", "static"; see detectors.py).
    window: rows per window; step_s: seconds between rows.
    false_alarms_per_week: the budget the alert threshold is calibrated to.
    """

    def __init__(
        self,
        kind: str = "pca",
        window: int = 32,
        step_s: int = 1,
        false_alarms_per_week: float = 1.0,
        evaluate_every_s: int = 2,
        ewma_alpha: float = 0.3,
        k: int = 3,
        n: int = 5,
        epochs: int = 30,
        seed: int = 0,
        threads: int = 2,
        features: list[str] | None = None,
        load_scaling: bool = True,
        calibration_days: float = 7.0,
    ):
        if kind not in detectors.ALL_KINDS:
            raise DataError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
        if window < 8 or window % 4:
            raise DataError(f"window must be a multiple of 4 and at least 8, got {window}")
        if not 0 < ewma_alpha <= 1:
            raise DataError(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        if not 1 <= k <= n:
            raise DataError(f"hysteresis needs 1 <= k <= n, got k={k}, n={n}")
        self.kind = kind
        self.window = window
        self.step_s = step_s
        self.evaluate_every_s = evaluate_every_s
        self.ewma_alpha = ewma_alpha
        self.k = k
        self.n = n
        self.epochs = epochs
        self.seed = seed
        self.threads = threads
        self.features = list(features or FEATURES)
        self.load_scaling = bool(load_scaling)
        self.calibration_days = float(calibration_days)
        self.incidents: list[tuple[float, float]] = []
        self.false_alarms_per_week = float(false_alarms_per_week)
        self.module: torch.nn.Module | None = None
        self.medians: np.ndarray | None = None
        self.threshold: float | None = None
        self.calibration: dict = {}
        self._clean_smoothed: np.ndarray | None = None
        self._sim_smoothed: np.ndarray | None = None
        self.trained_on: dict = {}
        self.load_ref: float | None = None

    # ------------------------------------------------------------ input

    def exclude_incident(self, start, end) -> None:
        """Leave a known incident (start, end: Unix seconds or ISO 8601) out of training."""
        a, b = _unix(start), _unix(end)
        if b <= a:
            raise DataError(f"incident ends before it starts: {start} .. {end}")
        self.incidents.append((a, b))

    def _mark_incidents(self, rec: Recording) -> Recording:
        for a, b in self.incidents:
            hit = (rec.timestamp >= a) & (rec.timestamp < b)
            rec.is_anomaly = np.where(hit, 1, rec.is_anomaly).astype(np.int8)
            rec.anomaly_class = np.where(hit & (rec.anomaly_class == ""), "incident", rec.anomaly_class)
        return rec

    def read_prometheus(self, url: str, start, end) -> Recording:
        """The features over [start, end] from a Prometheus server's HTTP API (query_range)."""
        from .export import PrometheusError, query_range

        a, b = _unix(start), _unix(end)
        if b - a < self.window * self.step_s:
            raise DataError(f"time range {start} .. {end} is shorter than one window ({self.window * self.step_s} s)")
        # Prometheus answers at most 11000 points per series: ask in chunks.
        chunk = 10000 * self.step_s
        cols: dict[str, dict[int, float]] = {f: {} for f in self.features}
        t = a
        while t <= b:
            e = min(b, t + chunk - self.step_s)
            for f in self.features:
                try:
                    cols[f].update(query_range(url, f, t, e, self.step_s))
                except PrometheusError as err:
                    raise DataError(f"Prometheus at {url}: {err}") from None
                except Exception as err:  # connection refused, timeouts
                    raise DataError(f"Prometheus at {url} did not answer: {err}") from None
            t = e + self.step_s
        stamps = sorted(set().union(*[set(c) for c in cols.values()]))
        if not stamps:
            raise DataError(f"Prometheus at {url} has no value of any feature in {start} .. {end}: empty range")
        missing = [f for f in self.features if not cols[f]]
        if missing:
            raise DataError(
                f"Prometheus at {url}: no value in {start} .. {end} for: {', '.join(missing)} "
                "(is the recording rule loaded? see docs/contracts.md contract 5)"
            )
        ts = np.arange(stamps[0], stamps[-1] + 1, self.step_s, dtype=np.int64)
        x = np.array([[cols[f].get(int(t_), np.nan) for f in self.features] for t_ in ts])
        n = len(ts)
        return Recording(
            f"prometheus {start}..{end}", ts, x, np.zeros(n, np.int8), np.array([""] * n, dtype=object),
            np.full(n, np.nan), np.zeros(n, np.int8), list(self.features),
        )

    def read_csv(self, path, require_labels: bool = False) -> Recording:
        return load_csv(path, self.features, require_labels=require_labels)

    # ------------------------------------------------------------ training

    def _clean_windows(self, recs: list[Recording]) -> np.ndarray:
        out = []
        for rec in recs:
            rec = self._mark_incidents(rec)
            if len(rec) < self.window:
                continue
            x = fill_rows(rec.x, self.medians)
            w, ends = windows(x, self.window)
            ok = clean_mask(rec, self.window)[ends]
            out.append(w[ok])
        if not out or sum(len(o) for o in out) == 0:
            raise DataError("no clean window to learn from: every window touches a labelled fault or an excluded incident")
        return np.concatenate(out)

    def fit(self, train: list[Recording], calibrate: list[Recording] | None = None, progress=None) -> AnomalyModel:
        """Learns from the clean rows of `train`; calibrates the threshold on the clean rows
        of `calibrate` (default: the last quarter of each training recording, not trained
        on)."""
        if not train:
            raise DataError("no training data")

        if calibrate is None:
            cut = [(r, int(len(r) * 0.75)) for r in train]
            calibrate = [r.slice(c, len(r), f"{r.name} (last quarter)") for r, c in cut]
            train = [r.slice(0, c, f"{r.name} (first 3/4)") for r, c in cut]
        rows = np.concatenate([self._mark_incidents(r).x[clean_mask(r, self.window)] for r in train])
        if len(rows) < 4 * self.window:
            raise DataError(f"{len(rows)} clean rows: too little to learn from (need >= {4 * self.window})")
        # A quantile over a window without samples is NaN: with every name cached, the callout
        # latency has no value in clean traffic at all. Such a feature is filled with 0 and
        # measured against its kind's floor scale (a value at all is then the signal). A
        # feature with no value in the whole input is an error (`check_columns`, load_csv).
        no_clean_value = [f for i, f in enumerate(self.features) if np.all(np.isnan(rows[:, i]))]
        self.medians = medians(rows)
        centre, scale = robust_scale(rows, self.features)
        w = self._clean_windows(train)
        load_ref = None
        if self.load_scaling and LOAD_FEATURE in self.features:
            q = rows[:, self.features.index(LOAD_FEATURE)]
            q = q[~np.isnan(q)]
            load_ref = float(np.median(q)) if len(q) else None
        self.load_ref = load_ref
        std = detectors.Standardise(
            centre, scale, log_mask(self.features), noise_mask(self.features),
            self.features.index(LOAD_FEATURE) if LOAD_FEATURE in self.features else 0, load_ref,
        )
        if self.kind == "autoencoder":
            self.module = detectors.fit_autoencoder(std, w, epochs=self.epochs, seed=self.seed, threads=self.threads, progress=progress)
        elif self.kind == "pca":
            self.module = detectors.fit_pca(std, w)
        elif self.kind == "zscore":
            self.module = detectors.fit_zscore(std, w)
        elif self.kind == "kmeans":
            self.module = detectors.fit_kmeans(std, w, seed=self.seed)
        elif self.kind == "kmeans_levels":
            levels = np.array([f in RISING_IS_BAD for f in self.features])
            self.module = detectors.fit_kmeans(std, w, seed=self.seed, level_mask=levels)
        elif self.kind == "static":
            self.module = detectors.StaticScorer(self.features)
        else:
            self.module = _PythonOnly(self.kind, self.seed)
        self.trained_on = {
            "recordings": [r.name for r in train],
            "clean_windows": int(len(w)),
            "incidents_excluded": len(self.incidents),
            "features_without_clean_value": no_clean_value,
        }
        smoothed = []
        stride = max(1, self.evaluate_every_s // self.step_s)
        for rec in calibrate:
            rec = self._mark_incidents(rec)
            # Every phase of the evaluation grid: `stride` times the clean evaluations.
            for offset in range(stride):
                part = rec.slice(offset, len(rec))
                if len(part) < self.window:
                    continue
                ends, score, _ = self.score_recording(part)
                # Calibration leaves out a minute after each fault, not 30 s: the aftermath
                # (the scorer's backlog after a DGA burst drains for up to a minute) is not
                # the clean traffic the budget is about. The false alarms the report counts
                # are unchanged (alerts 30 s + a window after a fault count as false).
                ok = clean_mask(part, self.window, settle_s=CALIBRATION_SETTLE_S)[ends]
                s = alerting.ewma(score, self.ewma_alpha)
                # What the hysteresis compares with the threshold: an alert fires when k of the
                # last n smoothed scores reach it, i.e. when their k-th largest does. The
                # budget is calibrated on that, so one clean spike that the hysteresis
                # would never alert on does not set the threshold.
                s = alerting.kth_largest(s, self.k, self.n)
                smoothed.append(s[ok])
        if not smoothed or sum(len(s) for s in smoothed) < 50:
            raise DataError("too little clean calibration data for the threshold (need >= 50 clean evaluations)")
        self._clean_smoothed = np.concatenate(smoothed)
        self._sim_smoothed = None
        if self.calibration_days > 0:
            from . import simulate

            try:
                sim = simulate.simulate_clean(
                    [self._mark_incidents(r) for r in calibrate], int(self.calibration_days * 86400 / self.step_s),
                    seed=self.seed + 101, window=self.window,
                )
            except ValueError:
                sim = None  # too little clean calibration data to simulate from: the tail fit alone
            if sim is not None:
                _, score, _ = self.score_recording(sim)
                self._sim_smoothed = alerting.ewma(score, self.ewma_alpha)
        if self.kind == "static":
            # The operator's rules have their own thresholds: alert when any rule fires for
            # k of n evaluations (Prometheus's `for:`), no smoothing, no budget to calibrate.
            self.ewma_alpha = 1.0
            self.threshold = 0.5
            self.calibration = {"threshold": 0.5, "method": "fixed: any static rule firing"}
            return self
        self.set_false_alarm_budget(self.false_alarms_per_week)
        return self

    def fit_csv(self, paths: list, calibrate_paths: list | None = None, progress=None) -> AnomalyModel:
        """Trains on data-set CSVs (`timestamp`, the feature columns; labelled fault rows and
        excluded incidents are left out)."""
        if not paths:
            raise DataError("no CSV given")
        train = [self.read_csv(p) for p in paths]
        cal = [self.read_csv(p) for p in calibrate_paths] if calibrate_paths else None
        return self.fit(train, cal, progress=progress)

    def fit_prometheus(self, url: str, start, end, progress=None) -> AnomalyModel:
        """Trains on [start, end] of a Prometheus server (exclude incidents first)."""
        return self.fit([self.read_prometheus(url, start, end)], progress=progress)

    def set_false_alarm_budget(self, per_week: float) -> float:
        """Recalibrates the alert threshold so that clean data alarms at most `per_week`
        times a week (extreme-value fit on the clean calibration scores); returns it."""
        if self._clean_smoothed is None:
            raise DataError("fit the model before setting the false-alarm budget")
        try:
            q = alerting.tail_probability(per_week, self.evaluate_every_s)
        except ValueError as e:
            raise DataError(str(e)) from None
        clean = self._clean_smoothed
        self.calibration = alerting.pot_threshold(clean, q, initial_quantile=0.95 if len(clean) < 5000 else 0.98)
        self.calibration["clean_evaluations"] = int(len(clean))
        sim = getattr(self, "_sim_smoothed", None)
        if sim is not None and len(sim):
            # The tail fit extrapolates from minutes of clean data to a week; a week of
            # simulated clean traffic (built from the calibration recordings only) counts the
            # alarms directly. The threshold is the higher of the two.
            days = self.calibration_days
            allowed = int(np.floor(per_week * days / 7 + 1e-9))
            t_sim, n_sim = alerting.threshold_for_alarms(sim, allowed, self.k, self.n)
            pot = self.calibration
            self.calibration = {
                "threshold": max(pot["threshold"], t_sim),
                "method": ("simulated clean week" if t_sim > pot["threshold"] else pot["method"]),
                "pot": pot,
                "simulated": {"days": days, "allowed_alarms": allowed, "threshold": t_sim, "alarms": n_sim},
                "clean_evaluations": int(len(clean)),
            }
        self.threshold = self.calibration["threshold"]
        self.false_alarms_per_week = float(per_week)
        return self.threshold

    # ------------------------------------------------------------ scoring

    def _need_fit(self) -> None:
        if self.module is None or self.medians is None:
            raise DataError("the model is not trained yet: call fit_csv or fit_prometheus, or load a saved model")

    def score_windows(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw filled windows [n, features, window] -> (score [n], contributions [n, features])."""
        self._need_fit()
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 3 or w.shape[1:] != (len(self.features), self.window):
            raise DataError(f"windows must be [n, {len(self.features)}, {self.window}], got {list(w.shape)}")
        return detectors.score_module(self.module, w)

    def score_recording(self, rec: Recording) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores one evaluation every `evaluate_every_s`: (row index each window ends at, score,
        contributions)."""
        self._need_fit()
        x = fill_rows(rec.x, self.medians)
        stride = max(1, self.evaluate_every_s // self.step_s)
        if isinstance(self.module, _PythonOnly):
            ends = np.arange(self.window - 1, len(x), stride)
            s, c = self.module.score_rows(x, ends, self.features)
            return ends, s, c
        # In chunks of evaluations: a simulated day is 43,200 windows at one every 2 s, more
        # than a gigabyte as one array.
        all_ends = np.arange(self.window - 1, len(x), stride)
        if len(all_ends) == 0:
            raise DataError(f"{len(x)} rows: fewer than one window ({self.window} rows)")
        parts_s, parts_c = [], []
        chunk = 8192
        for i in range(0, len(all_ends), chunk):
            e = all_ends[i : i + chunk]
            lo = e[0] - self.window + 1
            w, _ = windows(x[lo : e[-1] + 1], self.window, stride)
            s, c = self.score_windows(w)
            parts_s.append(s)
            parts_c.append(c)
        return all_ends, np.concatenate(parts_s), np.concatenate(parts_c)

    def alerts(self, score: np.ndarray) -> np.ndarray:
        """Alert state per evaluation (smoothing, threshold, k-of-n hysteresis)."""
        smoothed = alerting.ewma(score, self.ewma_alpha)
        return alerting.hysteresis(smoothed >= self.threshold, self.k, self.n)

    def explain(self, window, top: int = 3) -> dict:
        """Score one window [features x window] (raw values, None/NaN = no sample) and name the
        features that made the score, largest first."""
        self._need_fit()
        w = np.asarray(window, dtype=np.float64) if not isinstance(window, np.ndarray) else window.astype(np.float64)
        if w.shape != (len(self.features), self.window):
            raise DataError(f"a window is [{len(self.features)} features, {self.window} rows], got {list(w.shape)}")
        filled = fill_window(w, self.medians)
        s, c = self.score_windows(filled[None])
        score = float(s[0])
        order = np.argsort(-c[0])[:top]
        total = float(c[0].sum()) or 1.0
        parts = [{"feature": self.features[i], "contribution": float(c[0][i]), "share": float(c[0][i]) / total} for i in order]
        names = " and ".join(p["feature"] for p in parts[:2])
        verdict = "anomalous" if self.threshold is not None and score >= self.threshold else "normal"
        return {
            "score": score,
            "threshold": self.threshold,
            "verdict": verdict,
            "top_features": parts,
            "summary": f"score {score:.2f} ({verdict}, threshold {self.threshold:.2f}): mostly {names}",
        }

    # ------------------------------------------------------------ evaluation

    def evaluate(self, recs: list[Recording], grace_s: int = 30) -> dict:
        """Event recall per class, time to detect, false alarms, VUS-PR and range F1 on
        labelled recordings."""
        self._need_fit()
        if not recs:
            raise DataError("no labelled data to evaluate on")
        outcomes, labels_all, score_all, alerts_all, clean_alerts = [], [], [], [], []
        fa = 0
        hours = 0.0
        for rec in recs:
            ends, s, c = self.score_recording(rec)
            a = self.alerts(s)
            ev = rec.events()
            outcomes += scoring.event_outcomes(ev, ends, a, c, self.features, grace_s)
            fa += scoring.false_alarms(ev, ends, a, self.window + grace_s)
            hours += len(rec) * self.step_s / 3600
            labels_all.append(rec.is_anomaly[ends])
            clean_alerts.append(a[clean_mask(rec, self.window)[ends]])
            score_all.append(s)
            alerts_all.append(a)
        labels = np.concatenate(labels_all)
        detected = [o for o in outcomes if o["detected"]]
        ttd = [o["time_to_detect_s"] for o in detected]
        per_class: dict[str, dict] = {}
        for o in outcomes:
            d = per_class.setdefault(o["class"], {"events": 0, "detected": 0})
            d["events"] += 1
            d["detected"] += int(o["detected"])
        for d in per_class.values():
            d["recall"] = d["detected"] / d["events"]
        result = {
            "events": len(outcomes),
            "event_recall": len(detected) / len(outcomes) if outcomes else None,
            "per_class": per_class,
            "median_time_to_detect_s": float(np.median(ttd)) if ttd else None,
            "p95_time_to_detect_s": float(np.percentile(ttd, 95)) if ttd else None,
            "false_alarms": fa,
            # Alerts that run on from one fault to the next are not "false alarms" by the
            # interval count above; the share of clean evaluations under an alert shows them.
            "clean_evaluations_alerting": float(np.concatenate(clean_alerts).mean()) if sum(len(c) for c in clean_alerts) else None,
            "hours": hours,
            "cause_named": (sum(o["cause_named"] for o in detected) / len(detected)) if detected else None,
            "outcomes": outcomes,
        }
        if labels.sum() > 0:
            result["vus_pr"] = scoring.vus_pr(labels, np.concatenate(score_all), max(2, self.window // max(1, self.evaluate_every_s)))
            result["range_f1"] = scoring.range_f1(labels, np.concatenate(alerts_all))
            result["pa_f1"] = scoring.point_adjusted_f1(labels, np.concatenate(alerts_all))
        return result

    def evaluate_csv(self, paths: list, grace_s: int = 30) -> dict:
        if not paths:
            raise DataError("no CSV given")
        return self.evaluate([self.read_csv(p, require_labels=True) for p in paths], grace_s)

    # ------------------------------------------------------------ saving

    def card(self, onnx_sha256: str, version: str | None = None, extra: dict | None = None) -> dict:
        self._need_fit()
        card = {
            "name": "dohguard-anomaly",
            "version": version or _dt.datetime.now(_dt.timezone.utc).strftime("%Y.%m.%d"),
            "placeholder": False,
            "kind": self.kind,
            "description": f"{self.kind} over {len(self.features)} gateway features x {self.window} s, trained by "
            "python -m dohguard_anomaly train (see anomaly/model/report.md)",
            "onnx_file": "model.onnx",
            "sha256": onnx_sha256,
            "step_s": self.step_s,
            "window": self.window,
            "evaluate_every_s": self.evaluate_every_s,
            "features": self.features,
            "missing": "ffill-then-median",
            "medians": [float(m) for m in self.medians],
            "input": {"name": "window", "dtype": "float32", "shape": ["batch", "features", "window"]},
            "outputs": [
                {"name": "score", "shape": ["batch"]},
                {"name": "contributions", "shape": ["batch", "features"], "meaning": "per-feature parts of the score; they sum to it"},
            ],
            "threshold": float(self.threshold),
            # The detector opens no anomaly this long after it starts: a window that is still
            # the card's medians turning into the gateway's first values, and rate windows
            # filling, are start-up, not anomalies.
            "warmup_s": self.window * self.step_s + WARMUP_MARGIN_S,
            "smoothing": {"ewma_alpha": self.ewma_alpha},
            "hysteresis": {"k": self.k, "n": self.n},
            "false_alarm_budget": {"per_week": self.false_alarms_per_week},
            "load_scaling": {"on": bool(getattr(self, "load_ref", None)), "load_ref_queries_per_s": getattr(self, "load_ref", None),
                             "meaning": "inside the graph: informative only"},
            "calibration": self.calibration,
            "trained_on": self.trained_on,
        }
        card.update(extra or {})
        return card

    def save(self, folder, version: str | None = None, extra: dict | None = None) -> dict:
        """Writes `model.onnx` and `model.card.json` (contract 7) into `folder`; returns the
        card. The ONNX graph takes raw filled windows (standardisation is inside)."""
        self._need_fit()
        if self.kind not in KINDS:
            raise DataError(f"{self.kind} is an evaluation baseline and cannot be exported; choose one of {', '.join(KINDS)}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        onnx_path = folder / "model.onnx"
        tmp = folder / "model.onnx.tmp"
        detectors.export_onnx(self.module, len(self.features), self.window, str(tmp))
        tmp.replace(onnx_path)
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        card = self.card(digest, version, extra)
        (folder / "model.card.json").write_text(json.dumps(card, indent=2) + "\n")
        torch.save({"module": self.module, "state": self._state()}, folder / "model.pt")
        return card

    def _state(self) -> dict:
        return {k: getattr(self, k) for k in (
            "kind", "window", "step_s", "evaluate_every_s", "ewma_alpha", "k", "n", "epochs", "seed", "threads",
            "features", "load_scaling", "load_ref", "incidents", "false_alarms_per_week", "medians", "threshold", "calibration",
            "_clean_smoothed", "_sim_smoothed", "calibration_days", "trained_on",
        )}

    @classmethod
    def load(cls, folder) -> AnomalyModel:
        """Loads a model saved by `save` (the PyTorch side, `model.pt`)."""
        path = Path(folder) / "model.pt"
        if not path.exists():
            raise DataError(f"{path}: no saved model (train one with `./dohguard anomaly train`)")
        blob = torch.load(path, weights_only=False)
        m = cls.__new__(cls)
        for k, v in blob["state"].items():
            setattr(m, k, v)
        m.module = blob["module"]
        return m
