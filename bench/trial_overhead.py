"""Per-trial overhead: what a trivial mathtune trial costs beyond its training, next to Ray Tune's own baseline.

Every run uses the same Ray session, the same number of trials and the same concurrency:

* Ray Tune's baseline: a plain Tune function trainable that reports once (random search, no scheduler), with
  and without actor reuse;
* mathtune: ``arith-text2text-addsub`` shrunk to nothing (1 epoch on 16 queries, a 4-unit LSTM), through the
  full engine (Optuna searcher with its journal storage, grouped ASHA, a checkpoint per epoch, the dataset
  shared through the object store), with and without actor reuse.

Per trial slot = wall time x concurrency / trials, the figure Ray's own scalability benchmark gives (10,000
one-second trials on 16 CPUs in 715 s against an ideal of 625 s: about 0.14 s per slot). It has two parts, printed
apart for both runs (from a Tune callback's timestamps):

* start-up, once per search: from the call until the first trial runs (the trial actors' processes start and
  import what the trainable needs: for mathtune, torch and the family's model code);
* the loop: from the first trial's start to the last trial's end, per slot: what every further trial costs.

Beside them, where a mathtune slot goes:

* start: from the call until Tune's ``Tuner.fit`` starts (space, datasets into the object store, searcher,
  Tuner);
* searcher and scheduler: the driver's time in the Optuna searcher and in ASHA, per trial;
* trainable: Tune's ``time_total_s`` of a trial (the worker's time in the trial function), of which the epoch
  itself (training and evaluation, ``epoch_time_s``) and the rest (family and model set-up, checkpoint,
  report); a checkpoint write of the same model is timed on its own;
* the rest of a loop slot: Tune's own loop (actor reset, result processing, experiment-state snapshots).

Printed, not asserted. Several trial counts show how it grows::

    python bench/trial_overhead.py --trials 24 --max-concurrent 2
    python bench/trial_overhead.py --trials 24 100 500 --reuse-only     # mathtune and Ray with actors reused
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the baseline quiet at verbose 0, as mathtune's searches are

OVERRIDES = {"epochs": 1, "limit": 16, "hidden": 4, "decoder_hidden": 4, "batch_size": 16, "threads": 1}


def trivial(config):
    from ray import tune

    tune.report({"val_exact_match": config["x"], "epoch": 1})


class _Timers:
    """Seconds the driver spends in the named methods (patched on their classes for one search)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.first_call: dict[str, float] = {}
        self._undo = []

    def patch(self, cls, names: list[str], group: str) -> None:
        for name in names:
            original = getattr(cls, name)

            @functools.wraps(original)
            def timed(*args, _original=original, **kwargs):
                t0 = time.perf_counter()
                self.first_call.setdefault(group, t0)
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds[group] = self.seconds.get(group, 0.0) + time.perf_counter() - t0

            setattr(cls, name, timed)
            self._undo.append((cls, name, original))

    def restore(self) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)
        self._undo.clear()


class _Timeline:
    """When each trial started and ended (a Tune callback added to every Tuner while the benchmark runs)."""

    def __init__(self):
        from ray import tune

        timeline = self
        self.starts: list[float] = []
        self.ends: list[float] = []

        class Callback(tune.Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                timeline.starts.append(time.perf_counter())

            def on_trial_complete(self, iteration, trials, trial, **info):
                timeline.ends.append(time.perf_counter())

        original = tune.Tuner.__init__

        def init(tuner, *args, run_config=None, **kwargs):
            run_config = run_config or tune.RunConfig()
            run_config.callbacks = [*(run_config.callbacks or []), Callback()]
            original(tuner, *args, run_config=run_config, **kwargs)

        tune.Tuner.__init__ = init
        self._undo = lambda: setattr(tune.Tuner, "__init__", original)

    def phases(self, t0: float, trials: int, concurrent: int) -> dict:
        """start-up (call to the first trial's start) and the loop's seconds per slot (first start to last end)."""
        first, last = min(self.starts), max(self.ends)
        return {"startup_s": first - t0, "loop_slot_s": (last - first) * concurrent / trials}

    def restore(self) -> None:
        self._undo()


def _baseline(trials: int, concurrent: int, reuse: bool, storage: str, name: str) -> dict:
    from ray import tune

    timeline = _Timeline()
    t0 = time.perf_counter()
    try:
        tune.Tuner(tune.with_resources(trivial, {"cpu": 1}),
                   param_space={"x": tune.uniform(0, 1)},
                   tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrent,
                                               metric="val_exact_match", mode="max", reuse_actors=reuse),
                   run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0)).fit()
    finally:
        timeline.restore()
    return {"wall": time.perf_counter() - t0, **timeline.phases(t0, trials, concurrent)}


