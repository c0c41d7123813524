"""Engineered, FANCI-style features of a registered domain, for the fast model family the
evaluation protocol (:mod:`dohguard_models.protocol`) trains once per fold.

The features read the registrable label (the registered domain without its public suffix),
so a family cannot be recognised by its top-level domain alone; two features describe the
suffix only by its shape (length, number of labels). Character n-gram log-likelihoods come
from a model fitted on *benign training names only*; dictionary coverage comes from a word
segmentation against Debian's ``wamerican`` list (``/usr/share/dict/words``, installed by
``scripts/setup.sh``; ``DOHGUARD_WORDS_FILE`` overrides the path).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from . import encoding

DEBIAN_WORDS = Path("/usr/share/dict/words")
VOWELS = frozenset("aeiouy")
HEX = frozenset("0123456789abcdef")
MAX_WORD = 20
MIN_WORD = 3

FEATURE_NAMES = (
    "length", "entropy", "digit_ratio", "vowel_ratio", "consonant_ratio", "hyphens",
    "distinct_ratio", "longest_consonant_run", "longest_digit_run", "longest_vowel_run",
    "hex_ratio", "all_hex", "cv_alternation", "repeat_ratio", "digit_letter_switches",
    "bigram_mean_logp", "bigram_min_logp", "trigram_mean_logp", "trigram_min_logp",
    "word_coverage", "words", "longest_word", "mean_word_length",
    "suffix_length", "suffix_labels", "name_labels",
)


class WordListMissing(FileNotFoundError):
    """The word list for the dictionary features is not installed."""


def load_words(path: Path | None = None) -> frozenset[str]:
    """Lower-case alphabetic words of at least ``MIN_WORD`` letters (possessives dropped)."""
    path = Path(path or os.environ.get("DOHGUARD_WORDS_FILE") or DEBIAN_WORDS)
    if not path.is_file():
        raise WordListMissing(
            f"word list {path} not found: install Debian's wamerican (scripts/setup.sh) or set "
            "DOHGUARD_WORDS_FILE"
        )
    words = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        w = line.strip().lower()
        if len(w) >= MIN_WORD and w.isascii() and w.isalpha():
            words.add(w)
    return frozenset(words)


def split_label(text: str) -> tuple[str, str]:
    """(registrable label, public suffix) of a registered domain such as ``shop.co.uk``."""
    suffix = encoding.public_suffix(text) or text.rsplit(".", 1)[-1]
    label = text[: -len(suffix) - 1] if text.endswith("." + suffix) else text
    return label, suffix


class CharNgramModel:
    """Add-one smoothed character bigram and trigram model with boundary marks."""

    def __init__(self, texts: list[str]):
        self.big, self.big_ctx = Counter(), Counter()
        self.tri, self.tri_ctx = Counter(), Counter()
        for t in texts:
            s = f"^^{t}$"
            for i in range(2, len(s)):
                self.big[s[i - 1 : i + 1]] += 1
                self.big_ctx[s[i - 1]] += 1
                self.tri[s[i - 2 : i + 1]] += 1
                self.tri_ctx[s[i - 2 : i]] += 1
        self.v = len(encoding.ALPHABET) + 2

    def logps(self, text: str) -> tuple[list[float], list[float]]:
        s = f"^^{text}$"
        bi, tri = [], []
        for i in range(2, len(s)):
            bi.append(math.log((self.big[s[i - 1 : i + 1]] + 1) / (self.big_ctx[s[i - 1]] + self.v)))
            tri.append(math.log((self.tri[s[i - 2 : i + 1]] + 1) / (self.tri_ctx[s[i - 2 : i]] + self.v)))
        return bi, tri


def segment(label: str, words: frozenset[str]) -> list[str]:
    """Dictionary words of a segmentation covering the most letters (fewest words on ties)."""
    n = len(label)
    # best[i] = (covered letters, -words) for label[:i], back[i] = start of the last word or -1
    best = [(0, 0)] * (n + 1)
    back = [-1] * (n + 1)
    for i in range(1, n + 1):
        best[i], back[i] = best[i - 1], -1
        for j in range(max(0, i - MAX_WORD), i - MIN_WORD + 1):
            if label[j:i] in words:
                cand = (best[j][0] + i - j, best[j][1] - 1)
                if cand > best[i]:
                    best[i], back[i] = cand, j
    out, i = [], n
    while i > 0:
        if back[i] < 0:
            i -= 1
        else:
            out.append(label[back[i] : i])
            i = back[i]
    return out[::-1]


def _longest_run(s: str, pred) -> int:
    best = cur = 0
    for c in s:
        cur = cur + 1 if pred(c) else 0
        best = max(best, cur)
    return best


def features_of(text: str, lm: CharNgramModel, words: frozenset[str]) -> list[float]:
    label, suffix = split_label(text)
    flat = label.replace(".", "")
    n = max(len(flat), 1)
    counts = Counter(flat)
    letters = [c for c in flat if c.isalpha()]
    nl = max(len(letters), 1)
    vowels = sum(1 for c in letters if c in VOWELS)
    digits = sum(1 for c in flat if c.isdigit())
    is_cons = lambda c: c.isalpha() and c not in VOWELS  # noqa: E731
    kinds = ["v" if c in VOWELS else "c" if c.isalpha() else "d" for c in flat]
    alternations = sum(1 for a, b in zip(kinds, kinds[1:]) if {a, b} == {"v", "c"})
    switches = sum(1 for a, b in zip(kinds, kinds[1:]) if (a == "d") != (b == "d"))
    bi, tri = lm.logps(flat)
    segs = [w for part in label.split("-") for w in segment(part.replace(".", ""), words)]
    covered = sum(len(w) for w in segs)
    return [
        len(flat),
        -sum(k / n * math.log2(k / n) for k in counts.values()),
        digits / n,
        vowels / nl,
        (len(letters) - vowels) / nl,
        flat.count("-"),
        len(counts) / n,
        _longest_run(flat, is_cons),
        _longest_run(flat, str.isdigit),
        _longest_run(flat, lambda c: c in VOWELS),
        sum(1 for c in flat if c in HEX) / n,
        float(all(c in HEX for c in flat)),
        alternations / max(len(flat) - 1, 1),
        sum(1 for a, b in zip(flat, flat[1:]) if a == b) / max(len(flat) - 1, 1),
        switches,
        sum(bi) / len(bi),
        min(bi),
        sum(tri) / len(tri),
        min(tri),
        covered / n,
        len(segs),
        max((len(w) for w in segs), default=0),
        covered / len(segs) if segs else 0.0,
        len(suffix),
        suffix.count(".") + 1,
        label.count(".") + 1,
    ]


def featurise(texts: list[str], lm: CharNgramModel, words: frozenset[str]) -> np.ndarray:
    """``[len(texts), len(FEATURE_NAMES)]`` float32 matrix."""
    out = np.zeros((len(texts), len(FEATURE_NAMES)), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = features_of(t, lm, words)
    return out
