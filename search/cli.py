"""The ``mathtune`` command line.

    mathtune families                       # what can be trained
    mathtune spaces                         # shipped search spaces
    mathtune train arith-text2text --set hidden=512 --set split=0.5
    mathtune search arith-text2text-addsub --num-samples 8
    mathtune resume runs/arith-text2text-addsub-20261122-101500
    mathtune report runs/arith-text2text-addsub-20261122-101500

Every user error ends in one line on stderr (``mathtune: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

EPILOG = "Run `mathtune COMMAND --help` for the options of one command."


class UserError(Exception):
    """Shown as one line, exit 2."""


def _parse_sets(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected KEY=VALUE (e.g. --set hidden=512)")
        key, value = pair.split("=", 1)
        if not key:
            raise UserError(f"--set {pair!r}: empty key")
        out[key.strip()] = value.strip()
    return out


def _load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {path}: file not found")
    try:
        payload = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: not valid JSON ({exc})") from None
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        payload = payload["config"]  # files written by `mathtune best` carry metadata around the config
    if not isinstance(payload, dict):
        raise UserError(f"--config {path}: expected a JSON object of parameter values")
    return payload


def cmd_families(args: argparse.Namespace) -> int:
    from mathtune.trainables.registry import family_names, get_family

    for name in family_names():
        fam = get_family(name)
        print(f"{name:20s} {fam.description}")
        if args.verbose:
            for key, p in sorted(fam.all_params().items()):
                print(f"    {key:16s} default {p.default!r:10} {p.help}")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from mathtune.spaces.loader import load_space, space_names

    for name in space_names():
        space = load_space(name)
        print(f"{name:28s} {space.family:18s} {space.description}")
        if args.verbose:
            for factor, values in space.factors.items():
                print(f"    factor {factor}: {values}")
            for pname, spec in space.params.items():
                print(f"    {pname}: {spec.describe()}")
            for cname, value in space.constants.items():
                print(f"    {cname} = {value!r}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mathtune.trainables import get_family, train

    family = get_family(args.family)
    overrides = _load_config_file(args.config) if args.config else {}
    overrides = {k: v for k, v in overrides.items() if k in family.all_params() or not args.config}
    overrides.update(_parse_sets(args.set))
    config = family.make_config(overrides, where="--set" if not args.config else f"{args.config} / --set")
    out = Path(args.out or Path("runs") / "train" / f"{family.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[mathtune] training {family.name}; checkpoints in {out} (run the same command with --out {out} "
          f"to resume)", flush=True)
    t0 = time.perf_counter()
    result = train(family, config, checkpoint_dir=out, progress=None if args.quiet else
                   (lambda line: print(line, flush=True)))
    wall = time.perf_counter() - t0
    summary = {"family": family.name, "config": config, "best": result["best"], "last": result["last"],
               "wall_time_s": wall, "data": family.describe_data(result["data"])}
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, out / "result.json")
    best = result["best"] or {}
    metric = family.metric
    test_metric = metric.replace("val_", "test_", 1)
    print(f"[mathtune] best epoch {best.get('epoch')}: {metric} {best.get(metric, float('nan')):.4f}, "
          f"{test_metric} {best.get(test_metric, float('nan')):.4f}; {wall:.0f} s; summary in {out / 'result.json'}")
    return 0


def _search_options(args: argparse.Namespace):
    from mathtune.search.engine import SearchOptions

    return SearchOptions(num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         scheduler=args.scheduler, storage_path=args.storage_path, name=args.name,
                         address=args.address, seed=args.seed, optuna_storage=args.optuna_storage,
                         max_failures=args.max_failures, overrides=_parse_sets(args.set),
                         dashboard=not args.no_dashboard, verbose=args.verbose)


def cmd_search(args: argparse.Namespace) -> int:
    from mathtune.search.engine import run_search

    outcome = run_search(args.space, _search_options(args))
    if not args.no_report:
        _write_report([outcome.experiment_dir], None)
    return 130 if outcome.interrupted else 0


def cmd_resume(args: argparse.Namespace) -> int:
    from mathtune.search.engine import resume_search

    outcome = resume_search(args.experiment, address=args.address, dashboard=not args.no_dashboard)
    _write_report([outcome.experiment_dir], None)
    return 130 if outcome.interrupted else 0


def _write_report(dirs: Sequence[Path], out: str | None) -> None:
    from mathtune.analysis.report import write_report

    path = write_report([Path(d) for d in dirs], Path(out) if out else None)
    print(f"[mathtune] report written: {path}", flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    _write_report([Path(d) for d in args.experiments], args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mathtune", description="Optuna-guided Ray Tune searches over "
                                     "sequence-to-sequence models that do math.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("families", help="list the model families and their parameters")
    p.add_argument("-v", "--verbose", action="store_true", help="show every parameter with default and help")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("spaces", help="list the shipped search spaces")
    p.add_argument("-v", "--verbose", action="store_true", help="show factors, searched ranges and constants")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("train", help="train one configuration without Ray (checkpoints, resume)",
                       description="Train one configuration of a family with the shared loop. Running the same "
                                   "command with the same --out resumes from the last checkpoint.")
    p.add_argument("family", help="a family name (see `mathtune families`)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one parameter (repeatable), e.g. --set hidden=512 --set split=0.5")
    p.add_argument("--config", metavar="FILE", help="JSON file of parameter values (e.g. from `mathtune best`); "
                                                   "--set overrides it")
    p.add_argument("--out", metavar="DIR", help="checkpoint folder (default runs/train/FAMILY-TIME)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="run an Optuna-guided Ray Tune search over a space",
                       description="Search a space (a shipped name, see `mathtune spaces`, or a path to your own "
                                   "YAML file). Trials select and stop on validation data only; test metrics are "
                                   "recorded for the report. Interrupt with Ctrl-C and continue with "
                                   "`mathtune resume EXP_DIR`.")
    p.add_argument("space", help="shipped space name or path to a space YAML file")
    p.add_argument("--num-samples", type=int, default=8, help="number of trials (default 8)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: as many as the cluster's CPUs/GPUs allow)")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs per trial (default from the space file, else 1); torch uses this many threads")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial; fractions pack several small trials on one GPU (e.g. 0.25)")
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha",
                   help="asha: stop weak trials early on the validation metric (default); none: run all epochs")
    p.add_argument("--storage-path", default="runs",
                   help="where experiment folders go (default ./runs); on a multi-node cluster use shared "
                        "storage (NFS path or s3://bucket/prefix)")
    p.add_argument("--name", help="experiment folder name (default SPACE-DATE-TIME)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://head:10001); default: "
                                     "start a local Ray on 127.0.0.1")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="SQLAlchemy URL for the Optuna studies (default sqlite in the experiment folder; "
                        "e.g. postgresql://user@head/optuna on a cluster)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its last "
                                                               "checkpoint (default 2)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="fix a parameter for this search (removes it from the search), e.g. --set epochs=5")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard (local Ray only)")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Tune's console output level")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="finish an interrupted search (Tuner.restore, searcher state included)")
    p.add_argument("experiment", help="the experiment folder printed by `mathtune search`")
    p.add_argument("--address", help="Ray cluster to join (default: local Ray on 127.0.0.1)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("report", help="write the report of one or more experiments")
    p.add_argument("experiments", nargs="+", help="experiment folders")
    p.add_argument("--out", help="output folder (default: the first experiment's folder)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mathtune.spaces.loader import SpaceError
    from mathtune.trainables.base import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    expected: tuple[type[BaseException], ...] = (UserError, SpaceError, ConfigError, FileNotFoundError,
                                                 NotADirectoryError, PermissionError)
    try:
        from mathtune.search.engine import SearchError

        expected += (SearchError,)
        expected += _family_errors()
        return int(args.func(args) or 0)
    except expected as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mathtune: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mathtune: interrupted", file=sys.stderr)
        return 130


def _family_errors() -> tuple[type[BaseException], ...]:
    """Data errors that families raise for bad input files (one line each)."""
    errors: list[type[BaseException]] = []
    for module, name in (("mathtune.trainables.t2m.data", "DataError"),
                         ("mathtune.trainables.t2m.executor", "ExecutionError"),
                         ("mathtune.trainables.arith.mnist", "MnistError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
