"""The ``mathtune`` command line.

    mathtune families                       # what can be trained
    mathtune spaces                         # shipped search spaces
    mathtune train arith-text2text --set hidden=512 --set split=0.5
    mathtune search arith-text2text-addsub --num-samples 8
    mathtune resume runs/arith-text2text-addsub-20261122-101500
    mathtune dashboard runs/arith-text2text-addsub-20261122-101500   # the Optuna studies, live, on 127.0.0.1
    mathtune report runs/arith-text2text-addsub-20261122-101500 [more experiments] [--out DIR]
    mathtune best runs/arith-text2text-addsub-20261122-101500 --out best.json
    mathtune evaluate runs/train/t2m-attn-20261122-101500 test.json --beam-width 1 10 --out preds.json
    mathtune evaluate pretrained:t2m problems.json --beam-width 10 --out preds.json   # the shipped model
    mathtune score preds.beam10.json --out scored.json

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

from mathtune.trainables.atomic import write_json
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.metrics import test_metric_for

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
                default = "auto" if key == "threads" and p.default == 0 else repr(p.default)
                print(f"    {key:16s} default {default:10} {p.help}")
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
    summary = {"family": family.name, "config": config, "best": result["best"], "last": result["last"],
               "wall_time_s": wall, "data": family.describe_data(result["data"])}
    write_json(out / "result.json", summary)
    best = result["best"] or {}
    metric = family.metric
    test_metric = test_metric_for(metric)
    test_part = f", {test_metric} {best[test_metric]:.4f}" if test_metric in best else ""
    print(f"[mathtune] best epoch {best.get('epoch')}: {metric} {best.get(metric, float('nan')):.4f}{test_part}; "
          f"{wall:.0f} s; summary in {out / 'result.json'}")
    return 0


def _search_options(args: argparse.Namespace):
    from mathtune.search.engine import SearchOptions

    return SearchOptions(num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                         cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                         scheduler=args.scheduler, storage_path=args.storage_path, name=args.name,
                         address=args.address, seed=args.seed, optuna_storage=args.optuna_storage,
                         max_failures=args.max_failures, overrides=_parse_sets(args.set),
                         sampler=args.sampler, searcher=args.searcher,
                         dashboard=not args.no_dashboard, verbose=args.verbose,
                         confirm_top=args.confirm_top, confirm_seeds=args.confirm_seeds)


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


def cmd_dashboard(args: argparse.Namespace) -> int:
    from mathtune.search.dashboard import open_dashboard

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
    from mathtune.analysis.report import write_report

    path = write_report([Path(d) for d in dirs], Path(out) if out else None, **options)
    html = path.with_suffix(".html")
    print(f"[mathtune] report written: {path}" + (f" and {html.name}" if html != path and html.is_file() and
                                                   "html" in options.get("formats", ("html",)) else ""), flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from mathtune.analysis.report import FORMATS
    from mathtune.analysis.store import EXPERIMENT_FILE

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"--format {args.format!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    from mathtune.analysis.run_report import is_train_run, write_run_report

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
    from mathtune.analysis.best import BestError, best_config, write_best
    from mathtune.analysis.store import EXPERIMENT_FILE

    if not (Path(args.experiment) / EXPERIMENT_FILE).is_file():
        raise UserError(f"{args.experiment}: not a mathtune experiment folder (no {EXPERIMENT_FILE})")
    if args.pareto:
        return _print_pareto(args)
    try:
        payload = best_config(args.experiment, where=_parse_sets(args.where))
    except BestError as exc:
        raise UserError(str(exc)) from None
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
    from mathtune.analysis.pareto import front_lines, objectives_of, pareto_front
    from mathtune.analysis.tidy import load_tables

    tables = load_tables(args.experiment, optuna=False)
    experiment = next(iter(tables.metas))
    if not objectives_of(tables.metas[experiment]):
        raise UserError(f"{args.experiment}: --pareto needs a space with several objectives (objectives: in the "
                        f"space file); this experiment has one, {tables.metas[experiment]['metric']}")
    lines = front_lines(tables, experiment)
    if not lines:
        raise UserError(f"{args.experiment}: no trial has reported every objective yet")
    print("\n".join(lines), flush=True)
    if args.out:
        from mathtune.analysis.best import write_best

        front = pareto_front(tables, experiment)
        rows = json.loads(front.drop(columns=["on_front"]).to_json(orient="records"))
        path = write_best({"experiment": experiment, "objectives": tables.metas[experiment]["objectives"],
                           "front": rows}, args.out)
        print(f"[mathtune] written: {path}", flush=True)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mathtune.trainables.t2m.ensemble import check_members
    from mathtune.trainables.t2m.evaluation import evaluate_file, find_checkpoint, load_trained
    from mathtune.trainables.t2m.shipped import PREFIX

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit}: expected a positive number of problems")
    if args.beam_width and min(args.beam_width) < 1:
        raise UserError(f"--beam-width {min(args.beam_width)}: widths start at 1")
    if not Path(args.data_file).is_file():
        raise UserError(f"{args.data_file}: data file not found")
    ckpt = find_checkpoint(args.checkpoint)
    if str(args.checkpoint).startswith(PREFIX):
        print(f"[mathtune] {args.checkpoint}: {_shipped_summary(ckpt)}", flush=True)
    overrides: dict[str, Any] = {"device": args.device}
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.beam_mode:
        overrides["beam_mode"] = args.beam_mode
    if args.batch_size:
        overrides["eval_batch_size"] = args.batch_size
    family, config, model = load_trained(ckpt, overrides=overrides)
    ensemble = []
    for other in args.ensemble or []:
        o_ckpt = find_checkpoint(other)
        o_family, o_config, o_model = load_trained(o_ckpt, overrides={k: v for k, v in overrides.items()
                                                                       if k != "eval_batch_size"})
        try:
            check_members([model, o_model])
        except ValueError:
            raise UserError(f"--ensemble {other}: trained on another program vocabulary than {args.checkpoint} "
                            f"(ensemble members must share their training file)") from None
        ensemble.append((o_model, o_config))
        print(f"[mathtune] ensemble member: {o_family.name} checkpoint {o_ckpt}", flush=True)
    widths = sorted(set(args.beam_width or [1, config["beam_width"]]))
    print(f"[mathtune] {family.name} checkpoint {ckpt}; decoding {args.data_file} at beam width "
          f"{', '.join(map(str, widths))} ({config['beam_mode']} beam)"
          f"{f', an ensemble of {len(ensemble) + 1} models' if ensemble else ''}", flush=True)
    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, args.data_file, widths=widths, limit=args.limit or 0,
                        ensemble=ensemble)
    wall = time.perf_counter() - t0
    for w in widths:
        r = out.scores[w]
        print(f"beam {w:3d}: exact match {r.exact_match:6.2f}%  execution accuracy {r.execution_accuracy:6.2f}%  "
              f"({r.n} problems of {out.source.name})")
    print(f"[mathtune] {wall:.1f} s", flush=True)
    if args.out:
        target = Path(args.out)
        for w in widths:
            path = target if len(widths) == 1 else target.with_name(f"{target.stem}.beam{w}{target.suffix or '.json'}")
            _write_json(path, out.items[w])
            print(f"[mathtune] predictions (beam {w}) written: {path}")
    return 0


def _shipped_summary(folder: Path) -> str:
    """One line on a shipped model: family, and its recorded dev figures per beam width."""
    from mathtune.trainables.t2m.shipped import read_model_record

    rec = read_model_record(folder)
    dev = (rec.get("figures") or {}).get("dev") or {}
    figs = ", ".join(f"beam {w} {v['exec_acc']:.2f}% exec / {v['exact_match']:.2f}% EM" for w, v in
                     sorted(dev.items(), key=lambda kv: int(kv[0])))
    return f"{rec.get('family', '?')}, trained {rec.get('date', '?')}; recorded on dev: {figs or 'no figures'}"


def cmd_score(args: argparse.Namespace) -> int:
    from mathtune.trainables.t2m.evaluation import read_predictions
    from mathtune.trainables.t2m.scoring import score_items

    items = read_predictions(args.predictions)
    result = score_items(items)
    print(f"exact match {result.exact_match:6.2f}%  execution accuracy {result.execution_accuracy:6.2f}%  "
          f"({result.n} problems of {Path(args.predictions).name})")
    if args.out:
        _write_json(Path(args.out), [{**item, **row} for item, row in zip(items, result.items)])
        print(f"[mathtune] per-problem results written: {args.out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from mathtune.analysis.reference import load_reference
    from mathtune.analysis.shipped import shipped_versus_reference

    known = sorted({r["family"] for r in load_reference()})
    bad = [f for f in args.family or [] if f not in known]
    if bad:
        raise UserError(f"--family {bad[0]}: no reference rows for it (families with rows: {', '.join(known)})")
    table = shipped_versus_reference(families=set(args.family) if args.family else None)
    text = f"## {table.title}\n\n{table.to_markdown()}\n\n{table.note}\n"
    if args.out:
        Path(args.out).write_text(text)  # an unwritable path is main()'s one-line OSError
        print(f"[mathtune] written: {args.out}")
    else:
        print(text, end="")
    return 0


def _write_json(path: Path, payload: Any) -> None:
    try:
        write_json(path, payload, ensure_ascii=False)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


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
                   help="asha: stop weak trials early on the validation metric (default); none: run all epochs. "
                        "With several objectives (a space's objectives:) ASHA stops on the first one only: a "
                        "small model that learns slowly can be stopped before its size pays off, so choose none "
                        "when the other objectives matter as much as the first")
    p.add_argument("--storage-path", default=os.environ.get("MATHTUNE_STORAGE_PATH") or "runs",
                   help="where experiment folders go (default $MATHTUNE_STORAGE_PATH, else ./runs); on a "
                        "multi-node cluster use shared storage (an NFS path, as cluster.yaml mounts)")
    p.add_argument("--name", help="experiment folder name (default SPACE-DATE-TIME)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://head:10001); default: "
                                     "start a local Ray on 127.0.0.1")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe",
                   help="Optuna sampler: tpe (default; Optuna's TPESampler, multivariate with constant liar, in "
                        "its multi-objective form when the space names several objectives), random (a baseline) "
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
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("dashboard", help="serve an experiment's Optuna studies with optuna-dashboard (127.0.0.1)",
                       description="Serve the experiment's Optuna studies (one per study-factor value, from the "
                                   "storage the search recorded: optuna.db in the folder, or its --optuna-storage "
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

    p = sub.add_parser("evaluate", help="score a trained text-to-program model on a data file",
                       description="Decode every problem of DATA_FILE (COL775 or original MathQA JSON) with a "
                                   "trained t2m-* model at one or more beam widths, print exact match and execution "
                                   "accuracy per width, and optionally write the predictions in the scorer format "
                                   "(the file's objects plus `predicted`).")
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_TRIAL",
                   help="a checkpoint folder (state.pt + config.json), a `mathtune train` folder (uses best/), "
                        "a Tune trial folder (uses the checkpoint_* whose epoch scored best on validation), or "
                        "pretrained:t2m, the best text-to-program model shipped with mathtune (no training needed)")
    p.add_argument("data_file", metavar="DATA_FILE", help="problems to decode, e.g. the held-apart test.json")
    p.add_argument("--beam-width", type=int, nargs="+", metavar="W",
                   help="beam widths (default: 1 and the model's beam_width); nested beams decode all in one pass")
    p.add_argument("--beam-mode", choices=("nested", "standard"), help="override the model's beam_mode")
    p.add_argument("--ensemble", action="append", metavar="CHECKPOINT",
                   help="decode with this model too (repeatable; any form CHECKPOINT_OR_TRIAL takes): every step "
                        "scores the mean of the models' next-token probabilities. Members must be trained on the "
                        "same training file; the first model's decoding settings apply")
    p.add_argument("--out", metavar="FILE", help="write predictions here; with several widths FILE becomes "
                                                 "STEM.beamW.json per width")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N problems")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--batch-size", type=int, help="problems per decoding batch (default: the model's "
                                                  "eval_batch_size)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="score a prediction file (exact match and execution accuracy)",
                       description="Score a JSON array of objects with Problem, linear_formula, answer and predicted "
                                   "(as written by `mathtune evaluate --out`) with the course rules.")
    p.add_argument("predictions", metavar="PREDICTIONS_FILE")
    p.add_argument("--out", metavar="FILE", help="write the items with predicted_answer, em and exec_correct")
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # every user-facing error (ours and the families', built-in or not) derives from MathtuneError
    expected = (MathtuneError, FileNotFoundError, NotADirectoryError, PermissionError)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `mathtune families | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except expected as exc:
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
