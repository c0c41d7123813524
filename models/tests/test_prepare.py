"""Data preparation on the committed fixture in tests/fixtures/data (same layout as
../shared/data): normalisation, de-duplication, label policy, caps, held-out families,
reproducible splits and the manifest."""

import csv
from pathlib import Path

import pytest
from conftest import FIXTURE_DATA

from dohguard_models import prepare
from dohguard_models.sources import CLEANING_SOURCES, SOURCES, SourceError, user_csv


def _fixture_sources():
    return [s for s in SOURCES if (FIXTURE_DATA / s.path).exists()]


def _prepare(cfg, **kw):
    return prepare.prepare(FIXTURE_DATA, cfg, sources=kw.pop("sources", _fixture_sources()), **kw)


def _cfg(**kw):
    base = dict(held_out_families=("symmi",), cap_per_family={"dga": 8, "phishing": 0,
                "malware": 0, "benign": 0}, family_caps={}, platform_min_hosts=50,
                val_fraction=0.2, test_fraction=0.2)
    base.update(kw)
    return prepare.PrepareConfig(**base)


@pytest.fixture(scope="module")
def prepared():
    return _prepare(_cfg())


def _by_text(p):
    return {r.text: r for r in p.rows}


def test_one_row_per_registered_domain(prepared):
    texts = [r.text for r in prepared.rows]
    assert len(texts) == len(set(texts))
    rows = _by_text(prepared)
    assert "example.com" in rows  # WWW.Example.COM. normalised, then its registered domain
    assert rows["foo.github.io"].kind == "phishing"  # private suffix: not github.io's label
    assert rows["github.io"].kind == "benign"


def test_label_policy_priorities(prepared):
    rows = _by_text(prepared)
    assert rows["google.com"].kind == "benign"  # beats umudga's 'cryptolocker' and docs.google.com
    assert rows["paypal-secure-login.com"].kind == "malware"  # malware beats phishing
    assert "freehost.example" not in rows  # 60 phishing hosts: a shared platform, dropped
    policy = prepared.manifest["label_policy"]
    assert "freehost.example" in policy["shared_platforms_dropped"]
    assert policy["label_conflicts_by_kinds"]["benign+dga+phishing"] == 1  # google.com


def test_invalid_rows_are_counted_not_kept(prepared):
    tranco = next(s for s in prepared.manifest["sources"] if s["path"].endswith("tranco_top_10k.csv"))
    assert tranco["rows_read"] == 15
    assert tranco["rows_invalid"] == 2  # an IP address and a name with a space
    assert "10.0.0.1" in tranco["invalid_examples"]


def test_family_caps_and_held_out(prepared):
    conficker = [r for r in prepared.rows if r.family == "conficker"]
    assert len(conficker) == 8  # 11 unique names (ddofm copies removed), capped at 8
    symmi = [r for r in prepared.rows if r.family == "symmi"]
    assert len(symmi) == 3 and all(r.split == "test" for r in symmi)
    assert prepared.manifest["capped_rows_removed"] == {"dga/conficker": 3}


def test_split_is_reproducible_and_by_registered_domain(prepared):
    again = _prepare(_cfg(), sources=list(reversed(_fixture_sources())))
    assert {(r.text, r.split) for r in again.rows} == {(r.text, r.split) for r in prepared.rows}
    assert again.manifest["split_sha256"] == prepared.manifest["split_sha256"]
    other_seed = _prepare(_cfg(seed=7))
    assert other_seed.manifest["split_sha256"] != prepared.manifest["split_sha256"]


def test_manifest_counts_and_hashes(prepared):
    m = prepared.manifest
    total = sum(n for split in m["counts"].values() for fams in split.values() for n in fams.values())
    assert total == len(prepared.rows)
    for s in m["sources"]:
        assert len(s["sha256"]) == 64
    assert m["public_suffix_list"]["path"]


def test_user_csv_overrides_public_labels(tmp_path):
    f = tmp_path / "org.csv"
    f.write_text("name,label,family\nmail.google.com,malicious,insider\nnew-benign.example,0,\n")
    p = _prepare(_cfg(), user_csvs=[f])
    rows = _by_text(p)
    assert rows["google.com"].kind == "dga" and rows["google.com"].family == "insider"
    assert rows["new-benign.example"].label == 0


@pytest.mark.parametrize(
    "content,message",
    [("domain,label\nx.com,1\n", "header must start with 'name,label'"),
     ("name,label\nx.com,1\ny.com,maybe\n", ":3: label 'maybe'"),
     ("name,label\nonlyname\n", ":2: expected 'name,label'")],
)
def test_bad_user_csv_is_a_clear_error(tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(SourceError, match=message):
        list(user_csv(f))


def test_write_rows_round_trip(prepared, tmp_path):
    out = tmp_path / "rows.csv"
    prepare.write_rows(prepared.rows, out)
    back = list(csv.DictReader(open(out)))
    assert len(back) == len(prepared.rows)
    assert {b["text"] for b in back} == {r.text for r in prepared.rows}
    assert Path(out).read_text().startswith("text,label,kind,family,split\n")


def test_benign_cleaning_rule(prepared):
    rows = _by_text(prepared)
    # maltrail names the registered domain itself: sinkhole file and malware trail
    assert "sinkholed-botnet.example" not in rows
    assert "c2-panel.example" not in rows
    # only a DGA list names it and it is not a recent Tranco name
    assert "dga-named.example" not in rows
    # a host under it (host.under-platform.example) or a URL does not count
    assert rows["under-platform.example"].kind == "benign"
    # Tranco exception: only a DGA list (dga_unlabelled) names it
    assert rows["netflix.com"].kind == "benign"
    clean = prepared.manifest["label_policy"]["benign_cleaning"]
    assert clean["applied"] is True
    assert clean["removed"] == 3
    assert clean["removed_by_benign_source"] == {"umudga_legit": 3}
    assert clean["removed_by_reason"] == {"dga_list": 1, "maltrail_malware": 1,
                                          "maltrail_sinkhole": 1}
    assert clean["kept_by_tranco_exception"] == ["google.com", "netflix.com"]
    assert len(clean["sources"]) == len(CLEANING_SOURCES)


def test_benign_cleaning_can_be_turned_off():
    rows = _by_text(_prepare(_cfg(clean_benign=False)))
    assert rows["sinkholed-botnet.example"].kind == "benign"
    assert rows["dga-named.example"].kind == "benign"


def test_missing_cleaning_source_is_an_error(tmp_path):
    from dohguard_models.sources import Source, maltrail_tar

    with pytest.raises(SourceError, match="source file missing"):
        _prepare(_cfg(), cleaning_sources=[Source("maltrail/nope.tar.gz", maltrail_tar)])


def test_holdout_benign_excludes_every_listed_name():
    from dohguard_models.sources import Source, rank_csv

    tranco = "tranco/tranco_top_10k.csv"
    p = _prepare(_cfg(), sources=[s for s in _fixture_sources() if s.path != tranco],
                 holdout_benign=[Source(tranco, rank_csv("benign", "tranco_new"))])
    texts = {r.text for r in p.rows}
    assert "facebook.com" in p.holdout_benign and "facebook.com" not in texts
    assert "google.com" not in p.holdout_benign  # listed by umudga (as cryptolocker)
    assert "wikipedia.org" not in p.holdout_benign  # umudga's legit list: used in training
    assert "netflix.com" in p.holdout_benign  # Tranco exception of the cleaning rule
    assert not set(p.holdout_benign) & texts
    assert p.manifest["holdout_benign"]["kept_not_in_any_other_source"] == len(p.holdout_benign)
