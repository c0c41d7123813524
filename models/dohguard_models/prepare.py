"""Data preparation: from source files to labelled, de-duplicated, capped, split rows.

Label policy (see models/README.md for the reasoning): the model reads the registered
domain (PSL, private section included), so every label is attached to a registered domain.
One registered domain gets one row. When sources disagree, the label is chosen by source
priority: an organisation's own CSV first, then benign lists, then DGA, malware, phishing.
Registered domains hosting many distinct phishing/malware host names
(``platform_min_hosts``) are treated as shared platforms and left out: a verdict for them
would cover every customer of the platform, so such hosts belong on a deny list with
scope ``name``.

Splits are by registered domain (a salted hash, so a rerun gives the same split), with whole
DGA families held out into the test split to measure generalisation.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from . import encoding
from .sources import (
    CLEANING_SOURCES,
    MALICIOUS_KINDS,
    SOURCES,
    RawRecord,
    Source,
    SourceError,
    user_csv,
)

SPLITS = ("train", "val", "test")
HOLDOUT_PRIORITY = 200  # records of holdout_benign sources: cleaned, never labelled
_KIND_PRIORITY = {"benign": 1, "dga": 2, "malware": 3, "phishing": 4}
USER_PRIORITY = 0


@dataclass
class PrepareConfig:
    seed: int = 20261121
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # Whole DGA families only ever seen in the test split.
    held_out_families: tuple[str, ...] = ("ranbyus", "dircrypt", "necro", "qadars", "symmi")
    # Rows kept per (kind, family) before splitting; family_caps overrides per family.
    cap_per_family: dict[str, int] = field(
        default_factory=lambda: {"dga": 20000, "phishing": 60000, "malware": 20000, "benign": 0}
    )
    family_caps: dict[str, int] = field(default_factory=lambda: {"alexa_1m": 500000})
    # Benign rows in the training split (val/test keep all of theirs for tight FPR estimates).
    train_benign_max: int = 400000
    platform_min_hosts: int = 50
    # Remove really-malicious names from the benign lists (see clean_benign()).
    clean_benign: bool = True
    kinds: tuple[str, ...] = ("benign", "dga", "phishing", "malware")


@dataclass
class Row:
    text: str  # registered domain: what the model reads
    kind: str
    family: str
    split: str = ""

    @property
    def label(self) -> int:
        return 0 if self.kind == "benign" else 1


@dataclass
class SourceStats:
    path: str
    sha256: str
    rows_read: int = 0
    rows_invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    rows: list[Row]
    manifest: dict
    # Registered domains of the ``holdout_benign`` sources that no other source lists (any
    # kind, before caps) and that the cleaning rule keeps: benign names never trained on.
    holdout_benign: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_of(key: str, seed: int, val: float, test: float) -> str:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


def _read(
    entries: list[tuple[Path, object, int]],
) -> tuple[list[tuple[str, str, RawRecord, int]], list[SourceStats]]:
    """Normalise every record; returns (host name, registered domain, record, priority)."""
    out: list[tuple[str, str, RawRecord, int]] = []
    stats: list[SourceStats] = []
    for path, reader, priority in tqdm(entries, desc="read sources", unit="file"):
        if not path.is_file():
            raise SourceError(f"{path}: source file missing")
        st = SourceStats(str(path), sha256_file(path))
        for rec in reader(path):
            st.rows_read += 1
            try:
                host = encoding.normalise(rec.raw)
                if encoding.is_ip_address(host) or "." not in host:
                    raise encoding.InvalidName(f"not a domain name: {rec.raw!r}")
            except encoding.InvalidName:
                st.rows_invalid += 1
                if len(st.invalid_examples) < 3:
                    st.invalid_examples.append(rec.raw[:80])
                continue
            out.append((host, encoding.registered_domain(host), rec, priority))
        stats.append(st)
    return out, stats


BENIGN_CLEANING_RULE = (
    "A registered domain from a public benign list is removed from the benign rows when a DGA "
    "list (labelled or dga_unlabelled/) or one of maltrail's trails (malware or sinkhole files) "
    "names that registered domain itself (the entry equals it; hosts under it and URLs do not "
    "count). Exception: a recent Tranco name (2025-06/2026-08 lists) that only a DGA list names "
    "is kept, because short generated names collide with real sites (qiita.com is conficker "
    "output and a Tranco top site). A removed name keeps any malicious label another source "
    "gives it. Phishing/malware lists are not used: they name real sites that once hosted "
    "malware (earlham.edu, maplesoft.com), and the source priority already handles them."
)


def clean_benign(
    records: list[tuple[str, str, RawRecord, int]],
    cleaning: list[tuple[str, str, RawRecord, int]],
) -> tuple[set[str], dict]:
    """Registered domains to drop from the benign rows under :data:`BENIGN_CLEANING_RULE`,
    and the counts per benign source and per reason for the manifest."""
    benign_sources: dict[str, set[str]] = defaultdict(set)
    for _, rd, rec, prio in records:
        if rec.kind == "benign" and prio != USER_PRIORITY:
            benign_sources[rd].add(rec.family)
    reasons: dict[str, set[str]] = defaultdict(set)
    named = [(host, rec.family) for host, _, rec, _ in cleaning]
    named += [(host, "dga_list") for host, _, rec, _ in records if rec.kind == "dga"]
    for host, reason in named:
        if host in benign_sources:
            reasons[host].add(reason)
    removed = {
        rd for rd, why in reasons.items()
        if not (why == {"dga_list"} and any(f.startswith("tranco") for f in benign_sources[rd]))
    }
    by_source = Counter(src for rd in removed for src in benign_sources[rd])
    by_reason = Counter(r for rd in removed for r in reasons[rd])
    report = {
        "rule": BENIGN_CLEANING_RULE,
        "removed": len(removed),
        "removed_by_benign_source": dict(sorted(by_source.items())),
        "removed_by_reason": dict(sorted(by_reason.items())),
        "kept_by_tranco_exception": sorted(set(reasons) - removed),
        "examples": sorted(removed)[:: max(1, len(removed) // 40)][:40],
    }
    return removed, report


def prepare(
    data_dir: Path | None,
    cfg: PrepareConfig,
    user_csvs: list[Path] = (),
    sources: list[Source] | None = None,
    cleaning_sources: list[Source] | None = None,
    holdout_benign: list[Source] = (),
) -> Prepared:
    """Build the labelled, split rows. ``data_dir=None`` trains from the user CSVs only.
    ``cleaning_sources`` (default :data:`CLEANING_SOURCES`) are read only for the benign
    cleaning rule."""
    entries: list[tuple[Path, object, int]] = []
    if data_dir is not None:
        for src in sources if sources is not None else SOURCES:
            entries.append((data_dir / src.path, src.read, 99))
        for src in holdout_benign:
            entries.append((data_dir / src.path, src.read, HOLDOUT_PRIORITY))
    for csv_path in user_csvs:
        entries.append((Path(csv_path), user_csv, USER_PRIORITY))
    if not entries:
        raise SourceError("nothing to train on: give a data folder or a CSV")
    records, source_stats = _read(entries)
    cleaning_report: dict = {"rule": BENIGN_CLEANING_RULE, "applied": False}
    if cfg.clean_benign and data_dir is not None:
        clean_entries = [
            (data_dir / src.path, src.read, 99)
            for src in (cleaning_sources if cleaning_sources is not None else CLEANING_SOURCES)
        ]
        cleaning, cleaning_stats = _read(clean_entries)
        removed, cleaning_report = clean_benign(records, cleaning)
        cleaning_report["applied"] = True
        cleaning_report["sources"] = [asdict(s) for s in cleaning_stats]
        records = [
            r for r in records
            if not (r[2].kind == "benign" and r[3] != USER_PRIORITY and r[1] in removed)
        ]
    holdout_rds = {rd for _, rd, rec, prio in records
                   if prio == HOLDOUT_PRIORITY and rec.kind == "benign"}
    records = [r for r in records if r[3] != HOLDOUT_PRIORITY]

    # Shared platforms: many distinct malicious hosts under one registered domain.
    hosts_per_domain: dict[str, set[str]] = defaultdict(set)
    for host, rd, rec, prio in records:
        if rec.kind in ("phishing", "malware") and prio != USER_PRIORITY:
            hosts_per_domain[rd].add(host)
    platforms = {rd for rd, hs in hosts_per_domain.items() if len(hs) >= cfg.platform_min_hosts}

    # One label per registered domain, chosen by priority.
    best: dict[str, tuple[tuple[int, int, str], RawRecord]] = {}
    kinds_seen: dict[str, set[str]] = defaultdict(set)
    dropped_platform = 0
    for host, rd, rec, prio in records:
        if rec.kind not in cfg.kinds:
            continue
        if rd in platforms and prio != USER_PRIORITY and rec.kind != "benign":
            dropped_platform += 1
            continue
        kinds_seen[rd].add(rec.kind if prio != USER_PRIORITY else "user")
        # The family name breaks ties, so the result does not depend on source order.
        key = (prio, _KIND_PRIORITY[rec.kind], rec.family)
        if rd not in best or key < best[rd][0]:
            best[rd] = (key, rec)
    conflicts = Counter(
        "+".join(sorted(k)) for k in kinds_seen.values() if len(k) > 1
    )

    # Per-family caps (seeded sample), then the split.
    by_family: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rd, (_, rec) in best.items():
        by_family[(rec.kind, rec.family)].append(rd)
    rng = random.Random(cfg.seed)
    rows: list[Row] = []
    capped: dict[str, int] = {}
    held_out = set(cfg.held_out_families)
    for (kind, family), domains in sorted(by_family.items()):
        domains.sort()
        cap = cfg.family_caps.get(family, cfg.cap_per_family.get(kind, 0))
        if cap and len(domains) > cap:
            capped[f"{kind}/{family}"] = len(domains) - cap
            domains = rng.sample(domains, cap)
        for rd in domains:
            if kind == "dga" and family in held_out:
                split = "test"
            else:
                split = _split_of(rd, cfg.seed, cfg.val_fraction, cfg.test_fraction)
            rows.append(Row(rd, kind, family, split))

    # Keep the training split's benign share bounded (time budget), sampled with the seed.
    train_benign = [r for r in rows if r.split == "train" and r.kind == "benign"]
    benign_dropped = 0
    if cfg.train_benign_max and len(train_benign) > cfg.train_benign_max:
        keep = set(id(r) for r in rng.sample(train_benign, cfg.train_benign_max))
        before = len(rows)
        rows = [r for r in rows if not (r.split == "train" and r.kind == "benign") or id(r) in keep]
        benign_dropped = before - len(rows)
    rows.sort(key=lambda r: (r.split, r.kind, r.family, r.text))

    manifest = build_manifest(
        rows, cfg, source_stats, conflicts, platforms, dropped_platform, capped, benign_dropped,
        data_dir, cleaning_report,
    )
    holdout = sorted(holdout_rds - best.keys() - platforms)
    if holdout_benign:
        manifest["holdout_benign"] = {
            "sources": [src.path for src in holdout_benign],
            "registered_domains_read": len(holdout_rds),
            "kept_not_in_any_other_source": len(holdout),
        }
    return Prepared(rows, manifest, holdout)


def build_manifest(rows, cfg, source_stats, conflicts, platforms, dropped_platform, capped,
                   benign_dropped, data_dir, cleaning_report=None) -> dict:
    counts: dict[str, dict[str, dict[str, int]]] = {s: defaultdict(Counter) for s in SPLITS}
    split_hash = {s: hashlib.sha256() for s in SPLITS}
    for r in rows:
        counts[r.split][r.kind][r.family] += 1
        split_hash[r.split].update(f"{r.text},{r.label},{r.kind},{r.family}\n".encode())
    psl = encoding.psl_source()
    return {
        "data_dir": str(data_dir) if data_dir else None,
        "config": asdict(cfg),
        "public_suffix_list": {"path": psl.path, "sha256": psl.sha256},
        "sources": [asdict(s) for s in source_stats],
        "label_policy": {
            "unit": "registered_domain (PSL with private section)",
            "priority": ["user_csv", "benign", "dga", "malware", "phishing"],
            "shared_platforms_dropped": sorted(platforms),
            "rows_dropped_as_platform_hosts": dropped_platform,
            "label_conflicts_by_kinds": dict(conflicts),
            "benign_cleaning": cleaning_report,
        },
        "capped_rows_removed": capped,
        "train_benign_rows_removed": benign_dropped,
        "counts": {
            s: {k: dict(sorted(f.items())) for k, f in sorted(counts[s].items())} for s in SPLITS
        },
        "totals": {
            s: {k: sum(f.values()) for k, f in sorted(counts[s].items())} for s in SPLITS
        },
        "split_sha256": {s: split_hash[s].hexdigest() for s in SPLITS},
    }


def write_rows(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("text,label,kind,family,split\n")
        for r in rows:
            fh.write(f"{r.text},{r.label},{r.kind},{r.family},{r.split}\n")


def write_manifest(manifest: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def rows_by_split(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {s: [] for s in SPLITS}
    for r in rows:
        out[r.split].append(r)
    return out


__all__ = ["PrepareConfig", "Prepared", "Row", "prepare", "MALICIOUS_KINDS"]
