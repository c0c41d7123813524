"""docs/contracts.md "Names": Python (training) and the Rust core (serving) give every name
in the data the same normalised name, registered domain and model input ids, from the same
public suffix list. Runs the real Rust code (core/examples/names.rs) over every distinct raw
name the data sources hold (millions) and every registered domain prepared from them.

The data folder (../shared/data, or DOHGUARD_DATA) is required: without it this test fails,
it does not skip, because a check that silently does not run agrees with anything.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dohguard_models import agreement, encoding

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DOHGUARD_DATA", REPO.parent / "shared" / "data"))
MIN_NAMES = 100_000  # the data holds over 2 million; fewer means the sources were not read


def _cargo() -> str:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is not on PATH: `source scripts/env.sh` first (the test runs "
                    "core/examples/names.rs)")
    return cargo


def _names_binary() -> Path:
    cargo = _cargo()
    proc = subprocess.run([cargo, "build", "-p", "dohguard-core", "--example", "names", "--locked"],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cargo build --example names failed:\n{proc.stderr[-3000:]}")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    binary = target / "debug" / "examples" / "names"
    if not binary.is_file():
        pytest.fail(f"{binary} not found after cargo build")
    return binary


@pytest.fixture(scope="module")
def report() -> dict:
    if not DATA.is_dir():
        pytest.fail(f"data folder {DATA} not found: the name agreement test needs the shared "
                    "data sets (set DOHGUARD_DATA to their folder)")
    return agreement.measure(DATA, _names_binary())


@pytest.mark.parametrize("section", ["raw_source_names", "prepared_registered_domains"])
def test_python_and_rust_agree_on_every_name(report, section):
    d = report[section]
    assert d["names"] >= MIN_NAMES, d["names"]
    examples = {case: d["examples"][case][:3] for case in d["by_case"]}
    assert d["disagreements"] == 0, (d["by_case"], examples)
    assert d["python_accepts"] == d["rust_accepts"] == d["both_accept"]
    assert d["both_accept"] > 0
    assert d["same_normalised_name"] == d["both_accept"]
    assert d["same_name_and_registered_domain"] == d["both_accept"]
    assert d["same_name_registered_domain_and_ids"] == d["both_accept"]


def test_python_reads_the_committed_list():
    if "DOHGUARD_PSL_FILE" in os.environ:
        pytest.fail("DOHGUARD_PSL_FILE is set: unset it, the test checks the committed list")
    assert encoding.psl_source().path == "models/psl/public_suffix_list.dat"
    assert encoding.PSL_FILE.is_file()
    assert encoding.psl_source().sha256 == hashlib.sha256(encoding.PSL_FILE.read_bytes()).hexdigest()


def test_the_edges_of_the_definition_agree():
    """Names the data lacks but the definition decides: each side accepts or rejects alike."""
    raws = ["WWW.Example.COM.", "example.com..", "bücher.de", "xn--bcher-kva.de",
            "*.cdn.example.net", " spaced.org", "_dmarc.example.com", "a" * 63 + ".com",
            "a" * 64 + ".com", ".".join(["a" * 63] * 3 + ["b" * 61]),
            ".".join(["a" * 63] * 3 + ["b" * 62]), "", ".", "com", "github.io",
            "foo.github.io", "x.example.internal", "a.b.ck", "www.ck", "x" * 200 + ".net"]
    py = [agreement.python_side(r) for r in raws]
    rs = agreement.rust_side(_names_binary(), raws)
    d = agreement.compare(raws, py, rs)
    assert d["disagreements"] == 0, d["examples"]
    assert d["python_accepts"] == 11, [r for r, p in zip(raws, py) if p[0] is not None]
