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

    python bench/search_efficiency.py --seeds 0 1 2 --num-samples 12 --target 0.9
"""

from __future__ import annotations

import argparse
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
    """Replay the experiment: (CPU s when best val EM first >= target, final best val EM, its test EM)."""
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
    parser.add_argument("--target", type=float, default=0.9, help="validation exact match to reach")
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-efficiency"))
    args = parser.parse_args()

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
            reached, best_val, test = cpu_seconds_to_target(trials, args.target, space.resources.get("cpus", 1))
            done = sum(t.finished for t in trials)
            total_cpu = sum(t.history[-1].get("time_total_s", 0) for t in trials if t.history)
            rows.append((key, seed, reached, best_val, test, done, total_cpu, wall))
            print(f"({key}) {label:32s} seed {seed}: target {args.target} reached after "
                  f"{'%.0f' % reached if reached is not None else 'never':>6} CPU s; best val EM {best_val:.4f}, "
                  f"its test EM {test:.4f}; {done}/{len(trials)} trials ran all epochs; {total_cpu:.0f} CPU s "
                  f"in all; {wall:.0f} s wall", flush=True)
    print()
    print(f"| method | CPU s to val EM >= {args.target} (median; per seed) | best val EM (median) | "
          f"test EM of selected (median) | trials completed (median) |")
    print("|---|---|---|---|---|")
    for key in args.methods:
        mine = [r for r in rows if r[0] == key]
        reach = [r[2] if r[2] is not None else float("inf") for r in mine]
        per_seed = ", ".join("never" if x == float("inf") else f"{x:.0f}" for x in reach)
        med = statistics.median(reach)
        print(f"| ({key}) {METHODS[key][0]} | {'never' if med == float('inf') else f'{med:.0f}'} ({per_seed}) | "
              f"{statistics.median(r[3] for r in mine):.4f} | {statistics.median(r[4] for r in mine):.4f} | "
              f"{statistics.median(r[5] for r in mine):.0f} |")


if __name__ == "__main__":
    main()
