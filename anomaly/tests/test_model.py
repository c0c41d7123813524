"""AnomalyModel: a tiny training run, ONNX parity (PyTorch vs ONNX Runtime), thresholds and
hysteresis, explanations, and the error messages of the class API."""

import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dohguard_anomaly import alerting
from dohguard_anomaly.features import FEATURES, DataError
from dohguard_anomaly.model import AnomalyModel

from synth import recording


@pytest.fixture(scope="module")
def data():
    train = recording(1500, seed=1, name="train")
    cal = recording(900, seed=2, name="calibrate")
    test = recording(900, seed=3, faults=[(300, 340, "flood"), (600, 640, "tunnel")], name="test")
    return train, cal, test


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    torch.set_num_threads(1)
    train, cal, _ = data
    out = {}
    for kind in ("autoencoder", "pca", "kmeans_levels"):
        m = AnomalyModel(kind=kind, epochs=3, threads=1, calibration_days=0.2).fit([train], calibrate=[cal])
        folder = tmp_path_factory.mktemp(kind)
        card = m.save(folder)
        out[kind] = (m, folder, card)
    return out


def test_a_tiny_training_run_scores_faults_above_clean_windows_and_detects_them(data, trained):
    _, _, test = data
    for kind in ("autoencoder", "pca"):
        m = trained[kind][0]
        ends, s, _ = m.score_recording(test)
        fault = test.is_anomaly[ends] == 1
        assert np.percentile(s[fault], 75) > 3 * np.median(s[~fault]), kind
        r = m.evaluate([test])
        assert r["events"] == 2
        assert r["per_class"]["flood"]["detected"] == 1, (kind, r["per_class"])
        assert math.isfinite(m.threshold) and m.threshold > 0


@pytest.mark.parametrize("kind", ["autoencoder", "pca", "kmeans_levels"])
def test_onnx_runtime_gives_the_scores_pytorch_gives(data, trained, kind):
    _, _, test = data
    m, folder, card = trained[kind]
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["window"]
    assert [o.name for o in sess.get_outputs()] == ["score", "contributions"]
    from dohguard_anomaly.features import fill_rows, windows

    w, _ = windows(fill_rows(test.x, m.medians), m.window, stride=9)
    s_torch, c_torch = m.score_windows(w)
    s_onnx, c_onnx = sess.run(None, {"window": w})
    np.testing.assert_allclose(s_onnx, s_torch, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c_onnx, c_torch, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c_onnx.sum(axis=1), s_onnx, rtol=1e-4, atol=1e-5)


def test_a_steady_rise_stays_anomalous_with_levels_and_is_forgotten_without(data):
    """An NXDOMAIN share that jumps and then holds (a storm that goes on): k-means on
    differences sees only the jump; with the level coordinate the rise stays anomalous for as
    long as it lasts, and the NXDOMAIN share is what it names."""
    train, cal, _ = data
    nx = FEATURES.index("dohguard:nxdomain:ratio")
    held = recording(900, seed=4, name="held")
    held.x[300:700, nx] = 0.6
    held.is_anomaly[300:700] = 1
    late = {}
    for kind in ("kmeans", "kmeans_levels"):
        m = AnomalyModel(kind=kind, threads=1, calibration_days=0.2).fit([train], calibrate=[cal])
        ends, s, c = m.score_recording(held)
        steady = (ends >= 400) & (ends < 700)  # well after the jump, before the fall
        late[kind] = float(np.mean(s[steady] > 0))
        if kind == "kmeans_levels":
            named = np.argmax(c[steady], axis=1) == nx
            assert named.mean() >= 0.95, [FEATURES[i] for i in np.argmax(c[steady], axis=1)[~named]]
    assert late["kmeans_levels"] == 1.0, late
    assert late["kmeans"] < 0.2, late


