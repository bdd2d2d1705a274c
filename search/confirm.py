"""Winners that hold across seeds: retrain a search's best trials with new training seeds, select by the mean.

A search's single best trial is the best of many noisy draws, so its validation figure is biased upwards
and often a lucky seed. ``mathtune search ... --confirm-top K --confirm-seeds S`` runs, once the search has
ended, K x S more trials in ``EXP/confirm`` (a second Tune experiment of the same folder, resumed by
``mathtune resume EXP`` like the search itself): each of the K best trials by validation of each study
factor value, unchanged but for its training ``seed``, run for all its epochs (no early stopping). Each run
counts with its best validation epoch, as in the search; the candidate with the best mean over its S new
seeds wins (the search's own run is shown beside it, not averaged in: it is the draw that was selected).
``EXP/confirm.json`` holds the outcome; ``mathtune best`` and the report read it.

Example::

    mathtune search arith-text2text-addsub --num-samples 16 --confirm-top 3 --confirm-seeds 3
    mathtune best runs/arith-text2text-addsub-...      # the confirmed winner, mean +- sd over 3 seeds
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from mathtune.analysis.store import (CONFIRM_FILE, ExperimentRecord, TrialRecord, load_confirmation, load_trials,
                                     stopped_by_signal, trial_dirname)
from mathtune.search.budget import budget_saver
from mathtune.search.decode import score_decode_settings
from mathtune.spaces.loader import Space
from mathtune.trainables.atomic import write_json
from mathtune.trainables.metrics import best_of, rank, test_metric_for
from mathtune.trainables.registry import get_family

__all__ = ["CONFIRM_DIR", "CONFIRM_FILE", "PLAN_FILE", "plan_confirmation", "summarise", "load_confirmation",
           "run_confirmation"]

CONFIRM_DIR = "confirm"
PLAN_FILE = "plan.json"


def _combo_label(config: dict[str, Any], factors: list[str]) -> str:
    return ", ".join(f"{k}={config.get(k)}" for k in factors) or "all"


def _without_seed(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True, default=str)


def _run_figures(trial: TrialRecord, metric: str, mode: str) -> dict[str, Any] | None:
    row = trial.best(metric, mode)
    if row is None:
        return None
    test = test_metric_for(metric)
    return {"trial_id": trial.trial_id, "seed": trial.config.get("seed"), "epoch": int(row.get("epoch", 0)),
            "value": float(row[metric]), "test": float(row[test]) if isinstance(row.get(test), (int, float)) else None,
            "epochs_run": trial.epochs_run, "status": trial.status}


def plan_confirmation(exp_dir: Path, space: Space, top: int, seeds: int) -> dict[str, Any]:
    """The candidates (``top`` best trials by validation per factor value) and the ``seeds`` runs of each.

    New seeds follow the candidate's own: seed + 1 ... seed + S. Trials with the same configuration but for
    the seed count once (the better one)."""
    family = get_family(space.family)
    metric, mode, factors = space.metric, space.mode, list(space.factors)
    by_combo: dict[str, list[tuple[dict[str, Any], TrialRecord]]] = {}
    for trial in load_trials(exp_dir):
        figures = _run_figures(trial, metric, mode)
        if figures is None:
            continue
        by_combo.setdefault(_combo_label(trial.config, factors), []).append((figures, trial))
    candidates, runs = [], []
    for label, entries in sorted(by_combo.items()):
        seen: set[str] = set()
        for figures, trial in rank(entries, mode, key=lambda e: e[0]["value"]):  # best first, trial order on ties
            key = _without_seed(trial.config)
            if key in seen:
                continue
            seen.add(key)
            config = family.make_config(trial.config, where=f"trial {trial.trial_id}").as_dict()  # the plan is JSON
            base = int(config["seed"])
            candidates.append({"trial_id": trial.trial_id, "factors": label, "config": config,
                               "single": figures, "seeds": [base + 1 + i for i in range(seeds)]})
            runs.extend({"candidate": trial.trial_id, "config": {**config, "seed": base + 1 + i}}
                        for i in range(seeds))
            if len(seen) == top:
                break
    return {"metric": metric, "mode": mode, "factors": factors, "top": top, "seeds": seeds,
            "candidates": candidates, "runs": runs}


def summarise(exp_dir: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Mean and sd over each candidate's seed runs; the winner per factor value is the best mean."""
    metric, mode = plan["metric"], plan["mode"]
    confirm_dir = Path(exp_dir) / CONFIRM_DIR
    done = {}
    if confirm_dir.is_dir():
        for trial in load_trials(confirm_dir):
            figures = _run_figures(trial, metric, mode)
            if figures is not None:
                done[(_without_seed(trial.config), trial.config.get("seed"))] = figures
    out: dict[str, Any] = {k: plan[k] for k in ("metric", "mode", "factors", "top", "seeds")}
    out["combos"] = {}
    for cand in plan["candidates"]:
        key = _without_seed(cand["config"])
        runs = [done[(key, s)] for s in cand["seeds"] if (key, s) in done]
        values = [r["value"] for r in runs]
        tests = [r["test"] for r in runs if r["test"] is not None]
        entry = {"trial_id": cand["trial_id"], "single": cand["single"], "runs": runs,
                 "complete": len(runs) == len(cand["seeds"]) and all(r["status"] == "finished" for r in runs),
                 "mean": statistics.fmean(values) if values else None,
                 "sd": statistics.stdev(values) if len(values) > 1 else (0.0 if values else None),
                 "test_mean": statistics.fmean(tests) if tests else None,
                 "test_sd": statistics.stdev(tests) if len(tests) > 1 else (0.0 if tests else None),
                 "config": cand["config"]}
        out["combos"].setdefault(cand["factors"], {"candidates": []})["candidates"].append(entry)
    for combo in out["combos"].values():
        winner = best_of(combo["candidates"], mode, key=lambda c: c["mean"])  # the first candidate on ties
        combo["winner"] = winner["trial_id"] if winner else None
    return out


