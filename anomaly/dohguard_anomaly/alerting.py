"""From scores to alerts, as the online detector does it (contract 7): EWMA smoothing of the
score, a threshold calibrated to a false-alarm budget, and k-of-n hysteresis (fire when k of
the last n evaluations are at or above the threshold, resolve when none of the last n is).

The threshold comes from a peaks-over-threshold fit (a generalised Pareto tail, Siffer et al.
KDD 2017) on smoothed scores of clean data: the budget "N false alarms a week" becomes a tail
probability per evaluation, which the fitted tail turns into a score.
"""

from __future__ import annotations

import math

import numpy as np

WEEK_S = 7 * 24 * 3600
MAX_ALERTING_SHARE = 1e-3  # a calibrated threshold keeps simulated clean data under an alert at most this share of the time
EXTRAPOLATION_CAP = 1.5  # a calibrated threshold is at most this many times the worst clean score seen


def ewma(scores: np.ndarray, alpha: float, segments: list[tuple[int, int]] | None = None) -> np.ndarray:
    """EWMA over successive evaluations; restarts at each (start, end) segment when given
    (separate recordings are not one time series). s_0 = x_0, s_i = alpha x_i + (1 - alpha)
    s_(i-1) (a linear filter: scipy's lfilter, so a simulated week is fast)."""
    from scipy.signal import lfilter

    scores = np.asarray(scores, dtype=np.float64)
    out = np.empty(len(scores), dtype=np.float64)
    for a, b in segments or [(0, len(scores))]:
        if b <= a:
            continue
        x = scores[a:b]
        y, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], x, zi=[(1.0 - alpha) * x[0]])
        out[a:b] = y
    return out