def _mathtune(trials: int, concurrent: int, reuse: bool, storage: str, name: str) -> dict:
    from ray import tune

    from mathtune.analysis import load_trials
    from mathtune.search import SearchOptions, run_search
    from mathtune.search.scheduler import GroupedASHA
    from mathtune.search.searcher import FactorOptunaSearch

    timers = _Timers()
    timers.patch(FactorOptunaSearch, ["suggest", "on_trial_result", "on_trial_complete"], "searcher")
    timers.patch(GroupedASHA, ["on_trial_add", "on_trial_result", "on_trial_complete"], "scheduler")
    timers.patch(tune.Tuner, ["fit"], "fit")
    timeline = _Timeline()
    t0 = time.perf_counter()
    try:
        outcome = run_search("arith-text2text-addsub", SearchOptions(
            num_samples=trials, max_concurrent=concurrent, storage_path=storage, name=name, verbose=0,
            reuse_actors=reuse, dashboard=False, overrides=OVERRIDES))
    finally:
        timers.restore()
        timeline.restore()
    wall = time.perf_counter() - t0
    done = load_trials(outcome.experiment_dir)
    totals = [t.history[-1].get("time_total_s", float("nan")) for t in done if t.history]
    epochs = [t.history[-1].get("epoch_time_s", float("nan")) for t in done if t.history]
    return {"wall": wall, "start": timers.first_call.get("fit", t0) - t0, "searcher": timers.seconds.get("searcher", 0.0),
            "scheduler": timers.seconds.get("scheduler", 0.0), "trainable": statistics.median(totals),
            "epoch": statistics.median(epochs), "trials": len(done), **timeline.phases(t0, trials, concurrent)}


def _checkpoint_write_s(repeats: int = 20) -> float:
    """Median seconds of one checkpoint write of the benchmark's model (the loop writes one per epoch)."""
    import torch

    from mathtune.trainables.loop import save_checkpoint
    from mathtune.trainables.registry import get_family

    family = get_family("arith-text2text")
    config = family.make_config({"ops": "+-", **OVERRIDES})
    data = family.build_data(config)
    model = family.build_model(config, data)
    optimizer = family.optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            save_checkpoint(Path(tmp) / "last", model=model, optimizer=optimizer, scheduler=None, epoch=1,
                            generator=generator, config=config, history=[{"epoch": 1}], best={"epoch": 1})
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[24], help="trial counts (one set of runs each)")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--reuse-only", action="store_true", help="skip the runs without actor reuse (the slow "
                                                                  "ones at 500 trials)")
    parser.add_argument("--storage-path", default=os.path.join(tempfile.gettempdir(), "mathtune-overhead"))
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()

    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", num_cpus=args.max_concurrent)
    c = args.max_concurrent
    ckpt = _checkpoint_write_s()
    print(f"checkpoint write of the benchmark's model: {ckpt * 1000:.1f} ms (median of 20)", flush=True)
    figures = []
    for n in args.trials:
        stamp = time.strftime("%H%M%S")
        for reuse in ((True,) if args.reuse_only else (False, True)):
            base = _baseline(n, c, reuse, args.storage_path, f"baseline-{n}-{stamp}-reuse{int(reuse)}")
            ours = _mathtune(n, c, reuse, args.storage_path, f"mathtune-{n}-{stamp}-reuse{int(reuse)}")
            slot, base_slot = ours["wall"] * c / n, base["wall"] * c / n
            loop, base_loop = ours["loop_slot_s"], base["loop_slot_s"]
            rest = loop - ours["trainable"] - (ours["searcher"] + ours["scheduler"]) / n * c
            figures.append({"trials": n, "concurrent": c, "reuse_actors": reuse, "baseline": base,
                            "slot_s": slot, "checkpoint_write_s": ckpt, **ours})
            print(f"\n{n} trivial trials, {c} at a time, actors {'reused' if reuse else 'not reused'}, "
                  f"{os.cpu_count()} CPUs:", flush=True)
            print(f"  Ray Tune baseline (function trainable, one report): {base['wall']:7.1f} s wall, "
                  f"{base_slot:5.2f} s per trial slot = start-up {base['startup_s']:.1f} s + the loop "
                  f"{base_loop:.3f} s per slot")
            print(f"  mathtune: {ours['wall']:7.1f} s wall, {slot:5.2f} s per trial slot = start-up "
                  f"{ours['startup_s']:.1f} s + the loop {loop:.3f} s per slot ({loop - base_loop:+.3f} s against "
                  f"Tune's loop)")
            print(f"    start (space, datasets, searcher, Tuner) {ours['start']:.2f} s; the trial actors' start "
                  f"and first trial the rest of the start-up")
            print(f"    driver: searcher {ours['searcher'] / n * 1000:.0f} ms, ASHA {ours['scheduler'] / n * 1000:.1f} ms "
                  f"per trial")
            print(f"    trainable (Tune's time_total_s, median) {ours['trainable'] * 1000:.0f} ms: epoch "
                  f"{ours['epoch'] * 1000:.0f} ms, set-up + checkpoint ({ckpt * 1000:.0f} ms) + report the rest")
            print(f"    the rest of a loop slot (Tune's loop: actor reset, results, snapshots) {rest:.3f} s",
                  flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
