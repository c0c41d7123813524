"""The evaluation protocol on a tiny synthetic data set: folds never share a family, a left-out
style contributes no training name, thresholds come from validation benign names only, the
shipped CNN is only credited with families it never saw; plus the features and the CLI."""

import random

import numpy as np
import pytest

from dohguard_models import cli, features, metrics, protocol
from dohguard_models.styles import FAMILY_STYLE, STYLES

WORDS = frozenset("blue river shop cloud news travel home garden photo music book city green "
                  "smart data health food market sport game learn south stroke address bike "
                  "neck various written party number".split())
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _gen(family: str, rng: random.Random) -> str:
    style = FAMILY_STYLE[family][0]
    if style == "random_letters":
        body = "".join(rng.choice(LETTERS) for _ in range(rng.randint(10, 16)))
    elif style == "hex_digit":
        body = "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(16, 32)))
    elif style == "cv_syllable":
        body = "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou")
                       for _ in range(rng.randint(4, 6)))
    else:
        body = "".join(rng.choice(sorted(WORDS)) for _ in range(rng.randint(2, 4)))
    return f"{body}.{rng.choice(['com', 'net', 'ru'])}"


FAMILIES = ("conficker", "cryptolocker", "tinba", "gameover", "tinynuke", "pushdo", "symmi",
            "matsnu", "suppobox")


def _names(seed=1, n_family=60, n_benign=600, small=("simda",)) -> protocol.Names:
    rng = random.Random(seed)
    text, kind, fam, split = [], [], [], []

    def add(t, k, f, s):
        text.append(t), kind.append(k), fam.append(f), split.append(s)

    seen = set()
    for i in range(n_benign):
        t = "".join(rng.choice(sorted(WORDS)) for _ in range(2)) + f"{i}.org"
        add(t, "benign", "alexa", ("train", "val", "test")[i % 3])
    for f in FAMILIES + tuple(small):
        n = n_family if f not in small else 5
        for i in range(n):
            t = _gen(f, rng)
            if t in seen:
                continue
            seen.add(t)
            add(t, "dga", f, "test" if i % 5 == 0 else "val" if i % 5 == 1 else "train")
    for i in range(50):
        add(f"externalsite{i}.com", "external", "tranco_2026", "test")
    return protocol.Names(text, np.array(kind), np.array(fam), np.array(split))


CFG = protocol.ProtocolConfig(min_family=30, folds=3, max_iter=20, per_family=1000)


@pytest.fixture(scope="module")
def report():
    return protocol.evaluate_all(_names(), {"old": {}, "new": {}, "undated": {}}, CFG,
                                 words=WORDS, progress=lambda m: None)


def test_assign_folds_puts_every_family_in_one_balanced_group():
    counts = {"a": 100, "b": 90, "c": 50, "d": 40, "e": 10}
    groups = protocol.assign_folds(counts, 2)
    assert sorted(f for g in groups for f in g) == sorted(counts)
    sizes = [sum(counts[f] for f in g) for g in groups]
    assert max(sizes) - min(sizes) <= 10


def test_leave_family_out_folds_never_share_a_family(report):
    lofo = report["leave_family_out"]
    held = [f for fold in lofo["folds"] for f in fold["held_out"]]
    assert sorted(held) == sorted(lofo["eligible"])  # each eligible family held out once
    assert len(held) == len(set(held))
    assert "simda" not in lofo["eligible"]  # 5 names < min_family: trained on, not reported
    for fold in lofo["folds"]:
        assert not set(fold["held_out"]) & set(fold["trained_families"])
        assert "simda" in fold["trained_families"]
    assert set(lofo["per_family"]) == set(lofo["eligible"])
    assert 0.0 <= lofo["macro_recall_at_1e-3"] <= 1.0


def test_leave_style_out_removes_the_whole_style(report):
    styles = report["leave_style_out"]["styles"]
    assert set(styles) == set(STYLES)
    for style, d in styles.items():
        trained = set(d["fold"]["trained_families"])
        assert not {f for f in trained if FAMILY_STYLE[f][0] == style}
        assert set(d["fold"]["recall"]) == set(d["reported_families"])


def test_thresholds_come_from_validation_benign_names_only():
    names = _names()
    # test benign names that look generated: chosen on test, the threshold would give them
    # an FPR of at most 1e-3; chosen on validation, they are mostly flagged.
    rng = random.Random(9)
    test_b = (names.kind == "benign") & (names.split == "test")
    for i in np.nonzero(test_b)[0]:
        names.text[i] = "".join(rng.choice("qxzjkvw") for _ in range(24)) + ".com"
    x = np.array([[len(t)] for t in names.text], dtype=np.float32)
    fit = lambda x_, y_: (lambda z: z[:, 0] / 100.0)  # noqa: E731  score = length / 100
    fold = protocol.run_fold("f", names, x, fit, ["matsnu"], {"matsnu"})
    val_scores = x[(names.kind == "benign") & (names.split == "val"), 0] / 100.0
    assert fold.thresholds == {"1e-3": metrics.threshold_at_fpr(val_scores, 1e-3),
                               "1e-4": metrics.threshold_at_fpr(val_scores, 1e-4)}
    assert fold.test_benign_fpr["1e-3"] > 0.5


def test_goal_check_compares_against_the_issue_goals(report):
    g = report["goal_check"]["fast_model"]
    for goal in protocol.GOALS:
        assert goal in g and f"{goal}_met" in g