def test_the_card_has_the_contract_fields(trained):
    import hashlib

    _, folder, card = trained["pca"]
    on_disk = json.loads((folder / "model.card.json").read_text())
    assert on_disk == card
    for field in ("name", "version", "kind", "onnx_file", "sha256", "step_s", "window", "features", "missing",
                  "medians", "input", "outputs", "threshold", "smoothing", "hysteresis", "false_alarm_budget"):
        assert field in card, field
    assert card["features"] == FEATURES
    assert card["sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert card["input"]["shape"] == ["batch", "features", "window"]


def test_a_smaller_budget_raises_the_threshold(trained):
    m, _, _ = trained["pca"]
    loose = m.set_false_alarm_budget(20000)  # a tail probability inside the clean data
    strict = m.set_false_alarm_budget(0.5)
    assert strict > loose
    m.set_false_alarm_budget(1)


def test_explain_names_the_feature_that_moved(data, trained):
    _, _, test = data
    m, _, _ = trained["pca"]
    window = test.x[640 - 32 : 640].T
    e = m.explain(window)
    names = [p["feature"] for p in e["top_features"]]
    assert {"dohguard:qname_length:p95", "dohguard:qtype_txt:ratio"} & set(names[:2]), names
    assert e["verdict"] == "anomalous"
    assert "mostly" in e["summary"]


def test_a_saved_model_loads_and_scores_the_same(data, trained):
    _, _, test = data
    m, folder, _ = trained["autoencoder"]
    again = AnomalyModel.load(folder)
    w = test.x[:32].T
    assert again.explain(w)["score"] == pytest.approx(m.explain(w)["score"], rel=1e-6)


def test_hysteresis_needs_k_of_n_and_resolves_when_none_is_above():
    above = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    state = alerting.hysteresis(above, 3, 5)
    assert not state[:4].any(), "one noisy evaluation does not alert"
    assert state[4] and state[9] and not state[10]


def test_pot_threshold_lies_beyond_the_clean_data():
    clean = np.random.default_rng(0).exponential(1.0, 20000)
    r = alerting.pot_threshold(clean, 1e-6)
    # Exponential tail: the 1e-6 quantile is ln(1e6) = 13.8.
    assert 10 < r["threshold"] < 20, r


# ------------------------------------------------------------ errors of the class API


def test_bad_settings_are_refused_with_the_reason():
    with pytest.raises(DataError, match="unknown kind 'lstm'"):
        AnomalyModel(kind="lstm")
    with pytest.raises(DataError, match="multiple of 4"):
        AnomalyModel(window=30)
    with pytest.raises(DataError, match="1 <= k <= n"):
        AnomalyModel(k=6, n=5)


def test_using_a_model_before_training_says_so():
    m = AnomalyModel()
    with pytest.raises(DataError, match="not trained yet"):
        m.explain(np.zeros((len(FEATURES), 32)))
    with pytest.raises(DataError, match="fit the model before"):
        m.set_false_alarm_budget(1)


def test_a_budget_of_zero_and_a_wrong_window_shape_are_refused(trained):
    m, _, _ = trained["pca"]
    with pytest.raises(DataError, match="must be > 0 per week"):
        m.set_false_alarm_budget(0)
    with pytest.raises(DataError, match=r"a window is \[27 features, 32 rows\], got \[27, 10\]"):
        m.explain(np.zeros((len(FEATURES), 10)))


def test_an_incident_that_ends_before_it_starts_or_a_bad_time_is_refused():
    m = AnomalyModel()
    with pytest.raises(DataError, match="ends before it starts"):
        m.exclude_incident("2026-12-01T11:00Z", "2026-12-01T10:00Z")
    with pytest.raises(DataError, match="not a time: 'yesterday'"):
        m.exclude_incident("yesterday", "2026-12-01T10:00Z")


def test_excluded_incidents_are_left_out_of_training(data):
    train, cal, _ = data
    m = AnomalyModel(kind="pca")
    m.exclude_incident(float(train.timestamp[0]), float(train.timestamp[-1]) + 1)
    with pytest.raises(DataError, match="too little to learn from"):
        m.fit([train], calibrate=[cal])


def test_training_on_no_data_or_an_empty_csv_list_is_an_error():
    with pytest.raises(DataError, match="no training data"):
        AnomalyModel().fit([])
    with pytest.raises(DataError, match="no CSV given"):
        AnomalyModel().fit_csv([])
