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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SPACE = Path(__file__).with_name("efficiency.yaml")
METHODS = {
    "a": ("random, no early stopping", dict(sampler="random", scheduler="none")),
    "b": ("random + ASHA", dict(sampler="random", scheduler="asha")),
    "c": ("TPE + ASHA, Ray's OptunaSearch", dict(searcher="stock")),
    "d": ("TPE + ASHA, mathtune searcher", dict()),
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
    args = parser.parse_args()
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
            Path(args.out).write_text(json.dumps(rows, indent=1, default=str))
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