def test_cnn_is_credited_only_for_families_it_never_saw(report):
    names = _names()
    scores = np.array([0.99 if k == "dga" else 0.01 for k in names.kind], dtype=np.float32)
    manifest = {"config": {"seed": CFG.seed, "val_fraction": 0.1, "test_fraction": 0.1,
                           "held_out_families": ["symmi"]},
                "counts": {"train": {"dga": {f: 10 for f in FAMILIES if f != "symmi"}}}}
    c = protocol.cnn_evaluation(names, scores, manifest, report["leave_family_out"], CFG.seed)
    assert c["unseen_families"] == ["symmi"]
    assert c["per_family"]["matsnu"]["seen_in_cnn_training"] is True
    # names in the CNN's training split (salted hash) are never scored for a seen family
    n_matsnu = int(((names.kind == "dga") & (names.family == "matsnu")).sum())
    assert c["per_family"]["matsnu"]["count"] < n_matsnu
    assert c["per_family"]["symmi"]["count"] == int(
        ((names.kind == "dga") & (names.family == "symmi")).sum())
    with pytest.raises(protocol.ProtocolError, match="seed"):
        protocol.cnn_evaluation(names, scores, manifest, report["leave_family_out"], 7)


def test_report_files_are_written(report, tmp_path):
    report["data"] = {"benign_cleaning": {"rule": "r", "removed": 0},
                      "families_not_in_style_table": {"others": 3}}
    report["run"] = {"seconds": 1.0, "machine": "test", "command": "pytest", "config": {}}
    protocol.write_report(tmp_path, report)
    md = (tmp_path / "report.md").read_text()
    assert "## Leave-family-out" in md and "## Leave-style-out" in md
    for f in ("protocol.json", "lofo_recall.png", "loso_recall.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_features_segment_words_and_read_the_label_only():
    assert features.segment("southstrokeaddressbikeneck", WORDS) == [
        "south", "stroke", "address", "bike", "neck"]
    assert features.split_label("shop.co.uk") == ("shop", "co.uk")
    lm = features.CharNgramModel(["bluegarden", "citynews"])
    a = dict(zip(features.FEATURE_NAMES, features.features_of("variouswritten.net", lm, WORDS)))
    b = dict(zip(features.FEATURE_NAMES, features.features_of("xqzvkjwpt.net", lm, WORDS)))
    assert a["word_coverage"] == 1.0 and b["word_coverage"] == 0.0
    assert a["bigram_mean_logp"] > b["bigram_mean_logp"]


def test_missing_word_list_is_a_clear_error(tmp_path):
    with pytest.raises(features.WordListMissing, match="wamerican"):
        features.load_words(tmp_path / "nope")


@pytest.mark.parametrize("argv,message", [
    (["protocol", "--data", "/nonexistent/data"], "data folder"),
    (["protocol", "--min-family", "0"], "--min-family must be at least 1"),
])
def test_protocol_cli_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_name_agreement_counts_each_kind_of_disagreement():
    from dohguard_models import agreement

    names = ["Example.COM.", "padded.com", "*.wild.com", "ok.github.io", "bad name", "x.com"]
    py = [agreement.python_side(n) for n in names]
    assert py[0][:2] == ("example.com", "example.com")
    assert py[2][0] is None and "'*'" in py[2][2]  # a wildcard is rejected
    ids = py[0][3]
    assert ids is not None and len(ids.split()) == 64
    # Made-up Rust answers, one per kind of disagreement (the real ones agree).
    rs = [("example.com", "example.com", "", ids), (None, None, "character ' '", None),
          ("wild.com", "wild.com", "", "0"), ("ok.github.io", "github.io", "", py[3][3]),
          (None, None, "x", None), ("x.com", "x.com", "", "1 2")]
    r = agreement.compare(names, py, rs)
    assert r["names"] == 6 and r["both_accept"] == 3 and r["same_normalised_name"] == 3
    assert r["same_name_and_registered_domain"] == 2
    assert r["same_name_registered_domain_and_ids"] == 1
    assert r["by_case"] == {"python accepts, rust rejects (character ' ')": 1,
                            "python rejects (character '*' is not allowed in a DNS name), "
                            "rust accepts": 1,
                            "same name, different registered domain": 1,
                            "same name and registered domain, different ids": 1}
    assert r["disagreements"] == 4


def test_protocol_cli_missing_word_list_fails_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOHGUARD_WORDS_FILE", str(tmp_path / "no-words"))
    assert cli.main(["protocol", "--out", str(tmp_path / "out")]) == 2
    assert "wamerican" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_build_names_samples_and_leaves_out_families_without_a_style():
    from dohguard_models import prepare

    rows = [prepare.Row(f"b{i}.com", "benign", "alexa", ("train", "val", "test")[i % 3])
            for i in range(30)]
    rows += [prepare.Row(f"c{i}.com", "dga", "conficker", "train") for i in range(10)]
    rows += [prepare.Row("mix.com", "dga", "others", "train")]
    cfg = protocol.ProtocolConfig(per_family=4, benign_train=5)
    names, left = protocol.build_names(prepare.Prepared(rows, {}, ["new.com"]), cfg)
    assert left == {"families_not_in_style_table": {"others": 1}}
    assert "mix.com" not in names.text
    assert ((names.kind == "dga") & (names.family == "conficker")).sum() == 4
    assert ((names.kind == "benign") & (names.split == "train")).sum() == 5
    assert ((names.kind == "benign") & (names.split == "val")).sum() == 10  # all kept
    assert list(names.text[i] for i in np.nonzero(names.kind == "external")[0]) == ["new.com"]
    with pytest.raises(protocol.ProtocolError, match="val and test"):
        protocol.build_names(prepare.Prepared(rows[30:], {}, []), cfg)
