"""The ``lookalike-v1`` feature set (docs/contracts.md, contract 2): how much a registered
domain looks like an impersonation of a popular brand.

The Python twin of ``dohguard_core::features::lookalike`` (Rust, what the scorer runs). Both read
the same committed files in ``models/features/lookalike-v1/`` (README there gives their
provenance): ``brands.txt`` (registrable labels of a Tranco top list, in rank order),
``confusables.tsv`` (non-ASCII code point -> the ASCII letter or digit it imitates, from the
Unicode confusables data through the ``confusable_homoglyphs`` package) and ``lures.txt``
(words phishing names use to look official). ``models/tests/test_lookalike.py`` requires the
two sides to agree within 1e-5 per value over many real names.

The input is the model text of the card (the registered domain): its first label ``L`` is the
registrable label, the rest the public suffix. Derived strings:

- ``U``: ``L`` with an ``xn--`` label decoded from punycode (``L`` itself when undecodable);
- ``K`` (skeleton): ``U`` with every non-ASCII code point replaced by the ASCII it imitates
  (``?`` when the table has none);
- ``F``: ``K`` without hyphens; ``D`` ("de-leet"): ``F`` with ``rn`` -> ``m``, ``vv`` -> ``w``,
  then ``0 1 3 4 5 7 8`` -> ``o l e a s t b``.

A *brand* is a line of ``brands.txt`` (at least ``MIN_BRAND`` letters); its popularity is
``1 - ln(rank) / ln(N + 1)`` (1 for the top brand). A *neighbour* of a brand (``MIN_EDIT`` letters
or more) is a different label such that deleting at most one character from each gives the same
string (one insertion, omission, substitution or adjacent swap).

Three shape values describe ``L`` itself (vowel share of its letters, longest consonant run,
Shannon entropy in bits of its characters) and two its spelling under a character
bigram model of benign top-list labels (``bigrams.tsv``: mean and minimum ln P over the
bigrams of ``^L$``; a pair the table lacks counts as its lowest value), and the suffix is one-hot encoded over
``suffixes.txt`` (``SUFFIX_SLOTS - 1`` public suffixes, the last slot for any other): suffix
abuse differs by orders of magnitude between ``com`` and ``sbs``, and the model learns it from
the training names of each fit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAME = "lookalike-v1"
DATA_DIR = Path(__file__).resolve().parents[1] / "features" / NAME
MIN_BRAND = 4  # exact matches
MIN_CONTAINED = 5  # brands found inside a longer label
MIN_EDIT = 5  # brands whose one-edit neighbours count
SUFFIX_SLOTS = 256
VOWELS = frozenset("aeiouy")
LEET = {"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}

BASE_NAMES = (
    "label_length", "suffix_labels", "suffix_length", "hyphens", "digits",
    "idn", "punycode_invalid", "non_ascii", "confusable_chars", "unmapped_chars",
    "brand_exact", "brand_exact_popularity", "brand_exact_disguised",
    "brand_contained_length", "brand_contained_popularity", "brands_contained",
    "brand_contained_ratio", "deleet_contained_length",
    "brand_neighbour", "brand_neighbour_popularity",
    "lures", "brand_and_lure", "tokens", "longest_token",
    "vowel_ratio", "longest_consonant_run", "entropy", "bigram_mean_logp", "bigram_min_logp",
)
BASE_WIDTH = len(BASE_NAMES)
WIDTH = BASE_WIDTH + SUFFIX_SLOTS


@dataclass(frozen=True)
class Tables:
    brands: dict[str, int]  # label -> rank (1-based)
    n_brands: int
    deletions: dict[str, int]  # one-deletion variant of a brand (>= MIN_EDIT) -> best rank
    max_brand: int
    confusables: dict[str, str]  # non-ASCII char -> ASCII text
    lures: frozenset[str]
    max_lure: int
    suffixes: dict[str, int]  # suffix -> one-hot slot
    bigrams: dict[str, float]  # two characters -> ln P(second | first)
    bigram_unknown: float  # a pair with a character outside the table


def _lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _deletions(s: str) -> set[str]:
    return {s[:i] + s[i + 1:] for i in range(len(s))}


@functools.lru_cache(maxsize=1)
def tables(data_dir: Path = DATA_DIR) -> Tables:
    brands: dict[str, int] = {}
    for label in _lines(data_dir / "brands.txt"):
        brands.setdefault(label, len(brands) + 1)
    deletions: dict[str, int] = {}
    for label, rank in brands.items():
        if len(label) >= MIN_EDIT:
            for d in _deletions(label):
                if d not in deletions or rank < deletions[d]:
                    deletions[d] = rank
    confusables = {}
    for line in _lines(data_dir / "confusables.tsv"):
        cp, ascii_text = line.split("\t")[:2]
        confusables[chr(int(cp.removeprefix("U+"), 16))] = ascii_text
    lures = frozenset(_lines(data_dir / "lures.txt"))
    suffixes: dict[str, int] = {}
    for suffix in _lines(data_dir / "suffixes.txt")[: SUFFIX_SLOTS - 1]:
        suffixes.setdefault(suffix, len(suffixes))
    bigrams = {}
    for line in _lines(data_dir / "bigrams.tsv"):
        pair, logp = line.split("\t")[:2]
        bigrams[pair] = float(logp)
    return Tables(brands, len(brands), deletions, max(map(len, brands), default=0),
                  confusables, lures, max(map(len, lures), default=0), suffixes, bigrams,
                  min(bigrams.values(), default=0.0))


def feature_names(t: Tables | None = None) -> list[str]:
    t = t or tables()
    slots = sorted(t.suffixes, key=t.suffixes.get)
    return [*BASE_NAMES, *(f"suffix={s}" for s in slots),
            *(f"suffix=unused{i}" for i in range(len(slots), SUFFIX_SLOTS - 1)), "suffix=other"]


def popularity(rank: int, t: Tables) -> float:
    return 1.0 - math.log(rank) / math.log(t.n_brands + 1)


def decode_label(label: str) -> tuple[str, bool]:
    """(``U``, whether an ``xn--`` label failed to decode)."""
    if not label.startswith("xn--"):
        return label, False
    try:
        u = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return label, True
    return (u, False) if u else (label, True)  # nothing decoded (``xn---``) is invalid too


def skeleton(u: str, t: Tables) -> tuple[str, int, int]:
    """(``K``, confusable characters mapped, non-ASCII characters left unmapped)."""
    out, mapped, unmapped = [], 0, 0
    for c in u:
        if c.isascii():
            out.append(c)
        elif c in t.confusables:
            out.append(t.confusables[c])
            mapped += 1
        else:
            out.append("?")
            unmapped += 1
    return "".join(out), mapped, unmapped


def deleet(f: str) -> str:
    d = f.replace("rn", "m").replace("vv", "w")
    return "".join(LEET.get(c, c) for c in d)


def _contained(s: str, t: Tables) -> tuple[int, int, int]:
    """(length, rank, distinct count) of the longest brand (>= MIN_CONTAINED letters, best rank
    on ties) inside ``s`` other than ``s`` itself."""
    best_len, best_rank, found = 0, 0, set()
    n = len(s)
    for i in range(n):
        for j in range(i + MIN_CONTAINED, min(n, i + t.max_brand) + 1):
            if j - i == n:
                continue
            sub = s[i:j]
            rank = t.brands.get(sub)
            if rank is None:
                continue
            found.add(sub)
            if j - i > best_len or (j - i == best_len and rank < best_rank):
                best_len, best_rank = j - i, rank
    return best_len, best_rank, len(found)


def _neighbour_rank(k: str, t: Tables) -> int:
    """Best rank of a brand one edit from ``k`` (``k`` itself not a brand), 0 when none."""
    if len(k) < MIN_EDIT - 1 or k in t.brands:
        return 0
    best = 0

    def take(rank: int | None) -> None:
        nonlocal best
        if rank is not None and (best == 0 or rank < best):
            best = rank

    take(t.deletions.get(k))  # k is a brand minus one character
    for d in _deletions(k):
        if len(d) >= MIN_EDIT:
            take(t.brands.get(d))  # a brand plus one character
        take(t.deletions.get(d))  # one substitution or swap
    return best


def _lures(f: str, t: Tables) -> int:
    found = set()
    for i in range(len(f)):
        for j in range(i + 1, min(len(f), i + t.max_lure) + 1):
            if f[i:j] in t.lures:
                found.add(f[i:j])
    return len(found)


def features_of(text: str, t: Tables | None = None) -> list[float]:
    """The ``WIDTH`` values of one model text (a normalised registered domain)."""
    t = t or tables()
    label, _, suffix = text.partition(".")
    u, invalid = decode_label(label)
    k, mapped, unmapped = skeleton(u, t)
    f = k.replace("-", "")
    d = deleet(f)
    exact_rank = t.brands.get(k, 0) if len(k) >= MIN_BRAND else 0
    disguised = (exact_rank > 0 and u != k) or (
        exact_rank == 0 and len(d) >= MIN_BRAND and d in t.brands)
    c_len, c_rank, c_count = _contained(k, t)
    d_len = _contained(d, t)[0] if d != k else 0
    n_rank = _neighbour_rank(k, t)
    lures = _lures(f, t)
    branded = exact_rank > 0 or disguised or c_len > 0 or d_len > 0 or n_rank > 0
    tokens = [p for p in label.split("-") if p]
    letters = [c for c in label if c.isalpha()]
    vowels = sum(c in VOWELS for c in letters)
    run = longest = 0
    for c in label:
        run = run + 1 if c.isalpha() and c not in VOWELS else 0
        longest = max(longest, run)
    counts: dict[str, int] = {}
    for c in label:
        counts[c] = counts.get(c, 0) + 1
    entropy = -sum(n / len(label) * math.log2(n / len(label)) for n in counts.values())
    ends = f"^{label}$"
    logps = [t.bigrams.get(ends[i:i + 2], t.bigram_unknown) for i in range(len(ends) - 1)]
    onehot = [0.0] * SUFFIX_SLOTS
    onehot[t.suffixes.get(suffix, SUFFIX_SLOTS - 1)] = 1.0
    return [
        float(len(label)),
        float(suffix.count(".") + 1 if suffix else 0),
        float(len(suffix)),
        float(label.count("-")),
        float(sum(c.isdigit() for c in label)),
        float(label.startswith("xn--")),
        float(invalid),
        float(sum(not c.isascii() for c in u)),
        float(mapped),
        float(unmapped),
        float(exact_rank > 0),
        popularity(exact_rank, t) if exact_rank else 0.0,
        float(disguised),
        float(c_len),
        popularity(c_rank, t) if c_len else 0.0,
        float(c_count),
        c_len / max(len(k), 1),
        float(d_len),
        float(n_rank > 0),
        popularity(n_rank, t) if n_rank else 0.0,
        float(lures),
        float(branded and lures > 0),
        float(len(tokens)),
        float(max((len(p) for p in tokens), default=0)),
        vowels / max(len(letters), 1),
        float(longest),
        entropy,
        sum(logps) / len(logps),
        min(logps),
        *onehot,
    ]


def featurise(texts: list[str], t: Tables | None = None) -> np.ndarray:
    """``[len(texts), WIDTH]`` float32 matrix."""
    t = t or tables()
    out = np.zeros((len(texts), WIDTH), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = features_of(text, t)
    return out
