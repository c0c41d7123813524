"""The ``tunnel-v1`` feature set and the tunnel-suspect rule: the Python twin of
``dohguard_core::features::tunnel`` (core/src/features/tunnel.rs). Both read the subdomain
labels (left of the registered domain) of a normalised name; ``models/tests/
test_tunnel_features.py`` runs the two over real tunnel and benign names and requires the
same suspect decision and every value within 1e-5.
"""

from __future__ import annotations

import math

import numpy as np

from . import encoding

WIDTH = 15
NAME = "tunnel-v1"
FEATURE_NAMES = (
    "subdomain_length", "labels", "longest_label", "mean_label", "entropy", "digits", "hex",
    "vowels", "distinct", "consonant_run", "digit_letter_switches", "hex_labels",
    "base32_labels", "marks", "registered_domain_length",
)
SUSPECT_LABEL_LEN = 24
SUSPECT_SUBDOMAIN_LEN = 40
SUSPECT_ENTROPY_BITS = 3.0
SUSPECT_RANDOM_LABEL_LEN = 12

_VOWELS = frozenset("aeiou")
_HEX = frozenset("0123456789abcdef")
_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")


def subdomain(name: str) -> str:
    """What is left of the registered domain, without the joining dot ('' when nothing)."""
    rd = encoding.registered_domain_or_none(name)
    if rd is None or not name.endswith(rd):
        return ""
    head = name[: -len(rd)]
    return head[:-1] if head.endswith(".") else ""


def entropy_bits(text: str) -> float:
    """Shannon entropy in bits per character, terms added in byte order (as in Rust)."""
    if not text:
        return 0.0
    counts: dict[int, int] = {}
    for b in text.encode("ascii"):
        counts[b] = counts.get(b, 0) + 1
    n = float(len(text))
    h = 0.0
    for b in sorted(counts):
        p = counts[b] / n
        h -= p * math.log2(p)
    return h


def suspect(name: str) -> bool:
    """Whether a normalised name may carry a tunnel (see the Rust ``suspect``)."""
    sub = subdomain(name)
    if not sub:
        return False
    if len(sub) >= SUSPECT_SUBDOMAIN_LEN:
        return True
    return any(
        len(label) >= SUSPECT_LABEL_LEN
        or (len(label) >= SUSPECT_RANDOM_LABEL_LEN and entropy_bits(label) >= SUSPECT_ENTROPY_BITS)
        for label in sub.split(".")
    )


def features(name: str) -> list[float]:
    """The ``tunnel-v1`` values of a normalised name, in float64 (cast to float32 to feed
    the model); the order and scaling are documented on the Rust ``features``."""
    sub = subdomain(name)
    rd = encoding.registered_domain_or_none(name)
    rd_len = float(len(rd) if rd is not None else len(name))
    labels = sub.split(".") if sub else []
    chars = sub.replace(".", "")
    n = float(len(chars))

    def share(count: int, of: float) -> float:
        return count / of if of > 0 else 0.0

    digits = sum(c.isdigit() for c in chars)
    hexes = sum(c in _HEX for c in chars)
    letters = sum(c in _LOWER for c in chars)
    vowels = sum(c in _VOWELS for c in chars)
    distinct = len(set(chars))
    run = longest_run = 0
    for c in chars:
        run = run + 1 if (c in _LOWER and c not in _VOWELS) else 0
        longest_run = max(longest_run, run)
    switches = sum(chars[i].isdigit() != chars[i + 1].isdigit() for i in range(len(chars) - 1))
    hex_labels = sum(len(lb) >= 8 and all(c in _HEX for c in lb) for lb in labels)
    base32_labels = sum(len(lb) >= 16 and all(c in _BASE32 for c in lb) for lb in labels)
    marks = sum(c in "-_" for c in chars)
    longest = float(max((len(lb) for lb in labels), default=0))
    nl = float(len(labels))
    return [
        len(sub) / 100.0,
        nl / 10.0,
        longest / 63.0,
        n / nl / 63.0 if nl > 0 else 0.0,
        entropy_bits(chars) / 6.0,
        share(digits, n),
        share(hexes, n),
        share(vowels, float(letters)),
        share(distinct, n),
        longest_run / 20.0,
        share(switches, n),
        share(hex_labels, nl),
        share(base32_labels, nl),
        share(marks, n),
        rd_len / 63.0,
    ]


def matrix(names: list[str]) -> np.ndarray:
    """Features of many names as a float32 matrix (rows in order)."""
    return np.asarray([features(n) for n in names], dtype=np.float32).reshape(len(names), WIDTH)
