"""The input encoding of docs/contracts.md, rule by rule."""

import pytest

from dohguard_models import encoding
from dohguard_models.encoding import MAX_LENGTH, PAD_ID, UNKNOWN_ID, encode


def test_ids_follow_the_alphabet_and_pad_left():
    ids = encode("ab.9")
    assert len(ids) == MAX_LENGTH
    assert ids[-4:] == [1, 2, 39 - 1, 36]  # a=1, b=2, '.'=38, '9'=36
    assert ids[:-4] == [PAD_ID] * (MAX_LENGTH - 4)


def test_unknown_characters_and_case():
    assert encode("A*_")[-3:] == [1, UNKNOWN_ID, 39]
    assert UNKNOWN_ID == 40


def test_truncation_keeps_the_end():
    text = "x" * 100 + "tail.com"
    ids = encode(text)
    assert len(ids) == MAX_LENGTH
    assert ids[-8:] == encode("tail.com")[-8:]
    assert PAD_ID not in ids


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mail.example.co.uk", "example.co.uk"),
        ("foo.github.io", "foo.github.io"),  # private section: own registered domain
        ("a.b.foo.github.io", "foo.github.io"),
        ("github.io", "github.io"),  # a public suffix itself: whole name
        ("com", "com"),
        ("www.wikipedia.org", "wikipedia.org"),
    ],
)
def test_registered_domain(name, expected):
    assert encoding.registered_domain(name) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [("WWW.Example.COM.", "www.example.com"), ("XN--Bcher-kva.de", "xn--bcher-kva.de"),
     ("_dmarc.Example.com", "_dmarc.example.com"), ("a" * 63 + ".com", "a" * 63 + ".com"),
     (".".join(["a" * 63] * 3 + ["b" * 61]) + ".", ".".join(["a" * 63] * 3 + ["b" * 61]))],
)
def test_normalise(raw, expected):
    assert encoding.normalise(raw) == expected


# docs/contracts.md "Names": the same rejections as dohguard_core::name::normalize.
@pytest.mark.parametrize("raw", [
    "", ".", "a..b", ".com", "example.com..", "bad name.com", "x" * 254, "http://x.com/",
    "bücher.de",  # IDN must arrive as punycode
    "*.cdn.example.net",  # a wildcard is not a query name
    "  spaced.org \n",  # whitespace is not trimmed
    "a" * 64 + ".com",  # label over 63 octets
    ".".join(["a" * 63] * 3 + ["b" * 62]),  # 254 octets
])
def test_normalise_rejects(raw):
    with pytest.raises(encoding.InvalidName):
        encoding.normalise(raw)
