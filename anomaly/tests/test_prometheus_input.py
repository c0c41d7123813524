"""AnomalyModel.read_prometheus against a real Prometheus (the Debian `prometheus` binary) whose
storage holds backfilled feature samples (`promtool tsdb create-blocks-from openmetrics`): an
empty range, a missing metric and a server that does not answer each give a clear error; a
complete range reads back as rows."""

import socket
import subprocess
import time

import numpy as np
import pytest
import requests

from dohguard_anomaly.features import FEATURES, DataError
from dohguard_anomaly.model import AnomalyModel


START = (int(time.time()) // 60) * 60 - 3 * 3600  # well before Prometheus's own head block
ROWS = 60
COMPLETE = FEATURES
PARTIAL_MISSING = "dohguard:es_bulk_seconds:p99"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    d = tmp_path_factory.mktemp("prom")
    lines = []
    # Rows 0..59 hold every feature but one; the missing one appears nowhere.
    for f in FEATURES:
        if f == PARTIAL_MISSING:
            continue
        lines.append(f"# TYPE {f} gauge")
        lines += [f"{f} {1.0 + (i % 3)} {START + i}" for i in range(ROWS)]
    lines.append("# EOF")
    (d / "m.om").write_text("\n".join(lines) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(d / "m.om"), str(d / "data")],
                   check=True, capture_output=True)
    (d / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    port = _free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("Prometheus did not become ready")
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_a_range_with_a_missing_metric_names_it(prometheus):
    m = AnomalyModel()
    with pytest.raises(DataError, match=f"no value in .* for: {PARTIAL_MISSING}"):
        m.read_prometheus(prometheus, START, START + ROWS - 1)


def test_a_range_without_any_sample_is_an_empty_range(prometheus):
    m = AnomalyModel()
    with pytest.raises(DataError, match="no value of any feature .*: empty range"):
        m.read_prometheus(prometheus, START - 7200, START - 3600)


def test_the_present_features_read_back_as_rows(prometheus):
    m = AnomalyModel(features=[f for f in FEATURES if f != PARTIAL_MISSING])
    rec = m.read_prometheus(prometheus, START, START + ROWS - 1)
    assert len(rec) == ROWS
    assert rec.timestamp[0] == START
    np.testing.assert_allclose(rec.x[:3, 0], [1.0, 2.0, 3.0])


def test_a_range_shorter_than_a_window_and_a_dead_server_are_errors(prometheus):
    m = AnomalyModel()
    with pytest.raises(DataError, match="shorter than one window"):
        m.read_prometheus(prometheus, START, START + 10)
    with pytest.raises(DataError, match="did not answer"):
        m.read_prometheus(f"http://127.0.0.1:{_free_port()}", START, START + ROWS)
