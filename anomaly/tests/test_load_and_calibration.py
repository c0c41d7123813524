"""The parts that keep a lightly used gateway quiet and the alarms rare: the load factor of
the standardisation, the k-means explanation, and the threshold calibrated on a simulated
clean week."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dohguard_anomaly import alerting, detectors
from dohguard_anomaly.experiment import clean_days
from dohguard_anomaly.features import FEATURES, LOAD_FEATURE, fill_rows, log_mask, noise_mask, windows
from dohguard_anomaly.model import AnomalyModel

from synth import recording

Q = FEATURES.index(LOAD_FEATURE)
NX = FEATURES.index("dohguard:nxdomain:ratio")
FAIL = FEATURES.index("dohguard:callout_failures:rate")


def _std(load_ref):
    f = len(FEATURES)
    return detectors.Standardise(np.zeros(f), np.ones(f), log_mask(FEATURES), noise_mask(FEATURES), Q, load_ref)


def test_the_load_factor_divides_sampling_noise_at_low_traffic_only():
    x = torch.zeros(3, len(FEATURES), 8)
    x[:, NX, :] = 0.5
    x[:, FAIL, :] = 0.5
    x[0, Q, :] = 100.0  # at or above the training rate: unchanged
    x[1, Q, :] = 1.0  # 1/100 of it: shares are measured in 10x wider units
    x[2, Q, :] = 1e-6  # idle: capped
    z = _std(100.0)(x)
    assert z[0, NX, 0] == pytest.approx(0.5)
    assert z[1, NX, 0] == pytest.approx(0.05)
    assert z[2, NX, 0] == pytest.approx(0.5 / detectors.LOAD_GMAX)
    # A count of failures is not a sampled share: never rescaled.
    assert z[1, FAIL, 0] == pytest.approx(0.5) and z[2, FAIL, 0] == pytest.approx(0.5)
    # One factor per window: a feature that holds still stays still while the rate moves.
    x[1, Q, :] = torch.linspace(1.0, 50.0, 8)
    z = _std(100.0)(x)
    assert torch.allclose(z[1, NX, :], z[1, NX, :1].expand(8))
    # Off without a reference rate.
    assert _std(None)(x)[1, NX, 0] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def kmeans():
    torch.set_num_threads(1)
    train = recording(1500, seed=1, name="train")
    cal = recording(900, seed=2, name="calibrate")
    return AnomalyModel(kind="kmeans", threads=1, calibration_days=0.2).fit([train], calibrate=[cal])


def test_kmeans_contributions_add_up_to_the_score_and_name_what_moved_most(kmeans, tmp_path):
    test = recording(900, seed=3, faults=[(600, 640, "tunnel")], name="test")
    x = fill_rows(test.x, kmeans.medians)
    w, _ = windows(x, kmeans.window)
    s, c = kmeans.score_windows(w)
    assert np.allclose(c.sum(axis=1), s, atol=1e-6)
    assert (c >= 0).all()
    # The tunnel's onset: the longest names jump; they are named first, not the first
    # feature of the list (an equal share per anomalous feature would tie).
    i = int(np.argmax(s[600 - 31 : 620 - 31])) + 600 - 31
    assert s[i] > 0
    top = FEATURES[int(np.argmax(c[i]))]
    assert top in ("dohguard:qname_length:p95", "dohguard:label_length_max:p95", "dohguard:qtype_txt:ratio"), top
    # The exported graph gives the same.
    kmeans.save(tmp_path)
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    so, co = sess.run(None, {"window": w[i - 4 : i + 4]})
    assert np.allclose(so, s[i - 4 : i + 4], atol=1e-5) and np.allclose(co, c[i - 4 : i + 4], atol=1e-5)


def test_kth_largest_is_what_the_hysteresis_compares():
    rng = np.random.default_rng(1)
    for _ in range(50):
        s = rng.random(60)
        t = float(rng.random())
        kth = alerting.kth_largest(s, 3, 5)
        for i in range(60):
            assert (kth[i] >= t) == ((s[max(0, i - 4) : i + 1] >= t).sum() >= 3)


def test_the_simulated_week_threshold_allows_the_budget_and_refuses_an_endless_alarm():
    rng = np.random.default_rng(2)
    smoothed = alerting.ewma(rng.exponential(1.0, 20000), 0.3)
    for allowed in (0, 3):
        t, n = alerting.threshold_for_alarms(smoothed, allowed, 3, 5)
        assert n <= allowed
        assert len(alerting.alert_intervals(alerting.hysteresis(smoothed >= t, 3, 5))) == n
    # All clean scores equal to zero: a threshold of 0 would be one alarm lasting forever.
    t, _ = alerting.threshold_for_alarms(np.zeros(1000), 1, 3, 5)
    assert t > 0
    assert not alerting.hysteresis(np.zeros(1000) >= t, 3, 5).any()


def test_the_threshold_is_at_least_the_simulated_weeks(kmeans):
    sim = kmeans.calibration["simulated"]
    assert sim["alarms"] <= sim["allowed_alarms"]
    assert kmeans.threshold >= sim["threshold"] and kmeans.threshold >= kmeans.calibration["pot"]["threshold"]


def test_clean_days_are_simulated_and_counted_one_day_at_a_time(kmeans):
    src = [recording(900, seed=4, name="clean")]
    r = clean_days(kmeans, src, 0.05, seed=1)
    assert r["days"] == 0.05 and len(r["false_alarms_each_day"]) == 1
    assert r["false_alarms"] == sum(r["false_alarms_each_day"])
