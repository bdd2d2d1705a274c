"""The ``mathtune`` command line.

    mathtune families                       # what can be trained
    mathtune spaces                         # shipped search spaces
    mathtune train FAMILY --set hidden=512 --set split=0.5
    mathtune search SPACE --num-samples 8
    mathtune resume runs/SPACE-20261122-101500
    mathtune dashboard runs/SPACE-20261122-101500   # the Optuna studies, live, on 127.0.0.1
    mathtune report runs/SPACE-20261122-101500 [more experiments] [--out DIR]
    mathtune best runs/SPACE-20261122-101500 --out best.json
    mathtune ship NAME runs/A-s0 runs/A-s1 --produced-by "..."   # runs -> trainables/configs/NAME.json

Families add commands of their own through the ``mathtune.commands`` entry-point group
(:mod:`mathtune.trainables.commands`); they appear beside these in ``mathtune --help``.

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

from mathtune.analysis.best import best_config, write_best
from mathtune.analysis.pareto import front_lines, objectives_of, pareto_front
from mathtune.analysis.reference import load_reference
from mathtune.analysis.report import FORMATS, write_report
from mathtune.analysis.run_report import is_train_run, write_run_report
from mathtune.analysis.ship import ship
from mathtune.analysis.shipped import shipped_versus_reference
from mathtune.analysis.store import EXPERIMENT_FILE
from mathtune.analysis.tidy import load_tables
from mathtune.search.budget import parse_duration
from mathtune.search.dashboard import open_dashboard
from mathtune.search.engine import SearchOptions, resume_search, run_search
from mathtune.spaces.loader import load_space, space_names
from mathtune.trainables.atomic import write_text
from mathtune.trainables.commands import family_commands
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.loop import train
from mathtune.trainables.metrics import test_metric_for
from mathtune.trainables.records import RunRecord, ShippedRecord
from mathtune.trainables.registry import family_names, get_family

__all__ = ["main", "build_parser"]

EPILOG = "Run `mathtune COMMAND --help` for the options of one command."


class UserError(MathtuneError):
    """Shown as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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
    if isinstance(payload, dict) and set(ShippedRecord.REQUIRED) <= payload.keys():
        # a shipped configuration (trainables/configs): its runs' threads and device are provenance, never taken
        # from it (older files still hold them in their config); a plain file's threads are its writer's choice
        payload = ShippedRecord.from_dict(payload, where=path).train_config()
    elif isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        payload = payload["config"]  # files written by `mathtune best` carry metadata around the config
    if not isinstance(payload, dict):
        raise UserError(f"--config {path}: expected a JSON object of parameter values")
    return payload


