"""Readers for the public data sets in ``../shared/data`` and for user CSV files.

Each reader turns one file into :class:`RawRecord` rows (raw name, kind, family) and
nothing more: normalisation, label policy, de-duplication and splitting happen in
:mod:`dohguard_models.prepare`. The :data:`SOURCES` table is the single place that says which
file is read as which kind; its comments give the reason when a file is left out.
"""

from __future__ import annotations

import csv
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

KINDS = ("benign", "dga", "phishing", "malware")
MALICIOUS_KINDS = ("dga", "phishing", "malware")

# Several sources spell one DGA family differently; one canonical name per family keeps
# held-out families honestly held out (no alias of a held-out family slips into training).
FAMILY_ALIASES = {
    "zeus": "gameover",
    "new_goz": "gameover",
    "newgoz": "gameover",
    "post-tovar-goz": "gameover",
    "goz": "gameover_p2p",
    "cryptolocke": "cryptolocker",
    "pykspa_v2_fake": "pykspa",
    "pykspa_v2_real": "pykspa",
    "others_dga": "others",
}


def canonical_family(family: str) -> str:
    family = family.strip().lower()
    return FAMILY_ALIASES.get(family, family)


@dataclass(frozen=True)
class RawRecord:
    raw: str
    kind: str
    family: str


class SourceError(ValueError):
    """A source file that cannot be read as declared (bad row in a user CSV, missing file)."""


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def one_per_line(kind: str, family: str) -> Callable[[Path], Iterator[RawRecord]]:
    """Plain lists; ddofm's tab-separated lines keep their first column."""

    def read(path: Path) -> Iterator[RawRecord]:
        for line in _lines(path):
            yield RawRecord(line.split("\t")[0].split(",")[0], kind, family)

    return read


def rank_csv(kind: str, family: str) -> Callable[[Path], Iterator[RawRecord]]:
    """``rank,domain`` lists, or one domain per line with an optional ``Domain`` header."""

    def read(path: Path) -> Iterator[RawRecord]:
        for line in _lines(path):
            name = line.split(",")[-1]
            if name.lower() != "domain":
                yield RawRecord(name, kind, family)

    return read


def dga_file_named_by_family(path: Path) -> Iterator[RawRecord]:
    family = canonical_family(path.stem)
    yield from one_per_line("dga", family)(path)


def dds_csv(path: Path) -> Iterator[RawRecord]:
    for row in csv.reader(_lines(path)):
        if len(row) >= 2:
            yield RawRecord(row[0], "dga", canonical_family(row[1]))


def umudga_csv(path: Path) -> Iterator[RawRecord]:
    for row in csv.DictReader(_lines(path), fieldnames=["domain", "label"]):
        if row["domain"] == "domain":
            continue
        label = row["label"].strip().lower()
        if label == "legit":
            yield RawRecord(row["domain"], "benign", "umudga_legit")
        else:
            yield RawRecord(row["domain"], "dga", canonical_family(label))


def netlab_dga(path: Path) -> Iterator[RawRecord]:
    for line in _lines(path):
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0]:
            yield RawRecord(cols[1], "dga", canonical_family(cols[0]))


def chrmor_csv(path: Path) -> Iterator[RawRecord]:
    for row in csv.reader(_lines(path)):
        if len(row) != 3:
            continue
        cls, family, domain = row
        if cls == "legit":
            yield RawRecord(domain, "benign", "alexa")
        elif cls == "dga":
            yield RawRecord(domain, "dga", canonical_family(family))


def bambenek(family: str) -> Callable[[Path], Iterator[RawRecord]]:
    def read(path: Path) -> Iterator[RawRecord]:
        for line in _lines(path):
            yield RawRecord(line.split(",")[0], "dga", family)

    return read


def blackbook_csv(path: Path) -> Iterator[RawRecord]:
    for row in csv.DictReader(_lines(path)):
        yield RawRecord(row["Domain"], "malware", (row.get("Malware") or "unknown").lower())


def alexa_1m_tar(path: Path) -> Iterator[RawRecord]:
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            fh = tar.extractfile(member)
            if fh is None:
                continue
            for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
                if line.strip():
                    yield RawRecord(line.strip(), "benign", "alexa_1m")


@dataclass(frozen=True)
class Source:
    path: str  # relative to the data folder
    read: Callable[[Path], Iterator[RawRecord]]


_DGA_ANDREWAEVA = [
    "conficker", "cryptolocker", "goz", "matsnu", "new_goz", "pushdo", "ramdo", "rovnix",
    "tinba", "zeus", "others_dga",
]
# ddofm files that only copy andrewaeva's are still listed: de-duplication removes the copies.
_DGA_DDOFM = [
    "Zeus", "abcbot", "antavmu", "blackhole", "ccleaner", "conficker", "copperstealer",
    "cryptolocker", "dircrypt", "emotet", "gameover", "goz", "madmax", "matsnu", "mirai",
    "monerominer", "murofet", "necro", "necurs", "new_goz", "others_dga", "pushdo", "ramdo",
    "ramnit", "ranbyus", "symmi", "tinba", "tinynuke", "tofsee", "xshellghost",
]

