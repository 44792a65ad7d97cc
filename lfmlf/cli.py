"""``lfmlf`` command line: parses, then calls one function. Errors in the input print one paragraph and
exit with status 2, without a traceback.

Importing this module, and ``lfmlf --help``, load neither torch nor Ray nor MLflow: each command imports
what it runs inside its function (the comment there says which heavy package that keeps lazy).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lfmlf.config import SweepConfig
from lfmlf.contents import TIME_CAP_S, check_contents
from lfmlf.errors import USER_ERRORS, SweepError
from lfmlf.storage import Storage, redact


def _sweep(args: argparse.Namespace) -> int:
    # lazy: the registries (tasks, methods) import torch
    from lfmlf.checks import load_checked

    cfg = load_checked(args.sweep, _overrides(args))
    unread = check_contents(cfg)   # the data files' contents, with the trials' readers, before Ray
    if unread:
        print(f"lfmlf: data check stopped after {TIME_CAP_S:.0f} s; not read yet (the trials will): "
              f"{', '.join(unread)}", flush=True)
    if args.check:
        Storage(cfg.storage_location).check_writable()   # writes (and deletes) one probe file; creates no folder
        print(f"{args.sweep}: valid. {len(cfg.methods)} method(s) x {cfg.search.num_samples} trials; "
              f"{len(cfg.source_sets())} candidate source sets; results in {redact(cfg.storage_location)}")
        return 0
    from lfmlf.sweep import run  # lazy: Ray and torch load only once the input is known to be good

    outcome = run(cfg, resume=args.resume, address=args.address, tracking_uri=args.tracking_uri)
    return 0 if outcome.ok else 3   # 3: the sweep ran, but a method has no finished trial or too many failed


def _best(args: argparse.Namespace) -> int:
    # lazy: the registries import torch, the commands MLflow
    from lfmlf.checks import load_checked
    from lfmlf.commands import best

    cfg = load_checked(args.sweep, _overrides(args))
    best(cfg, args.tracking_uri, args.out, args.metric)
    return 0


def _train(args: argparse.Namespace) -> int:
    from lfmlf.commands import load_configuration, train  # lazy: torch and MLflow

    train(load_configuration(args.config, _overrides(args)), args.tracking_uri, args.seed, args.save)
    return 0


def _export(args: argparse.Namespace) -> int:
    # lazy: transformers and torch, and MLflow
    from transformers.utils import logging as hf_logging

    from lfmlf.export import export

    hf_logging.disable_progress_bar()   # save_pretrained's one-shard bar
    export(args.source, args.out, args.tracking_uri, averaged=args.averaged, log=not args.no_mlflow)
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from lfmlf.commands import load_configuration  # lazy: torch and MLflow

    if args.seeds < 1:
        raise SweepError(f"--seeds {args.seeds}: a rerun needs at least one seed. Fix: pass --seeds 2 or more.")
    configs: dict[str, SweepConfig] = {}
    for path in args.configs:
        key = Path(path).stem
        if key in configs:
            key = f"{key}-{len(configs)}"
        configs[key] = load_configuration(path, args.set)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    first = next(iter(configs.values()))
    location = args.output_dir or f"{Storage(first.storage_location).parent()}/rerun-{args.name or first.name}"
    from lfmlf.sweep import rerun  # lazy: Ray

    outcome = rerun(configs, seeds, location=location, resume=args.resume, address=args.address,
                    tracking_uri=args.tracking_uri)
    failed, total = outcome.errors.get("rerun", 0), len(configs) * len(seeds)
    return 0 if outcome.best and failed / total <= first.search.max_failed_share else 3


def _interpolate(args: argparse.Namespace) -> int:
    # lazy: the registries and the model import torch, the commands MLflow
    from lfmlf.checks import load_checked
    from lfmlf.commands import interpolate
    from lfmlf.interpolate import parse_alphas

    alphas = parse_alphas(args.alphas)   # a bad grid is refused before anything loads
    interpolate(load_checked(args.sweep, _overrides(args)), args.tracking_uri, args.run, args.method, args.all,
                alphas, args.metric, args.device)
    return 0


def _report(args: argparse.Namespace) -> int:
    # lazy: the registries import torch, the commands MLflow
    from lfmlf.checks import load_checked
    from lfmlf.commands import report

    hv_ref = _numbers("--hv-ref", args.hv_ref, 2) if args.hv_ref else None
    budgets = _numbers("--forgetting-at", args.forgetting_at) if args.forgetting_at else None
    command = shlex.join(["lfmlf", *sys.argv[1:]]) if sys.argv[1:2] == ["report"] else None
    report(load_checked(args.sweep, _overrides(args)), args.tracking_uri, args.rerun, args.out, args.metric,
           args.oracle, args.group_by, (hv_ref[0], hv_ref[1]) if hv_ref else None, budgets, command)
    return 0


def _numbers(option: str, text: str, count: int | None = None) -> list[float]:
    """``"0,76"`` -> ``[0.0, 76.0]`` for a report option; a clear error for anything else."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    bad = not values or any(v != v or v in (float("inf"), float("-inf")) for v in values)
    if bad or (count is not None and len(values) != count):
        want = f"{count} comma-separated numbers" if count else "comma-separated numbers"
        example = "0,76" if option == "--hv-ref" else "10,20,30"
        raise SweepError(f"{option} {text!r}: expected {want} in the table's units (× 100). Fix: e.g. "
                         f"{option} {example}.")
    return values


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, with ``--output-dir`` as ``output_dir`` (it wins)."""
    out = list(args.set)
    if getattr(args, "output_dir", None):
        out.append(f"output_dir={args.output_dir}")
    return out


def _output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", help="where Ray writes results and checkpoints: a folder every node sees "
                   "(NFS) or a URI such as s3://bucket/sweeps/x (default: the YAML's output_dir, else runs/<name>)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the YAML's tracking.uri, else "
                   "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a YAML key, e.g. --set train.max_steps=20 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lfmlf", description="Method and hyper-parameter sweeps for "
                                     "multilingual fine-tuning on Ray Tune, Optuna and MLflow.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run (or resume) a sweep described by a YAML file")
    sweep.add_argument("sweep", help="the sweep YAML, e.g. sweeps/quickstart.yaml")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep in its run folder")
    sweep.add_argument("--address", help="address of an existing Ray cluster (default: the YAML's ray.address, "
                       "else start a local one)")
    _output_dir(sweep)
    _common(sweep)
    sweep.add_argument("--check", action="store_true", help="validate the YAML and exit")
    sweep.set_defaults(func=_sweep)

    p = sub.add_parser("best", help="write each method's best configuration of a finished sweep as YAML")
    p.add_argument("sweep", help="the sweep YAML the sweep ran from")
    p.add_argument("--out", help="folder for the configuration files (default: the run folder's best/)")
    p.add_argument("--metric", help="selection metric (default: the sweep's search metric, source-language dev); "
                   "its label (source-language dev, target-language = oracle, or the key as is) goes into the "
                   "rule and the file, e.g. best/zero_shot/{metric}/avg is an oracle, not zero-shot")
    _output_dir(p)
    _common(p)
    p.set_defaults(func=_best)

    p = sub.add_parser("train", help="run one configuration without a search, tracked in MLflow")
    p.add_argument("config", help="a configuration file (from `lfmlf best`, or a sweep file with one method)")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--save", metavar="DIR", help="write the selected evaluation's model to DIR as `lfmlf export` "
                   "does (with train.average_last also the averaged one, to DIR-averaged) and log it to the run")
    _common(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="write a trial's selected model as a Hugging Face directory, logged to MLflow")
    p.add_argument("source", help="a trial's MLflow run id, or a configuration file written by `lfmlf best`")
    p.add_argument("--out", help="output folder (default: models/<stem> next to the best/ folder of a best "
                   "file, else models/<run id> here)")
    p.add_argument("--averaged", action="store_true", help="export the mean of the last train.average_last "
                   "evaluations (the avg/* scores) instead of the selected evaluation (the best/* scores)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the export to the trial's MLflow run")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the best file's, else "
                   "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)")
    p.set_defaults(func=_export)

    p = sub.add_parser("rerun", help="run configurations with several seeds on Ray, under one MLflow run")
    p.add_argument("configs", nargs="+", help="configuration files (from `lfmlf best`)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ...")
    p.add_argument("--name", help="name of the rerun (default: rerun-<first configuration's name>)")
    _output_dir(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted rerun")
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    _common(p)
    p.set_defaults(func=_rerun)

    p = sub.add_parser("interpolate", help="score runs' selected checkpoints at theta0 + alpha (theta - theta0) "
                       "(the WiSE-FT baseline) and log each point as method interp:<method>")
    p.add_argument("sweep", help="the sweep YAML")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", action="append", metavar="RUN_ID", help="a trial's MLflow run id (repeatable; "
                       "default: each method's best eligible trial, as `lfmlf best` picks it)")
    which.add_argument("--best", action="store_true", help="each method's best eligible trial (the default)")
    which.add_argument("--all", action="store_true", help="every eligible (finished, not stopped early) trial")
    p.add_argument("--method", action="append", metavar="M", help="only these methods of the sweep (repeatable)")
    p.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="comma-separated alpha grid (default "
                   "0,0.25,0.5,0.75,1; 0 = theta0's encoder with the run's head, 1 = the run's selected model)")
    p.add_argument("--metric", help="selection metric for the best trial (default: the sweep's search metric)")
    p.add_argument("--device", default="auto", help="device to score on: auto (a GPU if there is one), cpu, cuda")
    _output_dir(p)
    _common(p)
    p.set_defaults(func=_interpolate)

    p = sub.add_parser("report", help="tables (Markdown, LaTeX, CSV) and plots of a sweep and its rerun")
    p.add_argument("sweep", help="the sweep YAML")
    p.add_argument("--rerun", help="MLflow run id of the rerun to tabulate (default: the newest rerun of the "
                   "sweep's best configurations; without one, the sweep's best trials)")
    p.add_argument("--out", help="output folder (default: the run folder's report/)")
    p.add_argument("--metric", help="selection metric of the sweep's best trials when there is no rerun (default: "
                   "the sweep's search metric; a rerun uses the metric `lfmlf best` recorded)")
    p.add_argument("--oracle", action="store_true", help="add, for each method, the sweep trial that target-"
                   "language scores would have picked, as a marked oracle row beside the zero-shot-faithful one")
    p.add_argument("--group-by", choices=("script", "family"), help="group the target languages by script "
                   "(ISO 15924) or family (Glottolog): group-average columns, grouped bars and per-language "
                   "retrieval table")
    p.add_argument("--hv-ref", metavar="Z,F", help="the fronts' hypervolume reference point: zero-shot Z and "
                   "forgetting drop F in the table's units (default: 0 and theta0's retrieval, i.e. total "
                   "forgetting)")
    p.add_argument("--forgetting-at", metavar="X1,X2,...", help="forgetting budgets (drops, table units) for "
                   "the best zero-shot at drop <= X table (default: four spread over the fronts' range)")
    _output_dir(p)
    _common(p)
    p.set_defaults(func=_report)
    return parser


def _version() -> str:
    try:
        return version("lfmlf")
    except PackageNotFoundError:   # a source tree on sys.path without an install
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
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
