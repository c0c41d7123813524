"""The feature pipeline on a fixture: loading, gap filling as the detector does it, windows,
and the errors for bad CSVs."""

import math
from pathlib import Path

import numpy as np
import pytest

from dohguard_anomaly.features import (
    FEATURES,
    DataError,
    clean_mask,
    fill_rows,
    fill_window,
    load_csv,
    medians,
    robust_scale,
    windows,
)

FIXTURE = Path(__file__).parent / "fixtures" / "recording-sample.csv"


def test_the_fixture_loads_with_labels_and_gaps_stay_nan():
    rec = load_csv(FIXTURE, require_labels=True)
    assert rec.x.shape == (len(rec), len(FEATURES))
    assert len(rec) >= 100
    assert np.isnan(rec.x).any(), "the sample keeps Prometheus's empty cells as gaps"
    assert rec.is_anomaly.sum() > 0 and (rec.is_anomaly == 0).sum() > 0
    for start, end, kind, _ in rec.events():
        assert kind and end > start
        assert (rec.anomaly_class[start:end] == kind).all()


def test_filling_a_window_forward_fills_and_leading_gaps_get_the_median():
    med = np.array([5.0, 7.0])
    w = np.array([[math.nan, 1.0, math.nan, math.nan, 2.0], [math.nan, math.nan, math.nan, math.nan, math.nan]])
    got = fill_window(w, med)
    assert got.tolist() == [[5.0, 1.0, 1.0, 1.0, 2.0], [7.0] * 5]


def test_filling_whole_rows_matches_filling_each_window_when_no_gap_crosses_its_start():
    rec = load_csv(FIXTURE)
    med = medians(rec.x)
    x = fill_rows(rec.x, med)
    w, ends = windows(x, 32)
    for j in range(0, len(ends), 7):
        e = ends[j]
        raw = rec.x[e - 31 : e + 1].T
        if np.isnan(raw[:, 0]).any():
            continue
        per_window = fill_window(raw, med)
        leading = np.isnan(raw[:, 0])
        np.testing.assert_allclose(per_window[~leading], w[j][~leading], rtol=1e-6)


def test_windows_are_features_by_time_and_end_where_they_say():
    x = np.arange(40 * 3, dtype=float).reshape(40, 3)
    w, ends = windows(x, 8, stride=4)
    assert w.shape == (len(ends), 3, 8)
    assert ends[0] == 7 and ends[-1] <= 39
    np.testing.assert_array_equal(w[1][:, -1], x[ends[1]])
    with pytest.raises(DataError, match="fewer than one window"):
        windows(x[:5], 8)


def test_robust_scale_never_goes_below_the_features_floor():
    x = np.zeros((100, len(FEATURES)))
    _, scale = robust_scale(x, FEATURES)
    assert scale[FEATURES.index("dohguard:nxdomain:ratio")] == 0.01
    assert scale[FEATURES.index("dohguard:queries:rate")] == 0.05  # log1p scale
    assert scale[FEATURES.index("dohguard:callout_failures:rate")] == 0.2


def test_clean_mask_keeps_a_settling_margin_after_each_fault():
    rec = load_csv(FIXTURE, require_labels=True)
    ok = clean_mask(rec, 32)
    start, end, _, _ = rec.events()[0]
    assert not ok[start:end].any()
    assert not ok[end : min(len(rec), end + 40)].any()


def _write(tmp_path, header, rows):
    p = tmp_path / "x.csv"
    p.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    return p


def test_a_missing_feature_column_is_named(tmp_path):
    header = ["timestamp"] + FEATURES[1:]
    p = _write(tmp_path, header, [["1"] + ["0"] * (len(FEATURES) - 1)])
    with pytest.raises(DataError, match="missing feature column.*dohguard:queries:rate"):
        load_csv(p)


def test_a_nan_only_column_is_an_error_not_zeros(tmp_path):
    header = ["timestamp"] + FEATURES
    rows = [[str(i)] + ["1"] * 3 + [""] + ["1"] * (len(FEATURES) - 4) for i in range(5)]
    p = _write(tmp_path, header, rows)
    with pytest.raises(DataError, match=r"NaN-only\): dohguard:callouts:rate;"):
        load_csv(p)


def test_a_data_set_recording_may_have_a_quantile_without_samples_but_no_other_empty_column(tmp_path):
    header = ["timestamp"] + FEATURES
    q = FEATURES.index("dohguard:scorer_inference_seconds:p99")
    rows = [[str(i)] + ["" if j == q else "1" for j in range(len(FEATURES))] for i in range(5)]
    p = _write(tmp_path, header, rows)
    with pytest.raises(DataError, match=r"NaN-only\): dohguard:scorer_inference_seconds:p99;"):
        load_csv(p)
    rec = load_csv(p, allow_sampleless_quantiles=True)
    assert np.all(np.isnan(rec.x[:, q]))
    c = FEATURES.index("dohguard:callouts:rate")
    rows = [[str(i)] + ["" if j in (q, c) else "1" for j in range(len(FEATURES))] for i in range(5)]
    p = _write(tmp_path, header, rows)
    with pytest.raises(DataError, match=r"NaN-only\): dohguard:callouts:rate;"):
        load_csv(p, allow_sampleless_quantiles=True)


def test_an_empty_file_a_bad_number_and_unordered_time_are_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_csv(empty)
    header = ["timestamp"] + FEATURES
    bad = _write(tmp_path, header, [["1"] + ["x"] + ["1"] * (len(FEATURES) - 1)])
    with pytest.raises(DataError, match=r"x.csv:2 dohguard:queries:rate: not a number"):
        load_csv(bad)
    p = tmp_path / "o.csv"
    p.write_text(",".join(header) + "\n" + "\n".join(",".join([t] + ["1"] * len(FEATURES)) for t in ("2", "1")) + "\n")
    with pytest.raises(DataError, match="not strictly increasing"):
        load_csv(p)
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "nope.csv")
