"""`python -m dohguard_anomaly record ...`: drive the real stack and write a labelled recording.

Started by `cargo xtask record-metrics`, which brings up the stack and Prometheus and passes
the URLs and PIDs; see anomaly/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from tqdm import tqdm

from . import export, traffic


def demo_zone_names(path: str) -> list[str]:
    names = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("zone "):
                continue
            name = line.split()[0].rstrip(".")
            if name not in names:
                names.append(name)
    if not names:
        raise SystemExit(f"error: no names in {path}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dohguard_anomaly")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="drive the running stack and write a labelled recording")
    r.add_argument("--doh-url", required=True, help="cleartext DoH URL, e.g. http://127.0.0.1:8080/dns-query")
    r.add_argument("--prometheus", required=True, help="Prometheus URL")
    r.add_argument("--zone", required=True, help="the demo zone file (envoy/demo-zone.txt)")
    r.add_argument("--scorer-pid", type=int)
    r.add_argument("--unbound-pid", type=int)
    r.add_argument("--minutes", type=float, default=20.0)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--rate", type=float, default=40.0, help="normal queries per second at the daily peak")
    r.add_argument("--clients", type=int, default=6)
    r.add_argument("--day-seconds", type=float, default=600.0, help="length of the compressed day")
    r.add_argument("--no-faults", action="store_true", help="a clean recording")
    r.add_argument("--out", required=True, help="output folder (recording.csv, labels.json, manifest.json)")
    args = p.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    faults = [] if args.no_faults else traffic.schedule(args.seed, args.minutes)
    bar = tqdm(total=int(args.minutes * 60), unit="s", desc="recording")

    def progress(t: float) -> None:
        bar.update(int(t) - bar.n)

    labels = asyncio.run(
        traffic.run(
            doh_url=args.doh_url,
            zone_names=demo_zone_names(args.zone),
            minutes=args.minutes,
            seed=args.seed,
            base_rate=args.rate,
            clients=args.clients,
            day_s=args.day_seconds,
            faults=faults,
            scorer_pid=args.scorer_pid,
            unbound_pid=args.unbound_pid,
            progress=progress,
        )
    )
    bar.close()
    traffic.write_labels(os.path.join(args.out, "labels.json"), labels)
    # Wait until the rule evaluations cover the end of the run.
    export.wait_until_recorded(args.prometheus, labels["end_unix"])
    summary = export.export(args.prometheus, labels, os.path.join(args.out, "recording.csv"))
    manifest = {
        "generator": "python -m dohguard_anomaly record",
        "arguments": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "queries_sent": labels["queries_sent"],
        "queries_failed": labels["queries_failed"],
        "faults": len(faults),
        **summary,
    }
    export.write_manifest(os.path.join(args.out, "manifest.json"), manifest)
    print(json.dumps(manifest, indent=1))
    if summary["features_never_seen"]:
        print(f"warning: features with no value: {summary['features_never_seen']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
