"""The features (contract 5) as arrays: loading the data set's CSV, filling gaps the way the
online detector does (contract 7: forward-fill inside the window, leading gaps get the
median), robust per-feature standardisation, and cutting rows into windows.

One definition of the feature list: `FEATURES` here (the export and the model card use it).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

FEATURES = [
    "dohguard:queries:rate",
    "dohguard:blocked:ratio",
    "dohguard:cache_hit:ratio",
    "dohguard:callouts:rate",
    "dohguard:callout_failures:rate",
    "dohguard:malformed:rate",
    "dohguard:events_dropped:rate",
    "dohguard:upstream_requests:rate",
    "dohguard:upstream_5xx:rate",
    "dohguard:downstream_latency_ms:p99",
    "dohguard:downstream_connections:active",
    "dohguard:nxdomain:ratio",
    "dohguard:servfail:ratio",
    "dohguard:qtype_a:ratio",
    "dohguard:qtype_aaaa:ratio",
    "dohguard:qtype_https:ratio",
    "dohguard:qtype_txt:ratio",
    "dohguard:qtype_mx:ratio",
    "dohguard:qtype_cname:ratio",
    "dohguard:qtype_ptr:ratio",
    "dohguard:qtype_other:ratio",
    "dohguard:qname_length:p95",
    "dohguard:label_length_max:p95",
    "dohguard:callout_latency_ms:p99",
    "dohguard:scorer_queue_depth",
    "dohguard:scorer_inference_seconds:p99",
    "dohguard:es_bulk_seconds:p99",
]

# Traffic volumes: standardised on a log scale (log1p), so the daily cycle (0.2x to 1x) and a
# flood (several x) are measured as ratios, not differences.
LOG_FEATURES = ["dohguard:queries:rate", "dohguard:callouts:rate", "dohguard:upstream_requests:rate"]

# Features whose rise means trouble on any gateway, whatever its normal level: failures,
# latency, the share of names that do not exist, long names, TXT queries, blocks. The
# `kmeans_levels` detector measures how far their level stands above its clean training
# level (one-sided: a gateway whose clients never hit NXDOMAIN is not anomalous for it), on top
# of how they change.
RISING_IS_BAD = [
    "dohguard:blocked:ratio",
    "dohguard:callout_failures:rate",
    "dohguard:malformed:rate",
    "dohguard:events_dropped:rate",
    "dohguard:upstream_5xx:rate",
    "dohguard:downstream_latency_ms:p99",
    "dohguard:nxdomain:ratio",
    "dohguard:servfail:ratio",
    "dohguard:qtype_txt:ratio",
    "dohguard:qname_length:p95",
    "dohguard:label_length_max:p95",
    "dohguard:callout_latency_ms:p99",
    "dohguard:scorer_queue_depth",
    "dohguard:scorer_inference_seconds:p99",
    "dohguard:es_bulk_seconds:p99",
]

LABEL_COLUMNS = ["is_anomaly", "anomaly_class", "intensity", "simulated"]


def scale_floor(feature: str) -> float:
    """The smallest change of a feature that counts as one unit after standardisation, by its
    kind: a feature that never moves in clean data (malformed requests, dropped events) must
    not turn a tiny wobble into a huge z-score."""
    if feature in LOG_FEATURES:
        return 0.05  # 5% on the log1p scale
    if feature.endswith(":ratio"):
        return 0.01
    if feature.endswith(":rate"):
        return 0.2
    if "_ms:" in feature:
        return 25.0  # latency quantiles on a shared machine wander by tens of ms
    if "_seconds:" in feature:
        return 0.025
    if "length" in feature:
        return 1.0
    return 1.0  # counts: connections, queue depth


class DataError(ValueError):
    """Bad input data: the message says what and where."""


@dataclasses.dataclass
class Recording:
    """A labelled recording: `x` is rows x features (NaN where Prometheus had no value)."""

    name: str
    timestamp: np.ndarray  # int64 seconds
    x: np.ndarray  # float64 [rows, features]
    is_anomaly: np.ndarray  # int8
    anomaly_class: np.ndarray  # object (str, "" when clean)
    intensity: np.ndarray  # float64 (nan when clean)
    simulated: np.ndarray  # int8
    features: list[str] = dataclasses.field(default_factory=lambda: list(FEATURES))

    def __len__(self) -> int:
        return len(self.timestamp)

    def slice(self, start: int, end: int, name: str | None = None) -> Recording:
        return Recording(
            name or f"{self.name}[{start}:{end}]",
            self.timestamp[start:end],
            self.x[start:end],
            self.is_anomaly[start:end],
            self.anomaly_class[start:end],
            self.intensity[start:end],
            self.simulated[start:end],
            list(self.features),
        )

    def events(self) -> list[tuple[int, int, str, float]]:
        """Labelled fault intervals as (start_row, end_row_exclusive, class, intensity)."""
        out = []
        i = 0
        n = len(self)
        while i < n:
            if self.is_anomaly[i]:
                j = i
                while j < n and self.is_anomaly[j] and self.anomaly_class[j] == self.anomaly_class[i]:
                    j += 1
                out.append((i, j, str(self.anomaly_class[i]), float(self.intensity[i])))
                i = j
            else:
                i += 1
        return out


def _float(cell: str, where: str) -> float:
    if cell == "":
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise DataError(f"{where}: not a number: {cell!r}") from None


def load_csv(path: str | Path, features: list[str] | None = None, require_labels: bool = False,
             allow_sampleless_quantiles: bool = False) -> Recording:
    """Reads a data-set CSV (`timestamp`, one column per feature, optional label columns).
    Errors name the file, the line and the column; a feature column that is missing or has no
    value at all is an error (a missing metric is not zero). With
    `allow_sampleless_quantiles` (one recording of a data set whose other recordings have
    values), a quantile column with no value is accepted: `histogram_quantile` has nothing to
    say about a histogram that got no sample in the whole run (the scorer's inference time when
    its own cache answered every callout), and the gaps are filled like any other."""
    features = list(features or FEATURES)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    opener = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rt", newline="") as f:  # type: ignore[operator]
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file (no header)") from None
        col = {name: i for i, name in enumerate(header)}
        if "timestamp" not in col:
            raise DataError(f"{path}: no 'timestamp' column (header: {header[:5]}...)")
        missing = [f_ for f_ in features if f_ not in col]
        if missing:
            raise DataError(f"{path}: missing feature column(s): {', '.join(missing)}")
        if require_labels and "is_anomaly" not in col:
            raise DataError(f"{path}: no 'is_anomaly' column: evaluation needs labelled data")
        ts, xs, lab, cls, inten, sim = [], [], [], [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{line_no}: {len(row)} cells, header has {len(header)}")
            where = f"{path}:{line_no}"
            t = _float(row[col["timestamp"]], where + " timestamp")
            if math.isnan(t):
                raise DataError(f"{where}: empty timestamp")
            ts.append(int(round(t)))
            xs.append([_float(row[col[f_]], f"{where} {f_}") for f_ in features])
            lab.append(int(_float(row[col["is_anomaly"]], where) or 0) if "is_anomaly" in col else 0)
            cls.append(row[col["anomaly_class"]] if "anomaly_class" in col else "")
            inten.append(_float(row[col["intensity"]], where) if "intensity" in col else math.nan)
            sim.append(int(_float(row[col["simulated"]], where) or 0) if "simulated" in col else 0)
    if not ts:
        raise DataError(f"{path}: no rows")
    x = np.asarray(xs, dtype=np.float64)
    rec = Recording(
        path.name,
        np.asarray(ts, dtype=np.int64),
        x,
        np.asarray(lab, dtype=np.int8),
        np.asarray(cls, dtype=object),
        np.asarray(inten, dtype=np.float64),
        np.asarray(sim, dtype=np.int8),
        features,
    )
    quantiles = [f_ for f_ in features if f_.endswith((":p95", ":p99"))] if allow_sampleless_quantiles else []
    check_columns(rec.x, features, str(path), may_be_empty=quantiles)
    if np.any(np.diff(rec.timestamp) <= 0):
        raise DataError(f"{path}: timestamps are not strictly increasing")
    return rec


def check_columns(x: np.ndarray, features: list[str], where: str, may_be_empty: list[str] | None = None) -> None:
    """A feature with no value in any row is an error, not zeros (except `may_be_empty`)."""
    if x.shape[0] == 0:
        raise DataError(f"{where}: no rows")
    allowed = set(may_be_empty or [])
    empty = [f for i, f in enumerate(features) if np.all(np.isnan(x[:, i])) and f not in allowed]
    if empty:
        raise DataError(
            f"{where}: feature(s) with no value in any row (NaN-only): {', '.join(empty)}; "
            "is the metric exported and the recording rule loaded?"
        )


def medians(x: np.ndarray) -> np.ndarray:
    """Per-feature median of the present values (the fill value of leading gaps)."""
    return np.array([float(np.nanmedian(c)) if np.any(~np.isnan(c)) else 0.0 for c in x.T])


def fill_window(w: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Contract 7's filling of one window [features, window]: forward-fill along time, leading
    gaps get the feature's median. The Rust detector does the same."""
    w = np.array(w, dtype=np.float64, copy=True)
    for f in range(w.shape[0]):
        last = med[f]
        for t in range(w.shape[1]):
            if math.isnan(w[f, t]):
                w[f, t] = last
            else:
                last = w[f, t]
    return w


