"""Argument parsing for ``python -m dohguard_models``. Errors in the inputs (a bad CSV row, a
missing data folder, a split with no benign names) end the run with one clear message and
exit status 2; nothing is written over an existing model in that case."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import pipeline, prepare
from .finetune import FinetuneError
from .sources import SourceError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dohguard_models", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="prepare data, train, export, write card + report + fixture")
    t.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA,
                   help="the shared data folder (default: ../shared/data beside the repo)")
    t.add_argument("--csv", type=Path, action="append", default=[],
                   help="train ONLY from this CSV (name,label[,family]); repeatable")
    t.add_argument("--extra-csv", type=Path, action="append", default=[],
                   help="add an organisation's labelled names to the data folder; its labels "
                        "win over the public lists; repeatable")
    t.add_argument("--out", type=Path, default=pipeline.SHIPPED_DIR,
                   help="model folder to write (default: models/dga-cnn, the shipped model)")
    t.add_argument("--fixture", type=Path, default=None,
                   help="where to write the encoding fixture (default: models/fixtures/"
                        "encoding.json for the shipped model, else OUT/encoding.json)")
    t.add_argument("--version", default="", help="model version (default: today, UTC)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    t.add_argument("--channels", type=int, default=None, help="filters per convolution width")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    t.add_argument("--subsample", type=float, default=1.0,
                   help="keep this fraction of every split (quick experiments)")
    t.add_argument("--kinds", default=None,
                   help="comma-separated kinds to train and evaluate on "
                        "(default: benign,dga,phishing,malware)")
    t.add_argument("--phishing-weight", type=float, default=None,
                   help="loss weight of phishing and malware rows (default 0.5; DGA is 1)")
    t.add_argument("--held-out", default=None,
                   help="comma-separated DGA families kept out of training (test only)")

    pr = sub.add_parser("prepare", help="only prepare the data; write rows.csv + manifest.json")
    pr.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    pr.add_argument("--csv", type=Path, action="append", default=[])
    pr.add_argument("--extra-csv", type=Path, action="append", default=[])
    pr.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / ".cache" / "prepared")

    pt = sub.add_parser("protocol", help="the honest evaluation protocol: leave-family-out, "
                        "leave-style-out, over time, hold-out benign (writes models/protocol/)")
    pt.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    pt.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / "protocol")
    pt.add_argument("--shipped", type=Path, default=pipeline.SHIPPED_DIR,
                    help="model folder of the CNN to score beside the fast model")
    pt.add_argument("--no-cnn", action="store_true", help="do not score the shipped CNN")
    pt.add_argument("--report-only", action="store_true",
                    help="only rewrite report.md from protocol.json and the look-alike / "
                         "word-family files beside it (no training)")
    pt.add_argument("--min-family", type=int, default=None,
                    help="names a family needs to be held out on its own (default 200)")
    pt.add_argument("--folds", type=int, default=None, help="leave-family-out folds (default 5)")
    pt.add_argument("--per-family", type=int, default=None,
                    help="DGA names used per family (default 3000)")
    pt.add_argument("--benign-train", type=int, default=None,
                    help="benign training names (default 100000)")

    na = sub.add_parser("name-agreement", help="measure where Python's and the Rust core's "
                        "normalisation and registered domain disagree (writes name_agreement.*)")
    na.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    na.add_argument("--rust-bin", type=Path, required=True,
                    help="the core/examples/names.rs binary (cargo build -p dohguard-core "
                         "--example names)")
    na.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / "protocol")

    ft = sub.add_parser("finetune", help="fine-tune the serving model on labels + recent "
                        "verdicts; check it; compare it with the serving model (no shared data)")
    ft.add_argument("--base", type=Path, required=True, help="the serving model's card")
    ft.add_argument("--labels", type=Path, required=True,
                    help="analysts' labels: name,label[,family,...] (the console's export)")
    ft.add_argument("--sample", type=Path, default=None,
                    help="sampled recent verdicts, same columns (labels win)")
    ft.add_argument("--shadow", type=Path, default=None,
                    help="names to score with both models (header 'name')")
    ft.add_argument("--data-dir", type=Path, default=None,
                    help="an operator's data folder: every *.csv in it (name,label[,family]) "
                         "joins the training rows (labels win)")
    ft.add_argument("--out", type=Path, required=True, help="the candidate's folder")
    ft.add_argument("--version", default="", help="candidate version (default: base-ft.<time>)")
    ft.add_argument("--epochs", type=int, default=3)
    ft.add_argument("--max-seconds", type=float, default=240.0, help="training time budget")
    ft.add_argument("--threads", type=int, default=2)
    ft.add_argument("--monitor", type=float, default=None, help="monitor threshold in force")
    ft.add_argument("--block", type=float, default=None, help="block threshold in force")
    ft.add_argument("--max-regression", type=float, default=0.05,
                    help="largest drop of precision or recall on the labels a candidate may show")
    ft.add_argument("--progress-json", action="store_true",
                    help="print one JSON progress line per step (for the console)")
    la = sub.add_parser("lookalike", help="train, measure (by source, by date) and export the "
                        "look-alike phishing detector (writes models/lookalike-v1/ and "
                        "models/protocol/lookalike.json)")
    la.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    la.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / "lookalike-v1")
    la.add_argument("--protocol-out", type=Path, default=pipeline.MODELS_DIR / "protocol")
    la.add_argument("--version", default="", help="model version (default: today, UTC)")
    la.add_argument("--epochs", type=int, default=None)
    la.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")

    ld = sub.add_parser("lookalike-data", help="regenerate models/features/lookalike-v1/"
                        "brands.txt and confusables.tsv (needs confusable_homoglyphs)")
    ld.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)

    wf = sub.add_parser("word-families", help="measured-only experiment: word log-odds features "
                        "for word-based DGA families (writes models/protocol/word_families.json)")
    wf.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    wf.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / "protocol")

    f = sub.add_parser("fixture", help="regenerate the encoding fixture from a model folder")
    f.add_argument("--model", type=Path, default=pipeline.SHIPPED_DIR)
    f.add_argument("--out", type=Path, default=pipeline.SHARED_FIXTURE)

    tu = sub.add_parser("tunnel", help="train, evaluate (held-out base domains, session replay) "
                        "and export the full-name tunnel detector (writes models/tunnel-v1/)")
    tu.add_argument("--data", type=Path, default=pipeline.DEFAULT_DATA)
    tu.add_argument("--out", type=Path, default=pipeline.MODELS_DIR / "tunnel-v1")
    tu.add_argument("--version", default="", help="model version (default: today, UTC)")
    tu.add_argument("--hidden", type=int, default=16, help="hidden units (0: logistic regression)")
    tu.add_argument("--seed", type=int, default=7)
    return p


def _inputs(args) -> tuple[Path | None, list[Path]]:
    if args.csv:
        return None, list(args.csv)
    if not args.data.is_dir():
        raise SourceError(f"data folder {args.data} not found (use --data or --csv)")
    return args.data, list(args.extra_csv)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "prepare":
            data, csvs = _inputs(args)
            prepared = prepare.prepare(data, prepare.PrepareConfig(), csvs)
            prepare.write_rows(prepared.rows, args.out / "rows.csv")
            prepare.write_manifest(prepared.manifest, args.out / "manifest.json")
            print(json.dumps(prepared.manifest["totals"], indent=1))
            return 0
        if args.command == "protocol":
            return _protocol(args)
        if args.command == "name-agreement":
            from . import agreement

            if not args.rust_bin.is_file():
                raise FileNotFoundError(f"{args.rust_bin} not found: cargo build -p "
                                        "dohguard-core --example names")
            if not args.data.is_dir():
                raise SourceError(f"data folder {args.data} not found (use --data)")
            r = agreement.run(args.data, args.rust_bin, args.out)
            d = r["raw_source_names"]
            print(f"wrote {args.out}/name_agreement.md: {d['disagreements']} of {d['names']} "
                  "raw names disagree")
            return 0
        if args.command == "finetune":
            return _finetune(args)
        if args.command == "tunnel":
            from . import tunnel

            if not args.data.is_dir():
                raise SourceError(f"data folder {args.data} not found (use --data)")
            r = tunnel.run(args.data, args.out, args.version, args.hidden, args.seed)
            s = r["shipped"]
            print(f"wrote {args.out}: sessions blocked within 20 (base domain held out) "
                  f"{r['pooled_sessions_blocked_20']:.3f}; benign flagged "
                  f"{s['benign_test_flagged']}/{s['benign_test_names']}")
            return 0
        if args.command == "lookalike":
            return _lookalike(args)
        if args.command == "lookalike-data":
            from . import lookalike_data

            if not args.data.is_dir():
                raise SourceError(f"data folder {args.data} not found (use --data)")
            print(lookalike_data.write(args.data))
            return 0
        if args.command == "word-families":
            from . import protocol, wordfamilies

            if not args.data.is_dir():
                raise SourceError(f"data folder {args.data} not found (use --data)")
            r = wordfamilies.run(args.data, args.out, protocol.ProtocolConfig(),
                                 progress=lambda m: print(f"[word-families] {m}", flush=True))
            print(wordfamilies.section(r))
            return 0
        if args.command == "fixture":
            from . import fixtures

            card = json.loads((args.model / "model.card.json").read_text())
            fixtures.write_fixture(args.model, card, args.out)
            print(f"wrote {args.out}")
            return 0
    except (SourceError, pipeline.PipelineError, FileNotFoundError, FinetuneError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1


def _train(args) -> int:
    data, csvs = _inputs(args)
    cfg = pipeline.PipelineConfig(out=args.out, data_dir=data, user_csvs=csvs,
                                  version=args.version, subsample=args.subsample,
                                  fixture=args.fixture)
    for attr, value in [("epochs", args.epochs), ("max_minutes", args.max_minutes),
                        ("channels", args.channels), ("seed", args.seed),
                        ("threads", args.threads)]:
        if value is not None:
            setattr(cfg.train, attr, value)
    if args.seed is not None:
        cfg.prep.seed = args.seed
    if args.kinds is not None:
        cfg.prep.kinds = tuple(k for k in args.kinds.split(",") if k)
    if args.phishing_weight is not None:
        cfg.train.kind_weights.update(phishing=args.phishing_weight, malware=args.phishing_weight)
    if args.held_out is not None:
        cfg.prep.held_out_families = tuple(f for f in args.held_out.split(",") if f)
    report = pipeline.run(cfg)
    s = report["dga_seen_families"]
    print(f"wrote {args.out}: model.onnx, model.card.json, report.md/json, plots; "
          f"fixture {report['fixture']}")
    print(f"DGA vs benign (test): AUC {s.get('auc', float('nan')):.5f}, "
          f"TPR@1e-3 {s.get('tpr_at_1e-3', 0):.4f}, TPR@1e-4 {s.get('tpr_at_1e-4', 0):.4f}")
    return 0


def _finetune(args) -> int:
    from . import finetune

    if args.epochs < 1 or args.max_seconds <= 0:
        raise FinetuneError("--epochs must be at least 1 and --max-seconds positive")
    cfg = finetune.FinetuneConfig(
        base=args.base, labels=args.labels, out=args.out, sample=args.sample,
        shadow=args.shadow, data_dir=args.data_dir, version=args.version, epochs=args.epochs,
        max_seconds=args.max_seconds, threads=args.threads, monitor=args.monitor,
        block=args.block, max_regression=args.max_regression)
    if args.progress_json:
        cfg.progress = finetune.progress_printer
    report = finetune.run(cfg)
    summary = {"candidate": report["candidate"]["model_version"], "passed": report["passed"],
               "changed": report["shadow"]["changed"], "out": str(args.out)}
    print(json.dumps({"result": summary}), flush=True)
    return 0


def _protocol(args) -> int:
    try:
        from . import protocol
        import sklearn  # noqa: F401
    except ImportError as err:
        raise pipeline.PipelineError(f"{err}: run scripts/setup.sh") from err

    if args.report_only:
        if not (args.out / "protocol.json").is_file():
            raise FileNotFoundError(f"{args.out}/protocol.json not found: run the protocol first")
        protocol.rerender(args.out)
        print(f"wrote {args.out}/report.md")
        return 0
    cfg = protocol.ProtocolConfig()
    for attr, value in [("min_family", args.min_family), ("folds", args.folds),
                        ("per_family", args.per_family), ("benign_train", args.benign_train)]:
        if value is not None:
            if value < 1:
                raise pipeline.PipelineError(f"--{attr.replace('_', '-')} must be at least 1, got {value}")
            setattr(cfg, attr, value)
    if not args.data.is_dir():
        raise SourceError(f"data folder {args.data} not found (use --data)")
    shipped = None if args.no_cnn else args.shipped
    if shipped is not None and not (shipped / "model.onnx").is_file():
        raise FileNotFoundError(f"{shipped}/model.onnx not found (use --shipped or --no-cnn)")
    words = protocol.features.load_words()  # a missing word list fails now, not in minutes
    try:
        report = protocol.run(args.data, args.out, cfg, shipped, words=words,
                              progress=lambda m: print(f"[protocol] {m}", flush=True))
    except protocol.ProtocolError as err:
        raise pipeline.PipelineError(str(err)) from err
    g = report["goal_check"]["fast_model"]
    print(f"wrote {args.out}: report.md, protocol.json, lofo_recall.png, loso_recall.png "
          f"({report['run']['seconds'] / 60:.1f} min)")
    print(f"fast model: leave-family-out macro {g['lofo_macro_tpr_at_1e-3']:.4f} at 1e-3, "
          f"{g['lofo_macro_tpr_at_1e-4']:.4f} at 1e-4; leave-style-out "
          f"{g['loso_macro_tpr_at_1e-3']:.4f} at 1e-3")
    return 0


def _lookalike(args) -> int:
    import datetime

    from . import lookalike_train

    if not args.data.is_dir():
        raise SourceError(f"data folder {args.data} not found (use --data)")
    cfg = lookalike_train.Config()
    for attr, value in [("epochs", args.epochs), ("threads", args.threads)]:
        if value is not None:
            if value < 1:
                raise pipeline.PipelineError(f"--{attr} must be at least 1, got {value}")
            setattr(cfg, attr, value)
    version = args.version or datetime.datetime.now(datetime.timezone.utc).strftime("%Y.%m.%d")
    r = lookalike_train.run(args.data, args.out, args.protocol_out, cfg, version,
                            progress=lambda m: print(f"[lookalike] {m}", flush=True))
    print(f"wrote {args.out}: model.onnx, model.card.json, report.md ({r['seconds'] / 60:.1f} "
          f"min); held-out sources macro TPR at 1e-3: {r['goal']['value']:.4f} "
          f"({'met' if r['goal']['met'] else 'missed'})")
    return 0
