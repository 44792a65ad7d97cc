"""``lfmlf`` command line: parses, then calls one function. Errors in the input print one paragraph and
exit with status 2, without a traceback."""
from __future__ import annotations

import argparse
import sys


def _sweep(args: argparse.Namespace) -> int:
    from lfmlf.config import load_sweep

    cfg = load_sweep(args.sweep, args.set)
    if args.check:
        print(f"{args.sweep}: valid. {len(cfg.methods)} method(s) x {cfg.search.num_samples} trials; "
              f"{len(cfg.source_sets())} candidate source sets; run folder {cfg.run_dir}")
        return 0
    from lfmlf.sweep import run  # Ray and torch load only once the input is known to be good

    outcome = run(cfg, resume=args.resume, address=args.address, tracking_uri=args.tracking_uri)
    return 0 if outcome.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfmlf", description="Method and hyper-parameter sweeps for "
                                     "multilingual fine-tuning on Ray Tune, Optuna and MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run (or resume) a sweep described by a YAML file")
    sweep.add_argument("sweep", help="the sweep YAML, e.g. sweeps/quickstart.yaml")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep in its run folder")
    sweep.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    sweep.add_argument("--tracking-uri", help="MLflow tracking URI (default: the YAML's tracking.uri, else "
                       "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a YAML key, e.g. --set train.max_steps=20 (repeatable)")
    sweep.add_argument("--check", action="store_true", help="validate the YAML and exit")
    sweep.set_defaults(func=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lfmlf.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"lfmlf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lfmlf: interrupted. Continue later with --resume; finished trials are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
