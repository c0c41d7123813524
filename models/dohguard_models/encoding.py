"""The model input contract (docs/contracts.md, section 2): name normalisation, the
registered-domain rule and the character-to-id encoding.

This module is the Python twin of the Rust scorer's encoder; ``models/fixtures/encoding.json``
pins both to the same ids. Registered domains come from the public suffix list with its
private section (so ``foo.github.io`` is its own registered domain), read through the
maintained ``publicsuffixlist`` package reading ``models/psl/public_suffix_list.dat``: the list
the Rust core's ``psl`` crate compiles in, so training and serving split names identically
(``DOHGUARD_PSL_FILE`` overrides it for experiments).
"""

from __future__ import annotations

import functools
import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from publicsuffixlist import PublicSuffixList

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._"
PAD_ID = 0
UNKNOWN_ID = len(ALPHABET) + 1  # 40: one past the last alphabet id
MAX_LENGTH = 64
VOCAB_SIZE = UNKNOWN_ID + 1
MAX_LABEL_LEN = 63
MAX_NAME_LEN = 253
# The list the Rust core's `psl` crate compiles in, exported byte for byte (models/psl/README.md).
REPO_DIR = Path(__file__).resolve().parents[2]
PSL_FILE = REPO_DIR / "models" / "psl" / "public_suffix_list.dat"

_CHAR_IDS = {c: i + 1 for i, c in enumerate(ALPHABET)}
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


class InvalidName(ValueError):
    """A string that cannot be a DNS query name (empty, too long, bad characters)."""


@dataclass(frozen=True)
class PslSource:
    """Which public suffix list is in use, recorded in the manifest and the card."""

    path: str
    sha256: str


@functools.lru_cache(maxsize=1)
def _psl() -> tuple[PublicSuffixList, PslSource, str]:
    """The one public suffix list: :data:`PSL_FILE` (the Rust crate's), or the file named by
    ``DOHGUARD_PSL_FILE`` for experiments. A missing file is an error, never a fallback to
    another list: training and serving must split names the same way."""
    override = os.environ.get("DOHGUARD_PSL_FILE")
    path = Path(override) if override else PSL_FILE
    if not path.is_file():
        what = f"DOHGUARD_PSL_FILE={override}" if override else str(path)
        raise FileNotFoundError(f"public suffix list {what} does not exist")
    data = path.read_bytes()
    psl = PublicSuffixList(source=data.decode("utf-8").splitlines())
    try:  # recorded repo-relative, so manifests do not carry a checkout's path
        shown = str(path.resolve().relative_to(REPO_DIR))
    except ValueError:
        shown = str(path)
    return psl, PslSource(shown, hashlib.sha256(data).hexdigest()), data.decode("utf-8")


def psl_source() -> PslSource:
    return _psl()[1]


def normalise(raw: str) -> str:
    """Normalise a query name exactly as ``dohguard_core::name::normalize`` does
    (docs/contracts.md, "Names"): one trailing dot removed, ASCII lower case.

    Only ASCII letters, digits, ``-``, ``_`` and ``.`` are accepted: internationalised names
    must already be punycode (``xn--``), a ``*.`` wildcard is not a query name, and labels
    are 1..=63 octets in a name of at most 253. Raises :class:`InvalidName` otherwise.
    """
    name = raw[:-1] if raw.endswith(".") else raw
    if not name:
        raise InvalidName(f"name is empty: {raw!r}")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_LEN:
        raise InvalidName(f"longer than {MAX_NAME_LEN} octets: {raw[:80]!r}")
    bad = next((c for c in name if c not in _NAME_CHARS), None)
    if bad is not None:
        raise InvalidName(f"character {bad!r} is not allowed in a DNS name: {raw!r}")
    for label in name.split("."):
        if not label:
            raise InvalidName(f"empty label in {raw!r}")
        if len(label) > MAX_LABEL_LEN:
            raise InvalidName(f"label longer than {MAX_LABEL_LEN} octets in {raw!r}")
    return name.lower()


@functools.lru_cache(maxsize=1)
def _rules() -> tuple[frozenset[str], frozenset[str]]:
    """(every rule of the list, parents of ``*.`` rules that are not rules themselves)."""
    lines = (ln.strip() for ln in _psl()[2].splitlines())
    rules = frozenset(ln for ln in lines if ln and not ln.startswith("//"))
    bases = frozenset(r[2:] for r in rules if r.startswith("*.")) - rules
    return rules, bases


def public_suffix(name: str) -> str:
    """The public suffix of a normalised name by the list's algorithm (publicsuffix.org/list):
    the prevailing rule's match, the last label when no rule matches.

    ``publicsuffixlist`` agrees except for the parent of a ``*.`` rule that is no rule itself:
    it counts ``nagoya.jp`` (``*.nagoya.jp``) as a public suffix, the algorithm and the Rust
    ``psl`` crate do not, so that case is decided here."""
    suffix = _psl()[0].publicsuffix(name)
    rules, bases = _rules()
    if suffix != name or name not in bases:
        return suffix
    parent = name.partition(".")[2]
    if not parent:
        return name  # one label: the default rule `*`
    if f"*.{parent}" in rules:
        return parent if f"!{name}" in rules else name
    return public_suffix(parent)  # only rules shorter than the name match it


def registered_domain_or_none(name: str) -> str | None:
    """The PSL registered domain (private section included) of a normalised name: its public
    suffix plus one label, ``None`` when the name is itself a public suffix. Equal to
    ``dohguard_core::name::registered_domain`` (docs/contracts.md, "Names")."""
    suffix = public_suffix(name)
    if suffix == name:
        return None
    head = name[: -len(suffix) - 1]
    return f"{head.rpartition('.')[2]}.{suffix}"


def registered_domain(name: str) -> str:
    """PSL registered domain (private section included), or the whole name when the name
    is itself a public suffix (what the model reads, docs/contracts.md section 2)."""
    return registered_domain_or_none(name) or name


def model_text(name: str, text: str = "registered_domain") -> str:
    """The text the model reads for ``name`` (card field ``input.text``)."""
    if text == "registered_domain":
        return registered_domain(name)
    if text == "name":
        return name
    raise ValueError(f"unknown input.text {text!r}")


def encode(text: str, max_length: int = MAX_LENGTH) -> list[int]:
    """Ids for one text: lower-case, map, keep the last ``max_length``, left-pad."""
    ids = [_CHAR_IDS.get(c, UNKNOWN_ID) for c in text.lower()]
    ids = ids[-max_length:]
    return [PAD_ID] * (max_length - len(ids)) + ids


def encode_batch(texts: list[str], max_length: int = MAX_LENGTH) -> np.ndarray:
    """``[len(texts), max_length]`` int64 matrix of :func:`encode` rows."""
    out = np.zeros((len(texts), max_length), dtype=np.int64)
    for row, text in enumerate(texts):
        out[row] = encode(text, max_length)
    return out


def is_ip_address(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
