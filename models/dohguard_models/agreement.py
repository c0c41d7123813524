"""Compare Python's name rules (:func:`encoding.normalise`, the PSL registered domain and
:func:`encoding.encode` of the model text) with the Rust core's (``normalize``,
``registered_domain`` and the card's encoding, run through ``core/examples/names.rs``) over
every raw name the data sources hold and every registered domain prepared from them.
docs/contracts.md ("Names") is the one definition; ``models/tests/test_name_agreement.py``
requires 100% agreement.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

from . import encoding
from .sources import SOURCES

EXAMPLES_PER_CASE = 8
# The shipped model's card (pipeline.SHIPPED_DIR; not imported to keep torch out).
CARD = Path(__file__).resolve().parent.parent / "dga-cnn" / "model.card.json"


def raw_names(data_dir: Path) -> list[str]:
    """Distinct raw name strings as the source readers yield them (before normalisation)."""
    seen: dict[str, None] = {}
    for src in SOURCES:
        for rec in src.read(data_dir / src.path):
            raw = rec.raw
            if "\n" not in raw and "\t" not in raw and "\r" not in raw:
                seen.setdefault(raw, None)
    return list(seen)


Side = tuple[str | None, str | None, str, str | None]


def python_side(raw: str) -> Side:
    """(normalised name or None, registered domain or None, rejection reason, the model's
    input ids as a space-separated string or None)."""
    try:
        name = encoding.normalise(raw)
    except encoding.InvalidName as err:
        return None, None, str(err).split(":")[0], None
    rd = encoding.registered_domain_or_none(name)
    ids = " ".join(map(str, encoding.encode(rd or name)))
    return name, rd, "", ids


def rust_side(binary: Path, names: list[str], card: Path = CARD) -> list[Side]:
    data = ("\n".join(names) + "\n").encode("utf-8", errors="surrogateescape")
    proc = subprocess.run([str(binary), str(card)], input=data, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    out: list[Side] = []
    for line in proc.stdout.decode("utf-8", errors="surrogateescape").split("\n")[:-1]:
        _, name, rd, ids = line.rsplit("\t", 3)
        if name.startswith("ERR:"):
            out.append((None, None, name[4:].split(" at offset")[0].split(" is ")[0], None))
        else:
            out.append((name, None if rd == "-" else rd, "", ids))
    if len(out) != len(names):
        raise RuntimeError(f"{binary} answered {len(out)} lines for {len(names)} names")
    return out


def _category(py, rs) -> str | None:
    (pn, prd, preason, pids), (rn, rrd, rreason, rids) = py, rs
    if pn is None and rn is None:
        return None
    if pn is None:
        return f"python rejects ({preason}), rust accepts"
    if rn is None:
        return f"python accepts, rust rejects ({rreason})"
    if pn != rn:
        return "both accept, different normalised name"
    if prd != rrd:
        if prd is None or rrd is None:
            return "same name, one side has no registered domain"
        return "same name, different registered domain"
    if pids != rids:
        return "same name and registered domain, different ids"
    return None


def compare(names: list[str], py: list, rs: list) -> dict:
    cases: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    both_ok = agree_name = agree_rd = agree_ids = 0
    for raw, p, r in zip(names, py, rs, strict=True):
        if p[0] is not None and r[0] is not None:
            both_ok += 1
            agree_name += p[0] == r[0]
            agree_rd += p[0] == r[0] and p[1] == r[1]
            agree_ids += p[0] == r[0] and p[1] == r[1] and p[3] == r[3]
        cat = _category(p, r)
        if cat:
            cases[cat] += 1
            if len(examples[cat]) < EXAMPLES_PER_CASE:
                examples[cat].append({"raw": raw[:90], "python": [p[0], p[1]],
                                      "rust": [r[0], r[1]]})
    return {
        "names": len(names),
        "python_accepts": sum(p[0] is not None for p in py),
        "rust_accepts": sum(r[0] is not None for r in rs),
        "both_accept": both_ok,
        "same_normalised_name": agree_name,
        "same_name_and_registered_domain": agree_rd,
        "same_name_registered_domain_and_ids": agree_ids,
        "disagreements": sum(cases.values()),
        "by_case": dict(cases.most_common()),
        "examples": dict(examples),
        "psl": {"python": encoding.psl_source().path, "rust": "psl crate (compiled-in list, tested equal to the file)"},
        "card": str(CARD.relative_to(CARD.parents[2])),
    }


def measure(data_dir: Path, binary: Path) -> dict:
    """Both comparisons (raw source names, prepared registered domains), as a dict."""
    names = raw_names(data_dir)
    py = [python_side(n) for n in names]
    rs = rust_side(binary, names)
    report = {"raw_source_names": compare(names, py, rs)}
    # What prepare turns them into (the text the model reads): Python's registered domains.
    texts = sorted({p[1] or p[0] for p in py if p[0] is not None})
    report["prepared_registered_domains"] = compare(
        texts, [python_side(t) for t in texts], rust_side(binary, texts))
    return report


def run(data_dir: Path, binary: Path, out: Path) -> dict:
    report = measure(data_dir, binary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "name_agreement.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "name_agreement.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    L = ["# Python/Rust name agreement", "",
         "Generated by `python -m dohguard_models name-agreement --rust-bin "
         "target/debug/examples/names`; `models/tests/test_name_agreement.py` requires 100%. "
         "Python: `encoding.normalise`, the PSL registered domain (`registered_domain_or_none`; `None` when "
         "the name is a public suffix) and `encoding.encode` of the model text. Rust: "
         "`dohguard_core::name::{normalize, registered_domain}` and the card's encoding "
         "through `core/examples/names.rs`. Both read the same public suffix list "
         "(`models/psl/`). The definition is docs/contracts.md, \"Names\". A name both sides "
         "reject is an agreement.", ""]
    for key, title in (("raw_source_names", "Every distinct raw name in the data sources"),
                       ("prepared_registered_domains", "Every registered domain Python prepares from them "
                                                        "(the text the model reads)")):
        if key not in r:
            continue
        d = r[key]
        L += [f"## {title}", "",
              f"{d['names']} names; Python accepts {d['python_accepts']}, Rust accepts "
              f"{d['rust_accepts']}; both accept {d['both_accept']}, of which "
              f"{d['same_normalised_name']} get the same normalised name and "
              f"{d['same_name_and_registered_domain']} the same registered domain too, and "
              f"{d['same_name_registered_domain_and_ids']} the same input ids. "
              f"Disagreements: **{d['disagreements']}** "
              f"({100 * d['disagreements'] / max(d['names'], 1):.3f}%).", "",
              "| case | names | examples (raw -> python / rust) |", "|---|---:|---|"]
        cases = list(d["by_case"].items())
        if not cases:
            L[-2:] = ["No disagreement.", ""]
            continue
        if len(cases) > 15:
            rest = sum(n for _, n in cases[15:])
            L.insert(len(L) - 2, f"The {len(cases) - 15} rarest cases ({rest} names) are in the "
                                 "JSON only.")
            L.insert(len(L) - 2, "")
        for case, n in cases[:15]:
            ex = "; ".join(f"`{e['raw']}` -> {e['python']} / {e['rust']}"
                           for e in d["examples"][case][:3])
            L.append(f"| {case} | {n} | {ex} |")
        L.append("")
    return "\n".join(L)