def hysteresis(above: np.ndarray, k: int, n: int, segments: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Alert state per evaluation: fires when >= k of the last n are above, stays until none
    of the last n is."""
    above = np.asarray(above, dtype=bool)
    state = np.zeros(len(above), dtype=bool)
    for a, b in segments or [(0, len(above))]:
        if b <= a:
            continue
        seg = above[a:b].astype(np.int64)
        csum = np.concatenate([[0], np.cumsum(seg)])
        idx = np.arange(len(seg))
        counts = csum[idx + 1] - csum[np.maximum(idx - n + 1, 0)]
        # Only evaluations where the count reaches k or falls to 0 can change the state.
        out = np.zeros(len(seg), dtype=bool)
        on = False
        pos = 0
        for i in np.flatnonzero((counts >= k) | (counts == 0)):
            out[pos:i] = on
            if not on and counts[i] >= k:
                on = True
            elif on and counts[i] == 0:
                on = False
            out[i] = on
            pos = i + 1
        out[pos:] = on
        state[a:b] = out
    return state


def kth_largest(smoothed: np.ndarray, k: int, n: int) -> np.ndarray:
    """Per evaluation, the k-th largest of the last n smoothed scores (fewer at the start):
    `hysteresis` fires exactly when this reaches the threshold."""
    smoothed = np.asarray(smoothed, dtype=np.float64)
    if len(smoothed) == 0:
        return smoothed
    pad = np.concatenate([np.full(n - 1, -np.inf), smoothed])
    view = np.lib.stride_tricks.sliding_window_view(pad, n)  # [len, n]
    return np.sort(view, axis=1)[:, n - k]


def threshold_for_alarms(smoothed: np.ndarray, allowed: int, k: int, n: int) -> tuple[float, int]:
    """The lowest threshold at which `hysteresis` raises at most `allowed` alarms on these
    smoothed clean scores; returns it and the alarm count there. Candidates are just above
    the levels the k-th largest of the last n takes (an alarm fires when it reaches the
    threshold)."""
    smoothed = np.asarray(smoothed, dtype=np.float64)
    kth = kth_largest(smoothed, k, n)
    levels = np.unique(kth[np.isfinite(kth)])
    if len(levels) == 0:
        return 0.0, 0

    def alarms(t: float) -> int:
        return len(alert_intervals(hysteresis(smoothed >= t, k, n)))

    def ok(t: float) -> bool:
        # Few alarms, and not one that never ends (a threshold under the usual clean score
        # is one long alarm).
        state = hysteresis(smoothed >= t, k, n)
        return len(alert_intervals(state)) <= allowed and state.mean() <= MAX_ALERTING_SHARE

    cands = levels * (1 + 1e-4) + 1e-9  # just above each level (with room for float32 in the detector)
    lo, hi = 0, len(cands) - 1  # alarms(cands[-1]) == 0: above the largest level nothing fires
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(float(cands[mid])):
            hi = mid
        else:
            lo = mid + 1
    return float(cands[lo]), alarms(float(cands[lo]))


def alert_intervals(state: np.ndarray) -> list[tuple[int, int]]:
    """(start, end_exclusive) of each run of True."""
    b = np.concatenate([[0], np.asarray(state, dtype=np.int8), [0]])
    d = np.diff(b)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def pot_threshold(clean: np.ndarray, tail_probability: float, initial_quantile: float = 0.98) -> dict:
    """Peaks over threshold: fit a generalised Pareto distribution to the excesses of clean
    scores over their `initial_quantile`, return the score exceeded with `tail_probability`.
    Falls back to the empirical maximum x 1.2 when the tail cannot be fitted (too few points)."""
    from scipy.stats import genpareto

    clean = np.asarray(clean, dtype=np.float64)
    clean = clean[np.isfinite(clean)]
    if len(clean) < 50:
        raise ValueError(f"{len(clean)} clean evaluations: too few to calibrate a threshold (need >= 50)")
    if np.all(clean >= 0):
        # Scores are sums of squares with a heavy right tail; the tail of log1p(score) is
        # lighter and the extrapolation far more stable. Fit there, map back.
        r = _pot(np.log1p(clean), tail_probability, initial_quantile)
        with np.errstate(over="ignore"):
            r["threshold"] = float(np.expm1(r["threshold"]))
        r["scale"] = "log1p"
        if not np.isfinite(r["threshold"]) or r.get("xi", 0.0) > 0.5:
            # A tail this heavy (clean validation scores far from training: a shifted
            # normal) cannot be extrapolated to a weekly budget; say so and use a margin over
            # the worst clean score instead.
            return {
                "threshold": float(clean.max()) * EXTRAPOLATION_CAP,
                "method": f"POT rejected (shape xi={r.get('xi', float('nan')):.2f} > 0.5): worst clean score x {EXTRAPOLATION_CAP:g}",
                "pot": {k: v for k, v in r.items() if k != "threshold"},
            }
        worst = float(clean.max())
        if r["threshold"] > EXTRAPOLATION_CAP * worst > 0:
            # A budget of one alarm a week at one evaluation every 2 s is a tail probability
            # of ~3e-6: from a few thousand clean evaluations the fitted shape decides
            # everything, and a shape of 0.4 puts the threshold past any score the detector
            # can give (it would alert on nothing). Extrapolate at most this far beyond the
            # worst clean score seen; the simulated clean week in the report checks the result.
            r = {
                "threshold": EXTRAPOLATION_CAP * worst,
                "method": f"POT capped: the fit gave {r['threshold']:.4g}, over {EXTRAPOLATION_CAP:g} x the worst clean score; "
                f"worst clean score x {EXTRAPOLATION_CAP:g}",
                "pot": {k: v for k, v in r.items() if k != "threshold"},
            }
        return r
    return _pot(clean, tail_probability, initial_quantile)


def _pot(clean: np.ndarray, tail_probability: float, initial_quantile: float) -> dict:
    from scipy.stats import genpareto

    if tail_probability >= 1.0 - initial_quantile:
        # Inside the data: no tail to extrapolate.
        return {"threshold": float(np.quantile(clean, 1.0 - tail_probability)), "method": "empirical quantile"}
    u = float(np.quantile(clean, initial_quantile))
    peaks = clean[clean > u] - u
    n, nt = len(clean), len(peaks)
    if nt < 10 or float(np.std(peaks)) == 0.0:
        return {"threshold": float(clean.max()) * 1.2, "method": "max x 1.2 (tail too small to fit)", "u": u, "peaks": nt}
    xi, _, sigma = genpareto.fit(peaks, floc=0.0)
    r = tail_probability * n / nt
    if abs(xi) < 1e-6:
        z = u - sigma * math.log(r)
    else:
        z = u + sigma / xi * (r ** (-xi) - 1.0)
    if tail_probability < 1.0 / n:
        # Beyond the data: the fitted tail may be bounded below what was seen; never alarm
        # on a value the clean data itself reached.
        z = max(z, float(clean.max()))
    return {"threshold": float(z), "method": "POT (generalised Pareto)", "u": u, "xi": float(xi), "sigma": float(sigma), "peaks": nt}


def tail_probability(per_week: float, evaluate_every_s: float) -> float:
    """The per-evaluation exceedance probability that spends a budget of `per_week` alarms."""
    if per_week <= 0:
        raise ValueError(f"false-alarm budget must be > 0 per week, got {per_week}")
    return per_week * evaluate_every_s / WEEK_S