SOURCES: list[Source] = [
    *(Source(f"andrewaeva_dga/{f}.txt", dga_file_named_by_family) for f in _DGA_ANDREWAEVA),
    *(Source(f"ddofm_dga/{f}.txt", dga_file_named_by_family) for f in _DGA_DDOFM),
    Source("andrewaeva_dga/dds-malicious-domains.csv", dds_csv),
    Source("umudga_subset/dataset.csv", umudga_csv),
    Source("netlab360_2017/dga.txt", netlab_dga),
    Source("chrmor_sample/dga_domains_sample.csv", chrmor_csv),
    Source("banjori/banjori.txt", one_per_line("dga", "banjori")),
    Source("bambenek_2017/dga-cryptolocke-1000.txt", bambenek("cryptolocker")),
    Source("bambenek_2017/dga-post-tovar-goz-1000.txt", bambenek("gameover")),
    # dga_unlabelled/ is left out as labels: with no family it could leak held-out families
    # (it is read for benign cleaning only: CLEANING_SOURCES).
    # Benign. The OpenDNS lists (in the DGA folders) are left out: ranked by query volume or
    # sampled from queries, they hold botnet traffic (qljqtnmqx.cn, jmkdxyk.ws, grxhhiqszb.biz)
    # that poisons the benign label; the ranked lists below cover the same popular sites.
    Source("tranco/tranco_top_50k.csv", rank_csv("benign", "tranco")),
    Source("tranco/tranco_top_10k.csv", rank_csv("benign", "tranco")),
    Source("tranco/tranco_top_100k.csv", rank_csv("benign", "tranco")),
    Source("tranco/tranco_top-10k_2025-06.csv", rank_csv("benign", "tranco")),
    Source("netlab360_2017/top-1m.csv", rank_csv("benign", "alexa")),
    Source("alexa_legacy/alexa_top_10w.txt", rank_csv("benign", "alexa")),
    Source("alexa_legacy/AlexaTop1M_NoSeparate.tar.gz", alexa_1m_tar),
    # Phishing: the romainmarcoux full lists are the union of its sources/ folder.
    Source("romainmarcoux_phishing/full-domains-aa.txt", one_per_line("phishing", "romainmarcoux")),
    Source("romainmarcoux_phishing/full-domains-ab.txt", one_per_line("phishing", "romainmarcoux")),
    Source("ddofm_blocklists/MetaMask.txt", one_per_line("phishing", "metamask")),
    # Malware.
    Source("blackbook/blackbook.csv", blackbook_csv),
    Source("ddofm_blocklists/URLHaus.txt", one_per_line("malware", "urlhaus")),
    Source("ddofm_blocklists/malware_domains_list.txt", one_per_line("malware", "malware_list")),
    # maltrail/ is left out as labels: its trails mix C2 hosts, sinkholes and DGA seeds without
    # a per-line kind (read for benign cleaning only: CLEANING_SOURCES). dns_tunnel/ is not a registered-domain problem (see models/README.md).
]


# Benign cleaning (models/README.md, "Benign cleaning"): lists that are read only to find
# names in the benign lists that are really malicious. Each yields RawRecord(raw, "cleaning",
# reason); the DGA lists of SOURCES count too (reason "dga_list").
def dga_unlabelled_csv(path: Path) -> Iterator[RawRecord]:
    for line in _lines(path):
        name = line.split(",")[0].strip()
        if name.lower() not in ("dga", "domain"):
            yield RawRecord(name, "cleaning", "dga_list")


def maltrail_tar(path: Path) -> Iterator[RawRecord]:
    """maltrail's static malware trails: bare names only (no IPs, URLs or paths are names).
    Files named ``sinkhole_*`` list sinkholed domains; the others list malware domains."""
    with tarfile.open(path, "r:gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            fh = tar.extractfile(member)
            if fh is None:
                continue
            stem = Path(member.name).stem
            reason = "maltrail_sinkhole" if stem.startswith("sinkhole") else "maltrail_malware"
            for line in io.TextIOWrapper(fh, encoding="utf-8", errors="replace"):
                token = line.strip().split(" ")[0].split("\t")[0]
                if token and not token.startswith("#") and "/" not in token:
                    yield RawRecord(token, "cleaning", reason)


CLEANING_SOURCES: list[Source] = [
    Source("dga_unlabelled/dga.csv", dga_unlabelled_csv),
    Source("dga_unlabelled/xobx_dga.csv", dga_unlabelled_csv),
    Source("maltrail/maltrail_trails_static_malware.tar.gz", maltrail_tar),
]

_USER_LABELS = {
    "0": ("benign", "user"),
    "benign": ("benign", "user"),
    "1": ("dga", "user"),
    "malicious": ("dga", "user"),
    "dga": ("dga", "user"),
    "phishing": ("phishing", "user"),
    "malware": ("malware", "user"),
}


def user_csv(path: Path) -> Iterator[RawRecord]:
    """A user file with header ``name,label`` (optional third column ``family``).

    ``label`` is ``0``/``benign`` or ``1``/``malicious``/``dga``/``phishing``/``malware``.
    Any other row is an error naming the line: a retraining run never silently drops an
    analyst's verdict.
    """
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["name", "label"]:
            raise SourceError(f"{path}:1: header must start with 'name,label', found {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise SourceError(f"{path}:{lineno}: expected 'name,label', found {row}")
            label = row[1].strip().lower()
            if label not in _USER_LABELS:
                raise SourceError(
                    f"{path}:{lineno}: label {row[1]!r} is not one of {sorted(_USER_LABELS)}"
                )
            kind, family = _USER_LABELS[label]
            if len(row) >= 3 and row[2].strip():
                family = canonical_family(row[2])
            yield RawRecord(row[0], kind, family)
