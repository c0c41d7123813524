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


def ewma(scores: np.ndarray, alpha: float, segments: list[tuple[int, int]] | None = None) -> np.ndarray:
    """EWMA over successive evaluations; restarts at each (start, end) segment when given
    (separate recordings are not one time series)."""
    out = np.empty(len(scores), dtype=np.float64)
    for a, b in segments or [(0, len(scores))]:
        s = None
        for i in range(a, b):
            v = float(scores[i])
            s = v if s is None else alpha * v + (1 - alpha) * s
            out[i] = s
    return out


def hysteresis(above: np.ndarray, k: int, n: int, segments: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Alert state per evaluation: fires when >= k of the last n are above, stays until none
    of the last n is."""
    state = np.zeros(len(above), dtype=bool)
    for a, b in segments or [(0, len(above))]:
        on = False
        for i in range(a, b):
            lo = max(a, i - n + 1)
            count = int(above[lo : i + 1].sum())
            if not on and count >= k:
                on = True
            elif on and count == 0:
                on = False
            state[i] = on
    return state


def alert_intervals(state: np.ndarray) -> list[tuple[int, int]]:
    """(start, end_exclusive) of each run of True."""
    out = []
    i = 0
    n = len(state)
    while i < n:
        if state[i]:
            j = i
            while j < n and state[j]:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


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
                "threshold": float(clean.max()) * 1.5,
                "method": f"POT rejected (shape xi={r.get('xi', float('nan')):.2f} > 0.5): worst clean score x 1.5",
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