def cmd_families(args: argparse.Namespace) -> int:
    names = family_names()
    width = max(map(len, names), default=20)
    for name in names:
        fam = get_family(name)
        print(f"{name:{width}s} {fam.description}")
        if args.verbose:
            if fam.ships_model:
                print(f"    mathtune ship: a {fam.ships_model} run ships with its trained model")
            for key, p in sorted(fam.all_params().items()):
                default = "auto" if key == "threads" and p.default == 0 else repr(p.default)
                print(f"    {key:16s} default {default:10} {p.help}")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
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
            for dname, values in space.decode.items():
                print(f"    decode-time {dname}: {values} (trained at {values[0]!r}, each trial scored at every value)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    family = get_family(args.family)
    saved = _load_config_file(args.config) if args.config else None
    sets = _parse_sets(args.set)
    if saved is not None:  # a saved configuration: keys of older versions are left out, --set checked on top
        config = family.read_config(saved, sets, where=f"{args.config} / --set")
    else:
        config = family.make_config(sets, where="--set")
    out = Path(args.out or Path("runs") / "train" / f"{family.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    created = [d for d in (out, *out.parents) if not d.exists()]  # leaf first
    out.mkdir(parents=True, exist_ok=True)
    print(f"[mathtune] training {family.name}; checkpoints in {out} (run the same command with --out {out} "
          f"to resume)", flush=True)
    t0 = time.perf_counter()
    try:
        result = train(family, config, checkpoint_dir=out, progress=None if args.quiet else
                       (lambda line: print(line, flush=True)))
    except BaseException:
        for folder in created:  # failed before writing anything (bad data path, ...): leave no empty folders
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    wall = time.perf_counter() - t0
    # a resumed run's wall time is the whole run's: this process's plus the epochs the earlier ones trained
    resumed_after = int(result.get("resumed_after") or 0)
    earlier = sum(float(h.get("epoch_time_s") or 0) for h in result["history"] if int(h["epoch"]) <= resumed_after)
    record = RunRecord(family=family.name, config=config.as_dict(), best=result["best"] or {}, last=result["last"],
                       wall_time_s=wall + earlier, data=family.describe_data(result["data"]),
                       provenance=result["provenance"], resumed_after_epoch=resumed_after or None,
                       this_process_wall_time_s=wall if resumed_after else None)
    path = record.write(out)
    best = record.best
    metric = family.metric
    test_metric = test_metric_for(metric)
    test_part = f", {test_metric} {best[test_metric]:.4f}" if test_metric in best else ""
    print(f"[mathtune] best epoch {best.get('epoch')}: {metric} {best.get(metric, float('nan')):.4f}{test_part}; "
          f"{wall + earlier:.0f} s" + (f" ({wall:.0f} s since resuming after epoch {resumed_after})"
                                       if resumed_after else "") + f"; summary in {path}")
    return 0


def _search_options(args: argparse.Namespace):
    budget = parse_duration(args.budget) if args.budget is not None else None
    num_samples = args.num_samples if args.num_samples is not None else (-1 if budget else 8)
    return SearchOptions(num_samples=num_samples, budget=budget, max_concurrent=args.max_concurrent,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         scheduler=args.scheduler, storage_path=args.storage_path, name=args.name,
                         address=args.address, seed=args.seed, optuna_storage=args.optuna_storage,
                         max_failures=args.max_failures, overrides=_parse_sets(args.set),
                         sampler=args.sampler, searcher=args.searcher,
                         dashboard=not args.no_dashboard, verbose=args.verbose, tensorboard=args.tensorboard,
                         confirm_top=args.confirm_top, confirm_seeds=args.confirm_seeds,
                         startup_trials=args.startup_trials,
                         asha={k: v for k, v in (("grace_period", args.grace_period),
                                                 ("reduction_factor", args.reduction_factor),
                                                 ("brackets", args.brackets)) if v is not None})


def cmd_search(args: argparse.Namespace) -> int:
    outcome = run_search(args.space, _search_options(args))
    if not args.no_report:
        _write_report([outcome.experiment_dir], None)
    return 130 if outcome.interrupted else 0


def cmd_resume(args: argparse.Namespace) -> int:
    outcome = resume_search(args.experiment, address=args.address, dashboard=not args.no_dashboard)
    if not args.no_report:
        _write_report([outcome.experiment_dir], None)
    return 130 if outcome.interrupted else 0


def cmd_status(args: argparse.Namespace) -> int:
    from mathtune.search.status import experiment_status

    now = time.time()  # one moment for every folder's "ago"
    blocks = [experiment_status(exp, now=now) for exp in args.experiments]  # all read before anything prints
    print("\n\n".join("\n".join(lines) for lines in blocks), flush=True)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    server = open_dashboard(args.experiment, port=args.port)
    names = ", ".join(server.study_names)
    print(f"[mathtune] optuna-dashboard: {server.url} ({len(server.study_names)} stud"
          f"{'y' if len(server.study_names) == 1 else 'ies'}: {names}; {server.trial_count()} trials so far); "
          f"Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("[mathtune] dashboard stopped", flush=True)
    return 0


def _write_report(dirs: Sequence[Path], out: str | None, **options: Any) -> None:
    path = write_report([Path(d) for d in dirs], Path(out) if out else None, **options)
    html = path.with_suffix(".html")
    print(f"[mathtune] report written: {path}" + (f" and {html.name}" if html != path and html.is_file() and
                                                   "html" in options.get("formats", ("html",)) else ""), flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"--format {args.format!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")

    runs = [d for d in args.experiments if not (Path(d) / EXPERIMENT_FILE).is_file() and is_train_run(d)]
    if runs:
        if len(args.experiments) > 1:
            raise UserError(f"{runs[0]}: a `mathtune train` folder gets a report of its own; give it alone")
        path = write_run_report(runs[0], args.out, formats=formats)
        print(f"[mathtune] report written: {path}" + (f" and {path.with_suffix('.html')}"
                                                       if "html" in formats and "md" in formats else ""))
        return 0
    for d in args.experiments:
        if not (Path(d) / EXPERIMENT_FILE).is_file():
            raise UserError(f"{d}: not a mathtune experiment folder (no {EXPERIMENT_FILE}) nor a `mathtune train` "
                            f"folder (no last/config.json)")
    _write_report([Path(d) for d in args.experiments], args.out, formats=formats, params=args.param or None,
                  top=args.top, predictions=not args.no_predictions)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    if not (Path(args.experiment) / EXPERIMENT_FILE).is_file():
        raise UserError(f"{args.experiment}: not a mathtune experiment folder (no {EXPERIMENT_FILE})")
    if args.pareto:
        return _print_pareto(args)
    payload = best_config(args.experiment, where=_parse_sets(args.where))
    if args.out:
        path = write_best(payload, args.out)
        metric = payload["metric"]
        test = test_metric_for(metric)
        factors = ", ".join(f"{k}={v}" for k, v in payload["factors"].items()) or "all"
        print(f"[mathtune] best trial {payload['trial_id']} ({factors}) "
              f"epoch {payload['epoch']}: {metric} {payload[metric]:.4f} (test, reported only: {test} "
              f"{payload.get(test) if payload.get(test) is None else format(payload[test], '.4f')}); "
              f"checkpoint {payload['checkpoint']}", flush=True)
        if payload.get("confirmed"):
            c = payload["confirmed"]
            test_part = "" if c.get("test_mean") is None else \
                f" (test, reported only: {c['test_mean']:.4f} +- {c['test_sd']:.4f})"
            print(f"[mathtune] confirmed winner: {metric} {c['mean']:.4f} +- {c['sd']:.4f} over "
                  f"{len(c['seeds'])} new seed(s) {c['seeds']}{test_part}", flush=True)
        print(f"[mathtune] written: {path}; reproduce with: mathtune train {payload['family']} --config {path}",
              flush=True)
    else:
        print(json.dumps(payload, indent=1, default=str))
    return 0


def _print_pareto(args: argparse.Namespace) -> int:
    tables = load_tables(args.experiment, optuna=False)
    experiment = next(iter(tables.metas))
    if not objectives_of(tables.metas[experiment]):
        raise UserError(f"{args.experiment}: --pareto needs a space with several objectives (objectives: in the "
                        f"space file); this experiment has one, {tables.metas[experiment].metric}")
    lines = front_lines(tables, experiment)
    if not lines:
        raise UserError(f"{args.experiment}: no trial has reported every objective yet")
    print("\n".join(lines), flush=True)
    if args.out:
        front = pareto_front(tables, experiment)
        rows = json.loads(front.drop(columns=["on_front"]).to_json(orient="records"))
        path = write_best({"experiment": experiment, "objectives": tables.metas[experiment].objectives,
                           "front": rows}, args.out)
        print(f"[mathtune] written: {path}", flush=True)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    known = sorted({r["family"] for r in load_reference()})
    bad = [f for f in args.family or [] if f not in known]
    if bad:
        raise UserError(f"--family {bad[0]}: no reference rows for it (families with rows: {', '.join(known)})")
    table = shipped_versus_reference(families=set(args.family) if args.family else None)
    text = f"## {table.title}\n\n{table.to_markdown()}\n\n{table.note}\n"
    if args.out:
        write_text(args.out, text)  # an unwritable path is main()'s one-line OSError
        print(f"[mathtune] written: {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    ship(args.name, args.runs, produced_by=args.produced_by, note=args.note, search=args.search,
         configs_dir=args.configs_dir, train_only=args.train_only, weights=args.weights, widths=args.widths,
         threads=args.threads, select=args.select, select_width=args.select_width, select_pool=args.select_pool,
         log=lambda line: print(line, flush=True))
    return 0


SHIP_DESCRIPTION = """\
Write finished runs as a shipped configuration, trainables/configs/NAME.json: a `mathtune train FAMILY
--config FILE` input that carries the figure its runs measured, selected on validation (test reported
only), the data it was measured on, the wall time, where the runs trained (provenance: CPU, torch
threads, device, versions, commit, as each run recorded them) and the command that produced them. How
a run was executed (threads, device) is provenance, never configuration: the shipped config leaves them
out, so `mathtune train --config` uses the machine it runs on.

A family whose runs ship as a configuration (the default): RUN... are finished runs of one configuration
(several training seeds; only seed may differ): `mathtune train` folders, or Tune trial folders of a search or of its confirmation
(EXP/confirm/trial_*: the confirmed winner's new-seed runs; with --search EXP the file names the search). The figure is the best epoch's val_*/test_* metrics, the mean
over the runs with each run's value under figure.seeds, plus the family's train figures (train_*):
each run's best/ checkpoint scored on its own training queries in eval mode. --train-only adds just
these to an already shipped NAME.json from the runs that produced it.

A family that ships its trained model (Family.ships_model; `mathtune families -v` says which): one RUN, a
`mathtune train` folder (its best/), a checkpoint or a Tune trial folder, whose model names its family.
The family measures the figures on the run's best checkpoint itself, at each decode width of --widths
(default: the family's). --weights WNAME also ships the model as pretrained:WNAME
(trainables/weights/WNAME/), measured again from the shipped file. Several such RUNs with --weights WNAME
ship as one ensemble model, pretrained:WNAME: its members (one per RUN, in order, under
trainables/weights/WNAME/members/) decode as one, as `mathtune evaluate --ensemble` does, measured from the
shipped files; they must share their training file (program vocabulary) and take at most 40 MB in
float16 in all. An ensemble is no `mathtune train` input: no NAME.json is written for it.

--select K chooses the members instead of taking every RUN: give many (a search's EXP/trial_* and
EXP/confirm/trial_*). The --select-pool runs with the best dev figures their runs recorded are decoded on dev
at beam --select-width, alone, and the best alone is the first member; each round then adds the vote that
raises the ensemble's dev execution accuracy most: a new member (while there are fewer than K and they fit in
40 MB) or one more vote for a member already in (with replacement: a member with two votes counts twice in the
mean of probabilities, and the model records its votes). Selection stops when no vote raises it, or at 2K votes
in all. Dev is validation: the choice, like the figures, never reads the test split. The
choice and each round's figure are printed and recorded in the shipped model (`selected`); one chosen run
ships alone. The first usable RUN fixes the dev file and the program vocabulary; runs without a checkpoint
(a trial that failed), with another vocabulary or another dev file are left out with a line, not refused."""

SHIP_EPILOG = """\
examples:
  mathtune ship arith-text2text-mul-60 runs/mul60-s0 runs/mul60-s1 runs/mul60-s2 \\
      --produced-by "mathtune train arith-text2text --config ... --set seed=N --out runs/mul60-sN"
  mathtune ship arith-text2text-mul-40 runs/mul40-240 --train-only
  mathtune ship arith-text2text-mul-60 runs/campaign-mul60/confirm/trial_* --search runs/campaign-mul60 \\
      --produced-by "mathtune search arith-text2text-mul --set split=0.6 --budget 12h ... --name campaign-mul60"
  mathtune ship t2m-lstm runs/lstm-ls30 --weights t2m \\
      --produced-by "mathtune train t2m-lstm --set ... --out runs/lstm-ls30"
  mathtune ship t2m-ens runs/lstm-ls30 runs/frozen30 --weights t2m-ens \\
      --produced-by "mathtune train t2m-lstm ... --out runs/lstm-ls30; mathtune train t2m-bert-frozen ..."
  mathtune ship t2m runs/campaign-t2m/trial_* runs/campaign-t2m/confirm/trial_* --weights t2m --select 4 \\
      --search runs/campaign-t2m --produced-by "mathtune search t2m-glove --budget 12h ... --name campaign-t2m"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mathtune", description="Optuna-guided Ray Tune searches over "
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
    p.add_argument("--config", metavar="FILE",
                   help="JSON file of parameter values (e.g. from `mathtune best`), taken as written; --set "
                        "overrides it. A shipped configuration (trainables/configs/NAME.json) gives no thread "
                        "count or device (how its runs were executed is its provenance): the run uses this "
                        "machine (threads: all cores) unless --set threads=N")
    p.add_argument("--out", metavar="DIR", help="checkpoint folder (default runs/train/FAMILY-TIME)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="run an Optuna-guided Ray Tune search over a space",
                       description="Search a space (a shipped name, see `mathtune spaces`, or a path to your own "
                                   "YAML file). Trials select and stop on validation data only; test metrics are "
                                   "recorded for the report. Interrupt with Ctrl-C and continue with "
                                   "`mathtune resume EXP_DIR`.")
    p.add_argument("space", help="shipped space name or path to a space YAML file")
    p.add_argument("--num-samples", type=int, default=None,
                   help="number of trials (default 8; with --budget, no cap: the budget ends the search)")
    p.add_argument("--budget", metavar="DURATION",
                   help="compute budget of the search, e.g. 8h, 90m, 1h30m or 3600 (seconds). It is wall-clock "
                        "time of the search, not CPU-hours: what a fixed machine or a cluster is held (and billed) "
                        "for, the same whatever the concurrency, and what Tune's time_budget_s counts; with two "
                        "one-CPU trials at a time, 8h is 16 CPU-hours. No trial starts that cannot finish in what is "
                        "left (its epochs x the median seconds per epoch so far); when the budget is spent the "
                        "running trials stop at their last checkpointed epoch and the report is written. "
                        "`mathtune resume` keeps counting from where the search stopped (EXP/budget.json); time "
                        "between sessions does not count. With --confirm-top the confirmation comes out of the same "
                        "budget: the search keeps back what retraining its current leaders needs (at most half the budget)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: as many as the cluster's CPUs/GPUs allow)")
    p.add_argument("--cpus-per-trial", type=float, default=None,
                   help="CPUs per trial (default from the space file, else 1); torch uses this many threads")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial; fractions pack several small trials on one GPU (e.g. 0.25)")
    p.add_argument("--scheduler", choices=("asha", "optuna", "none"), default="asha",
                   help="asha: stop weak trials early on the validation metric (default); optuna: Optuna's "
                        "HyperbandPruner decides instead, with the same grace period and reduction factor (the "
                        "route an Optuna user knows; compared in docs/benchmarks.md); none: run all epochs. "
                        "With several objectives (a space's objectives:) ASHA stops on the first one only: a "
                        "small model that learns slowly can be stopped before its size pays off, so choose none "
                        "when the other objectives matter as much as the first")
    p.add_argument("--grace-period", type=int, metavar="EPOCHS",
                   help="ASHA: epochs every trial runs before its first cut (default from the space's scheduler:, "
                        "else 1); a family whose curves climb late needs it long enough not to cut them off")
    p.add_argument("--reduction-factor", type=float, metavar="ETA",
                   help="ASHA: keep the top 1/ETA of trials at each rung (default from the space, else 3)")
    p.add_argument("--brackets", type=int, metavar="N",
                   help="ASHA brackets, Hyperband-style (default from the space, else 1): bracket s makes its first "
                        "cut at grace x ETA^s, so some trials run longer before any cut; a hedge for late-blooming "
                        "curves, at the price of fewer trials cut early")
    p.add_argument("--storage-path", default=os.environ.get("MATHTUNE_STORAGE_PATH") or "runs",
                   help="where experiment folders go (default $MATHTUNE_STORAGE_PATH, else ./runs); on a "
                        "multi-node cluster use shared storage (an NFS path, as cluster.yaml mounts)")
    p.add_argument("--name", help="experiment folder name (default SPACE-DATE-TIME)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://head:10001); default: "
                                     "start a local Ray on 127.0.0.1")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--startup-trials", type=int, metavar="N",
                   help="TPE: random trials per study before the model guides (default a third of the trials "
                        "per study, 2 to 10; both searchers use it)")
    p.add_argument("--sampler", choices=("tpe", "rung-tpe", "random", "grid"), default="tpe",
                   help="Optuna sampler: tpe (default; Optuna's TPESampler, multivariate with constant liar, in "
                        "its multi-objective form when the space names several objectives), rung-tpe (BOHB-like: "
                        "TPE fitted on every trial's value at the highest ASHA rung enough trials reached, so "
                        "stopped trials teach it as much as finished ones), random (a baseline) "
                        "or grid (every combination of the space's choices and int ranges once, in a seeded order; "
                        "--num-samples at most the grid size; with --scheduler none it tabulates the space)")
    p.add_argument("--searcher", choices=("mathtune", "stock"), default="mathtune",
                   help="mathtune (default): one study per factor value, intermediate values, PRUNED/best-value "
                        "reporting, safe resume; stock: Ray's OptunaSearch, for comparison")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="SQLAlchemy URL for the Optuna studies (default sqlite in the experiment folder; "
                        "e.g. postgresql://user@head/optuna on a cluster)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its last "
                                                               "checkpoint (default 2)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="fix a parameter for this search (removes it from the search), e.g. --set epochs=5")
    p.add_argument("--confirm-top", type=int, default=0, metavar="K",
                   help="once the search ends, retrain its K best trials by validation (per study-factor value) "
                        "with new training seeds, every epoch, as a second experiment in EXP/confirm (resumed by "
                        "mathtune resume like the search); the winner is the best mean validation, reported as "
                        "mean +- sd beside its single search run; mathtune best then prints it (default 0: off)")
    p.add_argument("--confirm-seeds", type=int, default=3, metavar="S",
                   help="new training seeds per confirmed trial, the trial's seed + 1 ... + S (default 3)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard (local Ray only)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files in every trial folder (tensorboard --logdir EXP); off "
                        "by default: they cost the driver about 20 ms a trial and no mathtune command reads them")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--verbose", type=int, nargs="?", const=2, default=0, choices=(0, 1, 2, 3), metavar="LEVEL",
                   help="console output. Default (0): mathtune's own lines: each trial's start (its searched "
                        "parameters), its selection metric every few epochs, its end (finished, stopped by ASHA at "
                        "epoch k, errored) and a status line every 30 s with the best so far and the time left. "
                        "--verbose (2) brings back Ray Tune's full output (trial tables, every result, the trials' "
                        "own log lines); --verbose 1 Tune's experiment-level lines only")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="finish an interrupted search (Tuner.restore, searcher state included)",
                       description="Finish an interrupted search from its experiment folder. Like Ray's restore, "
                                   "this unpickles the searcher's, scheduler's and tuner's saved state, so only "
                                   "resume folders you trust: a folder or state file that is not yours, or that "
                                   "every user can write, is refused.")
    p.add_argument("experiment", help="the experiment folder printed by `mathtune search`")
    p.add_argument("--address", help="Ray cluster to join (default: local Ray on 127.0.0.1)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the report at the end (`mathtune report EXPERIMENT` writes it any time)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="where a search stands: running, interrupted or finished, trials, best, budget",
                       description="Read an experiment folder and say where its search stands, while it runs or "
                                   "after: whether a driver (a `mathtune search` or `resume`) runs it now, and which "
                                   "(pid, host, since when), or whether it was interrupted (with the resume command) "
                                   "or finished; its trials by status and when the last epoch was reported; the "
                                   "best trial per factor value on the selection metric (validation; test is never "
                                   "shown here); the budget spent; the confirmation's state. Starts no Ray and "
                                   "writes nothing. A second driver on the same folder is refused: one runs it at a "
                                   "time.")
    p.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                   help="experiment folders printed by `mathtune search` (several: one block each)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("dashboard", help="serve an experiment's Optuna studies with optuna-dashboard (127.0.0.1)",
                       description="Serve the experiment's Optuna studies (one per study-factor value, from the "
                                   "storage the search recorded: optuna.journal in the folder (optuna.db in older ones), or its --optuna-storage "
                                   "URL) with optuna-dashboard on 127.0.0.1: optimisation history, intermediate "
                                   "values of every trial (ASHA-stopped ones show as PRUNED), parameter importance "
                                   "and slices. It only reads the studies, so it works while the search runs "
                                   "(reload to see new trials) and after it has finished. The Ray dashboard that "
                                   "`mathtune search` prints (http://127.0.0.1:8265) shows the trials' processes "
                                   "and logs; this one shows what Optuna learnt. On a cluster, run it on the head "
                                   "and reach it through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT head).")
    p.add_argument("experiment", help="the experiment folder printed by `mathtune search`")
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080; 0 picks a free one)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="write the report of one or more experiments (Markdown, HTML, LaTeX)",
                       description="Tables (best per factor, per parameter value, top-k, family summary, versus the "
                                   "reference reports), plots, importance and family views. Works while a search "
                                   "runs. Writes report.md (figures in report_files/), a self-contained "
                                   "report.html, tables.tex and the tidy tables as Parquet under tables/.")
    p.add_argument("experiments", nargs="+", help="experiment folders (several: compared in one report), or one "
                                                  "`mathtune train` folder (its curves, epochs and configuration)")
    p.add_argument("--out", help="output folder (default: the first experiment's folder)")
    p.add_argument("--format", default="md,html,tex",
                   help="comma-separated formats among md, html, tex (default md,html,tex)")
    p.add_argument("--param", action="append", metavar="NAME",
                   help="add a best-per-value table for this parameter (repeatable; default: every searched "
                        "parameter with a few values, e.g. extra_layers)")
    p.add_argument("--top", type=int, default=10, help="rows of the top-k table (default 10)")
    p.add_argument("--no-predictions", action="store_true",
                   help="skip the family views that load the best checkpoints (e.g. arithmetic error analysis)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reference", help="every reference-report row beside the shipped configuration that answers it",
                       description="For each row of the seed reports (TARGETS.md, in analysis/reference.yaml): the "
                                   "shipped configuration (trainables/configs) with the row's settings and the best "
                                   "validation figure, its test figure on the reference's metric, its exact match, "
                                   "its file and seed spread; 'not run' where none is shipped. Markdown.")
    p.add_argument("--family", action="append", metavar="FAMILY", help="only this family's rows (repeatable)")
    p.add_argument("--out", metavar="FILE", help="write the Markdown table here (default: print it)")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("best", help="print or write the best configuration and its checkpoint",
                       description="The best trial on the validation metric (test figures reported only). The file "
                                   "written with --out reproduces it: mathtune train FAMILY --config FILE.")
    p.add_argument("experiment", help="an experiment folder")
    p.add_argument("--out", metavar="FILE", help="write JSON here (default: print it)")
    p.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="restrict to one study-factor value (required when the experiment has several), "
                        "e.g. --where split=0.5")
    p.add_argument("--pareto", action="store_true",
                   help="a space with several objectives: print every trial on the Pareto front (per factor "
                        "value) with its objectives, test figure and parameters; --out writes them as JSON")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("ship", help="write finished runs as a shipped configuration (and the model, for a family that "
                            "ships its model)",
                       description=SHIP_DESCRIPTION, epilog=SHIP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME",
                   help="configuration name: writes trainables/configs/NAME.json (DIR/NAME.json with --configs-dir)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="finished runs, one per seed: `mathtune train` output folders or a search's Tune trial "
                        "folders (e.g. EXP/confirm/trial_*); a family that ships its model: one folder, checkpoint "
                        "or Tune trial folder, or several with --weights for one ensemble model")
    p.add_argument("--produced-by", "--train-command", dest="produced_by", metavar="COMMAND",
                   help="the command(s) that trained the runs, as a user would type them (recorded; required "
                        "unless --train-only)")
    p.add_argument("--note", default="", metavar="TEXT",
                   help="anything a reader of the figure should know (a family that ships its model records it "
                        "as `selected`: how the run was chosen)")
    p.add_argument("--search", metavar="EXP",
                   help="the search experiment that found the configuration (its name, command and budget are "
                        "recorded, and `mathtune reference` says the figure came from a search)")
    p.add_argument("--configs-dir", metavar="DIR", help="where shipped configurations live (default: "
                                                        "trainables/configs in the package)")
    p.add_argument("--train-only", action="store_true",
                   help="add the train figures to the already shipped NAME.json from the runs that produced it, "
                        "leaving the rest of the file as it is")
    p.add_argument("--weights", metavar="WNAME",
                   help="a family that ships its model: also ship the model itself, as pretrained:WNAME (several "
                        "RUNs: one ensemble model of them)")
    p.add_argument("--select", type=int, metavar="K",
                   help="with --weights: choose at most K members among the RUNs, and their votes, by greedy "
                        "forward selection with replacement on dev (validation), instead of shipping every RUN")
    p.add_argument("--select-width", type=int, default=1, metavar="W",
                   help="--select: the beam width the candidates are decoded at while choosing (default 1: "
                        "greedy, the cheapest; the chosen model is then measured at every --widths)")
    p.add_argument("--select-pool", type=int, default=8, metavar="P",
                   help="--select: decode only the P runs with the best dev figures their runs recorded "
                        "(default 8)")
    p.add_argument("--widths", type=int, nargs="+", metavar="W",
                   help="a family that ships its model: the decode widths to measure it at (default: the family's)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads while measuring the figures (default 1; a family that ships its model: "
                        "the family's own default). Not what the shipped configuration trains with: it pins no "
                        "thread count")
    p.set_defaults(func=cmd_ship)

    for name, command in family_commands().items():  # commands families add (entry points mathtune.commands)
        p = sub.add_parser(name, help=command.help, description=command.description)
        command.add_arguments(p)
        p.set_defaults(func=command)  # a Command runs its handler, importing it first when run names it by path
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `mathtune families | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MathtuneError as exc:  # every user-facing error (ours and the families', built-in or not)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mathtune: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be created, read or written: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mathtune: error: {where}{exc.strerror or str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mathtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