def _fmt(value: float | None, sd: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" + (f" +- {sd:.4f}" if sd is not None else "")


def run_confirmation(space: Space, record: ExperimentRecord, exp_dir: Path, trainable,
                     run_config_for) -> dict | None:
    """Plan (once; the plan is kept, so a resume runs the same trials), run and summarise the confirmation.

    ``record`` is the experiment's (its options: how many trials, how many seeds, how many at a time);
    ``trainable`` is the search's own (same datasets and resources); ``run_config_for(name)`` builds the
    RunConfig of the second experiment. Returns the summary, or None when interrupted."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    opts = record.options
    confirm_dir = exp_dir / CONFIRM_DIR
    plan_path = confirm_dir / PLAN_FILE
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
    else:
        plan = plan_confirmation(exp_dir, space, int(opts["confirm_top"]), int(opts["confirm_seeds"]))
        if not plan["runs"]:
            print("[mathtune] confirmation: no trial reported the metric; nothing to confirm", flush=True)
            return None
        confirm_dir.mkdir(parents=True, exist_ok=True)
        write_json(plan_path, plan)
    points = [r["config"] for r in plan["runs"]]
    keys = sorted(set().union(*points))
    values = {k: [] for k in keys}
    for point in points:
        for k in keys:
            if point.get(k) not in values[k]:
                values[k].append(point.get(k))
    varying = [k for k in keys if len(values[k]) > 1]
    print(f"[mathtune] confirming the {plan['top']} best trial(s) per factor value with {plan['seeds']} new "
          f"seed(s) each: {len(points)} runs in {confirm_dir}", flush=True)
    if tune.Tuner.can_restore(str(confirm_dir)):
        tuner = tune.Tuner.restore(str(confirm_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        if opts.get("budget"):  # a confirmation begun before it saved the clock as it ran gets the callback
            restored = tuner._local_tuner.get_run_config()  # (Tuner.restore takes no new run configuration)
            restored.callbacks = budget_saver(list(restored.callbacks or []), exp_dir)
    else:
        param_space = {k: (tune.choice(values[k]) if k in varying else values[k][0]) for k in keys}
        search = BasicVariantGenerator(points_to_evaluate=[{k: p.get(k) for k in varying} for p in points],
                                       max_concurrent=opts["max_concurrent"])
        tuner = tune.Tuner(trainable, param_space=param_space,
                           tune_config=tune.TuneConfig(search_alg=search, num_samples=len(points),
                                                       metric=space.metric, mode=space.mode,
                                                       trial_dirname_creator=trial_dirname,
                                                       trial_name_creator=trial_dirname,
                                                       reuse_actors=opts.get("reuse_actors", True)),
                           run_config=run_config_for(CONFIRM_DIR, [k for k in varying if k != "seed"] + ["seed"],
                                                     len(points)))
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        return None
    if any(t.status not in ("TERMINATED", "ERROR") for t in grid._experiment_analysis.trials) \
            or stopped_by_signal(confirm_dir):
        return None  # Ctrl-C: Tune stopped the runs and saved their state
    runs = load_trials(confirm_dir)
    if len(runs) < len(points) or any(not r.finished and r.tune_status != "ERROR" for r in runs):
        return None  # Ctrl-C before every run started, or Tune ended runs short of their epochs: not a result
    score_decode_settings(space, confirm_dir)  # each new seed's checkpoint at every decode-time setting too
    summary = summarise(exp_dir, plan)
    write_json(exp_dir / CONFIRM_FILE, summary)
    for label, combo in summary["combos"].items():
        for c in combo["candidates"]:
            mark = "confirmed winner" if c["trial_id"] == combo["winner"] else "candidate"
            print(f"[mathtune] {mark} ({label}) trial {c['trial_id']}: {space.metric} {_fmt(c['mean'], c['sd'])} "
                  f"over {len(c['runs'])} new seed(s) (its search run: {_fmt(c['single']['value'])}); test, "
                  f"reported only: {_fmt(c['test_mean'], c['test_sd'])}", flush=True)
    return summary
