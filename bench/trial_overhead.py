"""Per-trial overhead: what a trivial mathtune trial costs beyond its training, next to Ray Tune's own baseline.

Both runs use the same Ray session, the same number of trials and the same concurrency:

* baseline: a plain Tune function trainable that reports once (random search, no scheduler);
* mathtune: ``arith-text2text-addsub`` shrunk to nothing (1 epoch on 16 queries, a 4-unit LSTM), through
  the full engine (Optuna searcher with SQLite storage, grouped ASHA, a checkpoint per epoch, dataset
  shared through the object store).

The difference per trial is mathtune's overhead (searcher, storage, checkpointing, dataset transfer,
building the family and model). Printed, not asserted.

    python bench/trial_overhead.py --trials 12 --max-concurrent 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def trivial(config):
    from ray import tune

    tune.report({"val_exact_match": config["x"], "epoch": 1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-overhead"))
    args = parser.parse_args()

    import ray
    from ray import tune

    from mathtune.search import SearchOptions, run_search

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    name = time.strftime("%H%M%S")

    t0 = time.perf_counter()
    tune.Tuner(tune.with_resources(trivial, {"cpu": 1}),
               param_space={"x": tune.uniform(0, 1)},
               tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=args.max_concurrent,
                                           metric="val_exact_match", mode="max"),
               run_config=tune.RunConfig(name=f"baseline-{name}", storage_path=args.storage_path, verbose=0)).fit()
    baseline = time.perf_counter() - t0

    walls = {}
    for reuse in (False, True):
        t0 = time.perf_counter()
        run_search("arith-text2text-addsub", SearchOptions(
            num_samples=args.trials, max_concurrent=args.max_concurrent, storage_path=args.storage_path,
            name=f"mathtune-{name}-reuse{int(reuse)}", verbose=0, reuse_actors=reuse,
            overrides={"epochs": 1, "limit": 16, "hidden": 4, "decoder_hidden": 4, "batch_size": 16,
                       "threads": 1}))
        walls[reuse] = time.perf_counter() - t0

    n, c = args.trials, args.max_concurrent
    print(f"{n} trivial trials, {c} at a time, {os.cpu_count()} CPUs:")
    print(f"  Ray Tune baseline (function trainable, one report): {baseline:6.1f} s wall, "
          f"{baseline * c / n:5.2f} s per trial-slot")
    for reuse, ours in walls.items():
        label = "actors reused (default)" if reuse else "a new actor per trial "
        print(f"  mathtune, {label}: {ours:6.1f} s wall, {ours * c / n:5.2f} s per trial-slot, "
              f"overhead beyond Tune's {(ours - baseline) * c / n:+.2f} s per trial")


if __name__ == "__main__":
    main()