def fill_rows(x: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Forward-fill a whole recording [rows, features]; leading gaps get the median. Equal to
    `fill_window` on every window when a gap never spans a window's start (checked in tests
    on the fixture); faster for whole recordings."""
    x = np.array(x, dtype=np.float64, copy=True)
    for f in range(x.shape[1]):
        col = x[:, f]
        isn = np.isnan(col)
        if not isn.any():
            continue
        idx = np.where(~isn, np.arange(len(col)), -1)
        np.maximum.accumulate(idx, out=idx)
        filled = np.where(idx >= 0, col[np.maximum(idx, 0)], med[f])
        x[:, f] = filled
    return x


LOAD_FEATURE = "dohguard:queries:rate"


def noise_mask(features: list[str]) -> np.ndarray:
    """The features computed over the queries of the rate window (shares, quantiles, the
    traffic volumes): their sampling noise grows as the traffic falls (see
    `detectors.Standardise`). Counts of failures, connections and queue depth are not."""
    return np.array([f.endswith(":ratio") or f.endswith(":p95") or f.endswith(":p99") or f in LOG_FEATURES for f in features])


def log_mask(features: list[str]) -> np.ndarray:
    return np.array([f in LOG_FEATURES for f in features])


def transform(x: np.ndarray, features: list[str]) -> np.ndarray:
    """What the standardisation centres and scales: log1p of the traffic volumes, the other
    features as they are (negative volumes cannot occur; clipped at 0 like the graph does)."""
    x = np.array(x, dtype=np.float64, copy=True)
    m = log_mask(features)
    x[:, m] = np.log1p(np.maximum(x[:, m], 0.0))
    return x


def robust_scale(x: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (centre, scale) of the transformed rows: median and 1.4826 x MAD, floored by
    the feature kind's smallest meaningful change (`scale_floor`) and by the IQR."""
    x = transform(x, features)
    centre = medians(x)
    scale = np.empty(len(features))
    for i, f in enumerate(features):
        c = x[:, i][~np.isnan(x[:, i])]
        mad = 1.4826 * float(np.median(np.abs(c - centre[i]))) if len(c) else 0.0
        iqr = float(np.subtract(*np.percentile(c, [75, 25]))) / 1.349 if len(c) else 0.0
        scale[i] = max(mad, iqr, scale_floor(f))
    return centre, scale


def windows(x: np.ndarray, window: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cuts filled rows [rows, features] into windows [n, features, window]; returns them and
    the row index each window ends at (inclusive)."""
    if x.shape[0] < window:
        raise DataError(f"{x.shape[0]} rows: fewer than one window ({window} rows)")
    ends = np.arange(window - 1, x.shape[0], stride)
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # [rows-w+1, F, w]
    return np.ascontiguousarray(view[ends - window + 1]).astype(np.float32), ends


def clean_mask(rec: Recording, window: int, settle_s: int = 30) -> np.ndarray:
    """Per row: True when neither the row nor the `window + settle_s` rows before it touch a
    fault (the rate windows of the recording rules and the histograms' flush keep a fault
    visible for a while after it ends). Windows ending at such a row are clean."""
    bad = rec.is_anomaly.astype(bool)
    reach = window + settle_s
    out = np.ones(len(rec), dtype=bool)
    idx = np.where(bad)[0]
    for i in idx:
        out[i : i + reach] = False
    return out
