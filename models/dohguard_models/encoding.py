"""The model input contract (docs/contracts.md, section 2): name normalisation, the
registered-domain rule and the character-to-id encoding.

This module is the Python twin of the Rust scorer's encoder; ``models/fixtures/encoding.json``
pins both to the same ids. Registered domains come from the public suffix list with its
private section (so ``foo.github.io`` is its own registered domain), read through the
maintained ``publicsuffixlist`` package: Debian's ``public_suffix_list.dat`` by default, the
file named by ``DOHGUARD_PSL_FILE`` if set, or the package's bundled copy when neither exists.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from publicsuffixlist import PublicSuffixList

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._"
PAD_ID = 0
UNKNOWN_ID = len(ALPHABET) + 1  # 40: one past the last alphabet id
MAX_LENGTH = 64
VOCAB_SIZE = UNKNOWN_ID + 1
DEBIAN_PSL = Path("/usr/share/publicsuffix/public_suffix_list.dat")

_CHAR_IDS = {c: i + 1 for i, c in enumerate(ALPHABET)}


class InvalidName(ValueError):
    """A string that cannot be a DNS query name (empty, too long, bad characters)."""


@dataclass(frozen=True)
class PslSource:
    """Which public suffix list is in use, recorded in the manifest and the card."""

    path: str
    sha256: str


@functools.lru_cache(maxsize=1)
def _psl() -> tuple[PublicSuffixList, PslSource]:
    override = os.environ.get("DOHGUARD_PSL_FILE")
    path = Path(override) if override else DEBIAN_PSL
    if path.is_file():
        data = path.read_bytes()
        return PublicSuffixList(source=data.decode("utf-8").splitlines()), PslSource(
            str(path), hashlib.sha256(data).hexdigest()
        )
    if override:
        raise FileNotFoundError(f"DOHGUARD_PSL_FILE={override} does not exist")
    # Fall back to the copy bundled with the package (machines without Debian's list).
    return PublicSuffixList(), PslSource("publicsuffixlist (bundled)", "")


def psl_source() -> PslSource:
    return _psl()[1]


def normalise(raw: str) -> str:
    """Normalise a query name as the filter does: trim, lower-case, drop the trailing dot.

    Unicode names become punycode (IDNA); a leading ``*.`` wildcard is removed.
    Raises :class:`InvalidName` for strings that cannot be DNS names.
    """
    name = raw.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as err:
            raise InvalidName(f"not an IDNA-encodable name: {raw!r}") from err
    if not name or len(name) > 253:
        raise InvalidName(f"empty or longer than 253 characters: {raw!r}")
    if ".." in name or name.startswith("."):
        raise InvalidName(f"empty label in {raw!r}")
    if any(c not in _CHAR_IDS for c in name):
        raise InvalidName(f"character outside [a-z0-9-._] in {raw!r}")
    return name


def registered_domain(name: str) -> str:
    """PSL registered domain (private section included), or the whole name when the name
    is itself a public suffix or has no registrable part."""
    rd = _psl()[0].privatesuffix(name)
    return rd if rd else name


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
