"""The ``tunnel-v1`` feature set and the tunnel-suspect rule agree between Python
(``dohguard_models.tunnel_features``, training) and Rust (``dohguard_core::features::tunnel``,
serving; run through ``core/examples/tunnel_features.rs``) on every valid name of the real
tunnel captures and the benign full-name sources (docs/contracts.md section 2): the same
suspect decision and every value within 1e-5.

The data folder (../shared/data, or DOHGUARD_DATA) is required: without it this test fails,
it does not skip.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dohguard_models import tunnel, tunnel_features

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DOHGUARD_DATA", REPO.parent / "shared" / "data"))
MIN_NAMES = 20_000


def _binary() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is not on PATH: `source scripts/env.sh` first")
    proc = subprocess.run([cargo, "build", "-p", "dohguard-core", "--example", "tunnel_features",
                           "--locked"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cargo build --example tunnel_features failed:\n{proc.stderr[-3000:]}")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "examples" / "tunnel_features"


def _names() -> list[str]:
    if not DATA.is_dir():
        pytest.fail(f"data folder {DATA} not found (set DOHGUARD_DATA)")
    names: dict[str, None] = {}
    for s in tunnel.tunnel_sessions(DATA):
        for raw in s.names:
            if (n := tunnel._valid(raw)) is not None:
                names.setdefault(n)
    for src in tunnel.real_benign(DATA).values():
        for n in src:
            names.setdefault(n)
    for n in tunnel.synthetic_benign(5000, seed=1):
        names.setdefault(n)
    return list(names)


def test_python_and_rust_agree_on_every_name():
    names = _names()
    assert len(names) >= MIN_NAMES, len(names)
    proc = subprocess.run([str(_binary())], input="\n".join(names) + "\n", capture_output=True,
                          text=True, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(names)
    suspect_mismatch, value_mismatch = [], []
    worst = 0.0
    for name, line in zip(names, lines):
        got_name, suspect, values = line.split("\t")
        assert got_name == name
        if (suspect == "1") != tunnel_features.suspect(name):
            suspect_mismatch.append(name)
        rust = np.array([float(v) for v in values.split()], dtype=np.float64)
        py = np.array(tunnel_features.features(name), dtype=np.float32).astype(np.float64)
        diff = float(np.abs(rust - py).max())
        worst = max(worst, diff)
        if diff > 1e-5:
            value_mismatch.append((name, diff))
    assert not suspect_mismatch, suspect_mismatch[:5]
    assert not value_mismatch, value_mismatch[:5]
    assert sum(tunnel_features.suspect(n) for n in names) > 1000, "the data has suspect names"


def test_known_names():
    assert tunnel_features.suspect("labowcwlabvnya30qfedax4gk0gtykda.bot.hackbiji.top")
    assert not tunnel_features.suspect("www.example.com")
    assert not tunnel_features.suspect("example.com")
    f = tunnel_features.features("ab12.cd.example.com")
    assert len(f) == tunnel_features.WIDTH
    assert f[0] == pytest.approx(0.07) and f[1] == pytest.approx(0.2)
    assert f[10] == pytest.approx(2 / 6)
