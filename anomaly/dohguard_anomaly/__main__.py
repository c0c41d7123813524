"""`python -m dohguard_anomaly record|train|evaluate|export` (`./dohguard anomaly ...`).

- `record`: drive the real stack and write a labelled recording (started by
  `cargo xtask record-metrics`, which brings up the stack and Prometheus and passes the URLs and
  PIDs; see anomaly/README.md).
- `train`: retrain and re-evaluate every detector on the data set and ship the best
  (anomaly/model/: model.onnx, model.card.json, report.md); or, with `--csv` or
  `--prometheus`, train one detector on your own data.
- `evaluate`: a saved model on labelled CSVs.
- `export`: write a saved model's ONNX file and card again, e.g. with a new false-alarm budget.

Bad input ends with one line `error: ...` and exit status 2; nothing is written then.
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
    r.add_argument("--faults", default=None, help="only these fault classes (comma-separated)")
    r.add_argument("--out", required=True, help="output folder (recording.csv, labels.json, manifest.json)")
    _add_model_commands(sub)
    args = p.parse_args(argv)
    if args.command != "record":
        from .features import DataError

        try:
            return _model_command(args)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    os.makedirs(args.out, exist_ok=True)
    kinds = args.faults.split(",") if args.faults else None
    faults = [] if args.no_faults else traffic.schedule(args.seed, args.minutes, kinds=kinds)
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
            console=traffic.ConsoleSession.from_env(),
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


def _add_model_commands(sub) -> None:
    from pathlib import Path

    from . import detectors, experiment

    t = sub.add_parser("train", help="retrain and re-evaluate (default: the data set -> anomaly/model)")
    t.add_argument("--data", type=Path, default=experiment.DATA_DIR, help="data set folder with splits.json")
    t.add_argument("--out", type=Path, default=None, help="model folder (default: anomaly/model, or ./anomaly-model with --csv/--prometheus)")
    t.add_argument("--kinds", default=",".join(detectors.ALL_KINDS), help="detectors to compare")
    t.add_argument("--ship", default=None, help="ship this kind instead of the validation winner")
    t.add_argument("--epochs", type=int, default=30, help="autoencoder epochs")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--sim-days", type=float, default=7.0, help="simulated clean days for the false-alarm rate")
    t.add_argument("--csv", action="append", default=[], help="train only on this CSV (repeatable)")
    t.add_argument("--prometheus", default=None, help="train on a Prometheus server's range (with --start/--end)")
    t.add_argument("--start", default=None, help="Unix seconds or ISO 8601")
    t.add_argument("--end", default=None)
    t.add_argument("--exclude", action="append", default=[], metavar="START,END", help="a known incident to leave out (repeatable)")
    t.add_argument("--kind", default="pca", help="detector for --csv/--prometheus training")
    t.add_argument("--budget", type=float, default=1.0, help="false alarms per week the threshold allows")

    e = sub.add_parser("evaluate", help="evaluate a saved model on labelled CSVs")
    e.add_argument("--model", type=Path, default=experiment.MODEL_DIR)
    e.add_argument("csv", nargs="+", help="labelled CSVs (is_anomaly, anomaly_class, intensity)")

    x = sub.add_parser("export", help="write model.onnx + model.card.json of a saved model again")
    x.add_argument("--model", type=Path, default=experiment.MODEL_DIR)
    x.add_argument("--out", type=Path, default=None, help="default: the model folder")
    x.add_argument("--budget", type=float, default=None, help="recalibrate to this many false alarms per week")


def _model_command(args) -> int:
    from pathlib import Path

    from . import experiment
    from .features import DataError
    from .model import AnomalyModel

    if args.command == "train":
        if args.csv or args.prometheus:
            m = AnomalyModel(kind=args.kind, false_alarms_per_week=args.budget, threads=args.threads, epochs=args.epochs)
            for spec in args.exclude:
                if "," not in spec:
                    raise DataError(f"--exclude {spec!r}: expected START,END")
                m.exclude_incident(*spec.split(",", 1))
            bar = tqdm(total=args.epochs, desc="epochs") if args.kind == "autoencoder" else None
            progress = (lambda ep, loss: bar.update(1)) if bar else None
            if args.prometheus:
                if not (args.start and args.end):
                    raise DataError("--prometheus needs --start and --end")
                m.fit_prometheus(args.prometheus, args.start, args.end, progress=progress)
            else:
                m.fit_csv(args.csv, progress=progress)
            if bar:
                bar.close()
            out = args.out or Path("anomaly-model")
            card = m.save(out)
            print(f"wrote {out}/model.onnx and model.card.json: threshold {card['threshold']:.4g} for {args.budget:g} false alarms/week")
            return 0
        if args.exclude:
            raise DataError("--exclude applies to --csv/--prometheus training; the data set's faults are labelled already")
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        experiment.run(args.data, args.out or experiment.MODEL_DIR, kinds, args.epochs, args.threads, args.sim_days, args.ship)
        return 0
    if args.command == "evaluate":
        m = AnomalyModel.load(args.model)
        r = m.evaluate_csv(args.csv)
        r.pop("outcomes")
        print(json.dumps(r, indent=1, default=float))
        return 0
    if args.command == "export":
        m = AnomalyModel.load(args.model)
        if args.budget is not None:
            m.set_false_alarm_budget(args.budget)
        out = args.out or args.model
        card = m.save(out)
        print(f"wrote {out}/model.onnx and model.card.json (sha256 {card['sha256'][:12]}..., threshold {card['threshold']:.4g})")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
