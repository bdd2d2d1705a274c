"""Search efficiency: does Optuna-guided ASHA find good models with less compute than random search?

Four ways to search the same space (``bench/efficiency.yaml``: arith-text2text, +-, split 0.5) with the
same budget (trials, epochs cap, concurrency), each with several seeds:

  (a) random search, no early stopping       --sampler random --scheduler none
  (b) random search + ASHA                   --sampler random --scheduler asha
  (c) TPE + ASHA through Ray's OptunaSearch  --searcher stock
  (d) TPE + ASHA with mathtune's searcher    (the default)

Figures per run: CPU seconds until the best validation exact match so far first reaches the target
(trial CPU time summed over trials, i.e. compute spent, not wall time), the best validation exact match
at the end and the test exact match of the trial/epoch it selects, and trials run to completion.

    python bench/search_efficiency.py --seeds 0 1 2 --num-samples 32 --target 0.9 0.95 0.97
    python bench/search_efficiency.py --tables ab.json dc.json     # tables of saved runs, merged

Several targets are read from the same runs (one table per target); results are also written as JSON
(``--out``) after every run, so an interrupted benchmark keeps what it measured.

Replayed searches (learning curves recorded once, then searched many times in minutes):

    # 1. record: a grid search without early stopping over bench/replay-grid.yaml, then its table
    mathtune search bench/replay-grid.yaml --sampler grid --scheduler none --num-samples 144 --max-concurrent 1 \
        --name replay-table
    python bench/search_efficiency.py --record runs/replay-table --table bench/results/replay-table.parquet
    # 2. replay the four methods on 20 paired seeds through the real engine (family replay-arith-text2text)
    python bench/search_efficiency.py --replay bench/results/replay-table.parquet --seeds $(seq 0 19) --num-samples 32
    # 3. how often the table's curves cross (what a late-bloomer hedge has to survive)
    python bench/search_efficiency.py --crossing bench/results/replay-table.parquet
    # 4. faithfulness: one real search of (d) against its replay, same seed
    python bench/search_efficiency.py --faithful bench/results/replay-table.parquet --seeds 0 --num-samples 16

In a replay the clock is the recorded seconds of every epoch a search ran (``recorded_total_s`` summed over
its trials), not the replay's wall time; targets are the best validation values of the table's top 1% and
top 5% configurations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SPACE = Path(__file__).with_name("efficiency.yaml")
METHODS = {
    "a": ("random, no early stopping", dict(sampler="random", scheduler="none")),
    "b": ("random + ASHA", dict(sampler="random", scheduler="asha")),
    "c": ("TPE + ASHA, Ray's OptunaSearch", dict(searcher="stock")),
    "d": ("TPE + ASHA, mathtune searcher", dict()),
    # variants of (d) (replay mode), for tuning the searcher's own settings
    "e": ("(d) with 4 random startup trials", dict(startup_trials=4)),
    "f": ("(c) with 4 random startup trials", dict(searcher="stock", startup_trials=4)),
    # hedges against late-blooming curves
    "h": ("TPE + ASHA, 3 brackets (Hyperband-style)", dict(asha={"brackets": 3})),
    "i": ("TPE, no early stopping", dict(scheduler="none")),
    # models of the rungs, and Optuna's own pruner
    "j": ("rung-level TPE + ASHA, 3 brackets (BOHB-like)", dict(sampler="rung-tpe", asha={"brackets": 3})),
    "k": ("rung-level TPE + ASHA", dict(sampler="rung-tpe")),
    "o": ("TPE + Optuna's HyperbandPruner", dict(scheduler="optuna")),
}


def cpu_seconds_to_target(trials, target: float, cpus_per_trial: float) -> tuple[float | None, float, float]:
    """Replay the experiment: (CPU s when best val EM first >= target, final best val EM, its test EM).

    Each trial's reports are ordered by wall-clock timestamp; the compute spent at a report is the sum over
    trials of their latest ``time_total_s`` (times the trial's CPUs).
    """
    events = sorted((row["timestamp"], row.get("time_total_s", 0.0), t.trial_id, row)
                    for t in trials for row in t.history)
    spent: dict[str, float] = {}
    best_val, best_test, reached = -1.0, 0.0, None
    for _, total_s, trial_id, row in events:
        spent[trial_id] = total_s * cpus_per_trial
        if row["val_exact_match"] > best_val:
            best_val, best_test = row["val_exact_match"], row["test_exact_match"]
        if reached is None and best_val >= target:
            reached = sum(spent.values())
    return reached, best_val, best_test


# ---------------------------------------------------------------------------------------------- replay mode
def record_table(exp_dir: str, table_path: str, *, partial: bool = False, merge: str | None = None) -> None:
    """Write a finished grid search (every trial run to its last epoch) as a learning-curve table. ``partial``
    keeps the trials that ran all their epochs and skips the others (an interrupted recording); ``merge`` adds
    the curves of a table written before (the first part of a grid recorded in two)."""
    import platform

    import yaml

    from mathtune.analysis import load_trials
    from mathtune.analysis.store import read_experiment
    from mathtune.trainables.replay import ReplayTable, write_table

    exp = Path(exp_dir)
    record = read_experiment(exp)
    overrides = record.options.get("overrides") or {}
    space_text = _as_searched((exp / "space.yaml").read_text(), overrides)
    params = list(yaml.safe_load(space_text)["params"])
    trials = load_trials(exp)
    if partial:
        skipped = [t.trial_id for t in trials if t.epochs_run < t.epochs_planned]
        trials = [t for t in trials if t.epochs_run >= t.epochs_planned]
        print(f"partial: {len(trials)} finished trials kept, {len(skipped)} unfinished skipped")
    base = ReplayTable(merge) if merge else None
    if base is not None:
        space_text = base.meta.get("space", space_text)  # the grid's own space (without completion points)
    info = {"space": space_text, "metric": record.metric, "mode": record.mode, "experiment": exp.name,
            "command": f"mathtune search {record.space} --sampler grid --scheduler none "
                       f"--num-samples {record.options.get('num_samples')} --max-concurrent "
                       f"{record.options.get('max_concurrent')}"
                       + "".join(f" --set {k}={v}" for k, v in overrides.items()),
            "recorded": record.created, "written": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                       f"1 torch thread per trial"}
    if base is not None:
        info["parts"] = [base.meta.get("experiment"), exp.name]
        info["recorded"] = base.meta.get("recorded", info["recorded"])
    n = write_table(trials, table_path, family=record.family, params=params, info=info, merge=base)
    print(f"wrote {table_path}: {n} configurations, {sum(len(t.history) for t in trials)} epochs "
          f"({Path(table_path).stat().st_size / 1024:.0f} KiB)")


def _as_searched(space_text: str, overrides: dict) -> str:
    """The space file's text with the search's ``--set`` values fixed as ``mathtune search`` fixed them
    (constants, or a factor's one value; no longer searched, nor scored at decode time), so a table recorded
    from a search with ``--set epochs=3`` replays 3-epoch curves under the space it was recorded with."""
    if not overrides:
        return space_text
    import yaml

    spec = yaml.safe_load(space_text)
    for key, value in overrides.items():
        for part in ("params", "decode"):
            (spec.get(part) or {}).pop(key, None)
        if key in (spec.get("factors") or {}):
            spec["factors"][key] = [value]
        else:
            spec["constants"] = {**(spec.get("constants") or {}), key: value}
    spec["points_to_evaluate"] = [p for p in ({k: v for k, v in point.items() if k not in overrides}
                                              for point in spec.get("points_to_evaluate") or []) if p]
    return yaml.safe_dump(spec, sort_keys=False)


def _space_file(table, out_dir: Path, name: str, *, replay: bool, time_scale: float, grace: int,
                reduction: float) -> Path:
    """The table's own space file, with ASHA's settings, as a replay (family replay-F, the table as data) or
    as the real family: the same parameters in the same order, so a seed proposes the same configurations."""
    import yaml

    from mathtune.trainables.atomic import write_text

    spec = yaml.safe_load(table.meta["space"])
    spec["scheduler"] = {"grace_period": grace, "reduction_factor": reduction}
    if replay:
        spec["family"] = f"replay-{table.meta['family']}"
        spec["constants"] = {**spec.get("constants", {}), "table": str(table.path.resolve()),
                             "time_scale": time_scale}
    path = out_dir / f"{name}.yaml"
    write_text(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def missing_points(table_path: str, space_out: str) -> None:
    """A space file that records what a partial table lacks: the table's grid space with every grid point the
    table has no curve for as a warm-start point; searched with ``--scheduler none --num-samples N``, it runs
    exactly those points, and ``--record EXP --merge TABLE`` then writes the whole table."""
    import itertools

    import yaml

    from mathtune.trainables.atomic import write_text
    from mathtune.trainables.replay import ReplayTable, _norm

    table = ReplayTable(table_path)
    spec = yaml.safe_load(table.meta["space"])
    grid = {p: list(spec["params"][p]["values"]) for p in table.params}
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())
              if tuple(_norm(v) for v in values) not in table.curves]
    factors = spec.get("factors") or {}
    spec["points_to_evaluate"] = [{**{k: v[0] for k, v in factors.items()}, **p} for p in points]
    write_text(space_out, yaml.safe_dump(spec, sort_keys=False))
    print(f"{space_out}: {len(points)} of {len(points) + len(table.curves)} grid points to record; run\n"
          f"  mathtune search {space_out} --scheduler none --num-samples {len(points)} --max-concurrent 2 "
          f"--name EXP\n  python bench/search_efficiency.py --record runs/EXP --merge {table_path} --table OUT")


def crossing(table_path: str, epochs: list[int] | None = None) -> None:
    """How often a table's curves cross: for each epoch e, the rank correlation between each configuration's best
    validation value up to e and its best over the whole run, the share of configuration pairs whose order at e
    is reversed at the end, and where the final top-5% configurations rank at e (what ASHA sees at a rung)."""
    import numpy as np
    from scipy.stats import spearmanr

    from mathtune.trainables.replay import ReplayTable

    table = ReplayTable(table_path)
    metric = table.meta.get("metric", "val_exact_match")
    curves = list(table.curves.values())
    n_epochs = min(len(c) for c in curves)
    final = np.array([max(r[metric] for r in c) for c in curves])
    top = np.argsort(-final, kind="stable")[:max(1, int(np.ceil(0.05 * len(curves))))]
    print(f"{table.path}: {len(curves)} configurations x {n_epochs} epochs; best {final.max():.4f}, median "
          f"{np.median(final):.4f}; final top 5% = {len(top)} configuration(s)")
    print("\n| epoch | rank correlation with the final value | pairs whose order flips by the end | "
          "ranks of the final top 5% at this epoch (0 = best) |")
    print("|---|---|---|---|")
    for e in epochs or [e for e in (1, 2, 3, 4, 6, 9, 12, 18, 27, 40, 60, 90, 120) if e < n_epochs]:
        at = np.array([max(r[metric] for r in c[:e]) for c in curves])
        ranks = (-at).argsort(kind="stable").argsort()
        i, j = np.triu_indices(len(curves), 1)
        decided = (at[i] != at[j]) & (final[i] != final[j])
        flips = ((at[i] - at[j]) * (final[i] - final[j]) < 0) & decided
        print(f"| {e} | {spearmanr(at, final).correlation:.2f} | {flips.sum() / max(1, decided.sum()):.1%} | "
              f"{sorted(int(r) for r in ranks[top])} |")


def trajectory(trials, metric: str, clock: str) -> list[tuple[float, float, float]]:
    """(compute spent, best validation so far, the test value of that best) after each report, in the order
    the reports arrived; compute is the sum over trials of their latest ``clock`` (recorded_total_s in a
    replay, time_total_s in a real search)."""
    from mathtune.trainables.metrics import test_metric_for

    test_key = test_metric_for(metric)
    events = sorted((row["timestamp"], row.get("training_iteration", 0), t.trial_id, row)
                    for t in trials for row in t.history)
    spent: dict[str, float] = {}
    best, best_test, out = -math.inf, math.nan, []
    for _, _, trial_id, row in events:
        spent[trial_id] = float(row.get(clock, 0.0))
        if row.get(metric, -math.inf) > best:
            best, best_test = row[metric], row.get(test_key, math.nan)
        out.append((sum(spent.values()), best, best_test))
    return out


def time_to(traj: list[tuple[float, float, float]], target: float) -> float:
    return next((cpu for cpu, best, _ in traj if best >= target - 1e-12), math.inf)


def targets_of(table, metric: str) -> dict[str, float]:
    """Best validation values of the table's top 1% and top 5% configurations (each configuration's value:
    its best epoch, what a search would select)."""
    import numpy as np

    values = np.array([max(r[metric] for r in curve) for curve in table.curves.values()])
    return {"top 1%": float(np.quantile(values, 0.99, method="inverted_cdf")),
            "top 5%": float(np.quantile(values, 0.95, method="inverted_cdf"))}


def _run_one(space_path: Path, method: str, seed: int, num_samples: int, storage: str, max_concurrent: int):
    from mathtune.analysis import load_trials
    from mathtune.search import SearchOptions, run_search

    opts = METHODS[method][1]
    name = f"{space_path.stem}-{method}-s{seed}-{time.strftime('%H%M%S')}"
    outcome = run_search(space_path, SearchOptions(num_samples=num_samples, max_concurrent=max_concurrent,
                                                   storage_path=storage, name=name, seed=seed, verbose=0,
                                                   dashboard=False, **opts))
    return outcome.experiment_dir, load_trials(outcome.experiment_dir)


def replay(args) -> None:
    """Every method x seed as a replayed search through the real engine; figures, tests and the plot."""
    from mathtune.trainables.atomic import write_text
    from mathtune.trainables.replay import ReplayTable

    table = ReplayTable(args.replay)
    metric = table.meta.get("metric", "val_exact_match")
    targets = targets_of(table, metric)
    out_dir = Path(args.storage_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    space_path = _space_file(table, out_dir, "replay", replay=True, time_scale=args.time_scale,
                             grace=args.grace_period, reduction=args.reduction_factor)
    print(f"table {table.path}: {len(table.curves)} configurations; targets (best val of the table's top "
          f"configurations): {', '.join(f'{k} {v:.4f}' for k, v in targets.items())}; ASHA grace "
          f"{args.grace_period}, reduction {args.reduction_factor:g}; {args.num_samples} trials, "
          f"{args.max_concurrent} at a time", flush=True)
    results = json.loads(Path(args.out).read_text()) if args.resume_out and Path(args.out).exists() else []
    done = {(r["method"], r["seed"]) for r in results}
    for seed in args.seeds:  # seeds outside: an interrupted benchmark holds every method on its seeds so far
        for key in args.methods:
            if (key, seed) in done:
                continue
            t0 = time.perf_counter()
            exp_dir, trials = _run_one(space_path, key, seed, args.num_samples, str(out_dir), args.max_concurrent)
            traj = trajectory(trials, metric, "recorded_total_s")
            best_val, test = traj[-1][1], traj[-1][2]
            row = dict(method=key, seed=seed, trajectory=traj, best_val=best_val, test=test,
                       reached={k: time_to(traj, v) for k, v in targets.items()}, total_cpu_s=traj[-1][0],
                       trials=len(trials), completed=sum(t.epochs_run >= t.epochs_planned for t in trials),
                       wall_s=time.perf_counter() - t0, experiment=str(exp_dir))
            results.append(row)
            write_text(args.out, json.dumps(results, default=str))  # a resumed run (--resume-out) reads it back
            print(f"({key}) seed {seed:2d}: " + ", ".join(f"{k} at {_s(v)}" for k, v in row["reached"].items()) +
                  f"; best val {best_val:.4f}, its test {test:.4f}; {row['completed']}/{len(trials)} trials ran "
                  f"all epochs; {row['total_cpu_s']:.0f} recorded CPU s; {row['wall_s']:.0f} s wall", flush=True)
    print_replay(results, targets, args.methods, plot=args.plot, metric=metric)


def _s(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.0f} s"


def print_replay(results: list[dict], targets: dict[str, float], methods: str, plot: str | None = None,
                 metric: str = "val_exact_match") -> None:
    import numpy as np
    from scipy.stats import wilcoxon

    def quart(xs):
        q = np.quantile(np.array(xs, dtype=float), [0.25, 0.5, 0.75], method="inverted_cdf")
        return q[1], q[0], q[2]

    by = {k: sorted((r for r in results if r["method"] == k), key=lambda r: r["seed"]) for k in methods}
    by = {k: v for k, v in by.items() if v}
    seeds = sorted(set.intersection(*(set(r["seed"] for r in v) for v in by.values())))
    print(f"\n{len(seeds)} paired seeds; CPU s = recorded seconds of every epoch the search ran; "
          f"median [interquartile range]")
    head = " | ".join(f"CPU s to {k} ({v:.4f})" for k, v in targets.items())
    short = {"val_exact_match": "EM", "val_exec_acc": "execution"}.get(metric, metric.removeprefix("val_"))
    print(f"\n| method | {head} | searches reaching {', '.join(targets)} (of {len(seeds)}) | best val {short} | "
          f"test {short} of selected | CPU s in all |")
    print("|---|" + "---|" * (len(targets) + 4))
    for key, rows in by.items():
        rows = [r for r in rows if r["seed"] in seeds]
        cells = []
        for t in targets:
            m, lo, hi = quart([r["reached"][t] for r in rows])
            cells.append(f"{_s(m)} [{_s(lo)}, {_s(hi)}]")
        reached = ", ".join(f"{sum(math.isfinite(r['reached'][t]) for r in rows)}" for t in targets)
        bv, bl, bh = quart([r["best_val"] for r in rows])
        tv, tl, th = quart([r["test"] for r in rows])
        cv, cl, ch = quart([r["total_cpu_s"] for r in rows])
        print(f"| ({key}) {METHODS[key][0]} | {' | '.join(cells)} | {reached} | {bv:.4f} [{bl:.4f}, {bh:.4f}] | "
              f"{tv:.4f} [{tl:.4f}, {th:.4f}] | {cv:.0f} [{cl:.0f}, {ch:.0f}] |")

    # Wilcoxon on ranks: a search that never reached the target counts as slower than every search that did
    # (10x the largest compute any search spent); medians keep "never" as infinite
    never = 10 * max(r["total_cpu_s"] for rows in by.values() for r in rows)

    def censored(r, t):
        return r["reached"][t] if math.isfinite(r["reached"][t]) else never

    if "d" in by:
        print()
        for other in [k for k in by if k != "d"]:
            for t in targets:
                d = np.array([censored(r, t) for r in by["d"] if r["seed"] in seeds])
                o = np.array([censored(r, t) for r in by[other] if r["seed"] in seeds])
                med_d, med_o = (quart([r["reached"][t] for r in by[k] if r["seed"] in seeds])[0] for k in ("d", other))
                ratio = med_o / med_d if med_d > 0 else math.inf
                wins = int((d < o).sum()), int((d > o).sum())
                try:
                    less = wilcoxon(d, o, alternative="less").pvalue
                    two = wilcoxon(d, o).pvalue
                except ValueError:
                    less = two = math.nan
                print(f"(d) against ({other}), {t}: median CPU s {_s(med_o)} against {_s(med_d)} for (d), "
                      f"{'never' if not math.isfinite(ratio) else f'{ratio:.2f}x'}; (d) first on {wins[0]} seeds, "
                      f"(d) later on {wins[1]}; Wilcoxon signed-rank p = {less:.2g} for (d) faster, {two:.2g} "
                      f"two-sided")
    if plot:
        _plot(by, seeds, targets, plot)


def _plot(by: dict[str, list[dict]], seeds: list[int], targets: dict[str, float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    horizon = max(r["total_cpu_s"] for rows in by.values() for r in rows)
    grid = np.linspace(0, horizon, 400)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, rows in by.items():
        curves = []
        for r in (r for r in rows if r["seed"] in seeds):
            xs = np.array([p[0] for p in r["trajectory"]])
            ys = np.array([p[1] for p in r["trajectory"]])
            idx = np.searchsorted(xs, grid, side="right") - 1
            curves.append(np.where(idx >= 0, ys[np.clip(idx, 0, None)], np.nan))
        c = np.array(curves)
        with warnings.catch_warnings():  # before a search's first report its curve is undefined (NaN)
            warnings.simplefilter("ignore", RuntimeWarning)
            med, lo, hi = (np.nanquantile(c, q, axis=0) for q in (0.5, 0.25, 0.75))
        ax.plot(grid, med, label=f"({key}) {METHODS[key][0]}")
        ax.fill_between(grid, lo, hi, alpha=0.2)
    for name, value in targets.items():
        ax.axhline(value, color="grey", lw=0.6, ls="--")
        ax.text(horizon, value, f" {name}", va="center", fontsize=7, color="grey")
    ax.set_xlabel("recorded CPU seconds spent by the search")
    ax.set_ylabel("best validation exact match so far")
    ax.set_ylim(max(0.0, min(targets.values()) - 0.15), 1.0)
    ax.set_title(f"replayed searches, {len(seeds)} seeds: median and interquartile band", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def faithful(args) -> None:
    """A real search of (d) over the table's grid against its replay with the same seed: proposals, stops."""
    import optuna
    import yaml

    from mathtune.search.searcher import study_name_for
    from mathtune.trainables.replay import ReplayTable

    table = ReplayTable(args.faithful)
    out_dir = Path(args.storage_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = args.seeds[0]
    runs = {}
    for kind in ("real", "replay"):
        space_path = _space_file(table, out_dir, f"faithful-{kind}", replay=kind == "replay",
                                 time_scale=args.time_scale, grace=args.grace_period, reduction=args.reduction_factor)
        t0 = time.perf_counter()
        exp_dir, trials = _run_one(space_path, "d", seed, args.num_samples, str(out_dir), args.max_concurrent)
        combo = {k: v[0] for k, v in yaml.safe_load(space_path.read_text()).get("factors", {}).items()}
        study = optuna.load_study(study_name=study_name_for(exp_dir.name, combo),
                                  storage=f"sqlite:///{exp_dir / 'optuna.db'}")
        runs[kind] = sorted(study.trials, key=lambda t: t.number)
        print(f"{kind}: {exp_dir} ({time.perf_counter() - t0:.0f} s wall)", flush=True)
    params = table.params
    same_cfg = same_stop = 0
    print("\n| # | configuration (real) | epochs (real) | configuration (replay, where different) | "
          "epochs (replay) | recorded val of the real one at its last epoch |")
    print("|---|---|---|---|---|---|")
    for real, rep in zip(runs["real"], runs["replay"]):
        rc = {p: real.params.get(p) for p in params}
        pc = {p: rep.params.get(p) for p in params}
        re, pe = len(real.intermediate_values), len(rep.intermediate_values)
        same_cfg += rc == pc
        same_stop += rc == pc and re == pe
        curve = table.curve(rc)
        rec = curve[re - 1][table.meta.get("metric", "val_exact_match")] if re else math.nan
        got = real.intermediate_values.get(re, math.nan)
        print(f"| {real.number} | {', '.join(f'{k}={v}' for k, v in rc.items())} | {re} ({real.state.name}) | "
              f"{'same' if rc == pc else ', '.join(f'{k}={v}' for k, v in pc.items())} | {pe} ({rep.state.name}) | "
              f"{rec:.4f} recorded, {got:.4f} now |")
    n = min(len(runs["real"]), len(runs["replay"]))
    print(f"\nsame configuration: {same_cfg}/{n}; same configuration and same number of epochs: {same_stop}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="abcd")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-samples", type=int, default=12)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--target", type=float, nargs="+", default=[0.9, 0.95, 0.97],
                        help="validation exact match(es) to reach; one table per target")
    parser.add_argument("--out", default="efficiency-results.json", help="JSON file with every run's figures")
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-efficiency"))
    parser.add_argument("--tables", nargs="+", metavar="JSON",
                        help="run nothing: print the tables of runs saved with --out (several files are merged, "
                             "e.g. methods run apart or an interrupted benchmark and its continuation)")
    parser.add_argument("--crossing", metavar="TABLE", help="how often TABLE's curves cross (rank correlation of "
                                                           "each epoch's best-so-far with the final value)")
    parser.add_argument("--partial", action="store_true", help="--record: keep the finished trials of an "
                                                                  "interrupted grid search, skip the others")
    parser.add_argument("--merge", metavar="TABLE", help="--record: add the curves of TABLE (a grid recorded in parts)")
    parser.add_argument("--missing", metavar="TABLE", help="write --space-out: the grid points TABLE lacks, as a "
                                                            "space whose warm-start points are exactly those")
    parser.add_argument("--space-out", default="missing.yaml", help="--missing: the space file to write")
    parser.add_argument("--record", metavar="EXP", help="write the finished grid search EXP as a table (--table)")
    parser.add_argument("--table", default="bench/results/replay-table.parquet", help="table file --record writes")
    parser.add_argument("--replay", metavar="TABLE", help="replayed searches over TABLE (every method x seed)")
    parser.add_argument("--faithful", metavar="TABLE", help="one real search of (d) on TABLE's grid and its replay, "
                                                            "the first seed of --seeds")
    parser.add_argument("--time-scale", type=float, default=0.02, help="replay: seconds slept per recorded second")
    parser.add_argument("--grace-period", type=int, default=2, help="replay: ASHA grace period (epochs)")
    parser.add_argument("--reduction-factor", type=float, default=3, help="replay: ASHA reduction factor")
    parser.add_argument("--plot", help="replay: write the best-so-far plot here (PNG)")
    parser.add_argument("--resume-out", action="store_true", help="replay: keep the searches already in --out")
    args = parser.parse_args()
    if args.record:
        record_table(args.record, args.table, partial=args.partial, merge=args.merge)
        return
    if args.missing:
        missing_points(args.missing, args.space_out)
        return
    if args.crossing:
        crossing(args.crossing)
        return
    if args.replay or args.faithful:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", num_cpus=args.max_concurrent)
        replay(args) if args.replay else faithful(args)
        return
    if args.tables:
        rows = []
        for path in args.tables:
            for row in json.loads(Path(path).read_text()):
                row["reached"] = {float(t): r for t, r in row["reached"].items()}
                rows.append(row)
        print_tables(rows, args.target, "".join(k for k in METHODS if any(r["method"] == k for r in rows)))
        return

    import ray

    from mathtune.analysis import load_trials
    from mathtune.search import SearchOptions, run_search
    from mathtune.spaces import load_space
    from mathtune.trainables.atomic import write_text

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    space = load_space(SPACE)
    rows = []
    for key in args.methods:
        label, opts = METHODS[key]
        for seed in args.seeds:
            name = f"eff-{key}-s{seed}-{time.strftime('%H%M%S')}"
            t0 = time.perf_counter()
            outcome = run_search(space, SearchOptions(num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                                                      storage_path=args.storage_path, name=name, seed=seed,
                                                      verbose=0, **opts))
            wall = time.perf_counter() - t0
            trials = load_trials(outcome.experiment_dir)
            cpus = space.resources.get("cpus", 1)
            done = sum(t.finished for t in trials)
            total_cpu = sum(t.history[-1].get("time_total_s", 0) * cpus for t in trials if t.history)
            reached = {}
            for target in args.target:
                reached[target], best_val, test = cpu_seconds_to_target(trials, target, cpus)
            rows.append(dict(method=key, seed=seed, reached=reached, best_val=best_val, test=test, completed=done,
                             trials=len(trials), total_cpu_s=total_cpu, wall_s=wall, experiment=str(outcome.experiment_dir)))
            write_text(args.out, json.dumps(rows, indent=1, default=str))
            reach_text = ", ".join(f"{t}: {'%.0f' % r if r is not None else 'never'}" for t, r in reached.items())
            print(f"({key}) {label:32s} seed {seed}: CPU s to target {reach_text}; best val EM {best_val:.4f}, "
                  f"its test EM {test:.4f}; {done}/{len(trials)} trials ran all epochs; {total_cpu:.0f} CPU s "
                  f"in all; {wall:.0f} s wall", flush=True)
    print_tables(rows, args.target, args.methods)


def print_tables(rows: list[dict], targets: list[float], methods: str) -> None:
    """One Markdown table per target (medians over seeds, per-seed figures in brackets)."""
    def fmt(x: float) -> str:
        return "never" if x == float("inf") else f"{x:.0f}"

    for target in targets:
        print()
        print(f"| method | CPU s to val EM >= {target} (median; per seed) | best val EM (median) | "
              f"test EM of selected (median) | trials completed (per seed) | CPU s in all (per seed) |")
        print("|---|---|---|---|---|---|")
        for key in methods:
            mine = [r for r in rows if r["method"] == key]
            if not mine:
                continue
            reach = [r["reached"][target] if r["reached"][target] is not None else float("inf") for r in mine]
            print(f"| ({key}) {METHODS[key][0]} | {fmt(statistics.median(reach))} ({', '.join(map(fmt, reach))}) | "
                  f"{statistics.median(r['best_val'] for r in mine):.4f} | "
                  f"{statistics.median(r['test'] for r in mine):.4f} | "
                  f"{', '.join(str(r['completed']) for r in mine)} | "
                  f"{', '.join('%.0f' % r['total_cpu_s'] for r in mine)} |")


if __name__ == "__main__":
    main()
