"""The searcher's own cost per trial on each Optuna storage, side by side in one run: SQLite (what experiments
used before) against Optuna's journal file (today's default), without Ray or training.

Each round drives a fresh :class:`~mathtune.search.searcher.FactorOptunaSearch` over the ``arith-text2text-addsub``
space through what Tune calls during a search (``suggest``, one ``on_trial_result`` per epoch,
``on_trial_complete``), with the same seeds and values on both storages; the rounds alternate between the
storages so both see the same machine load. Printed, not asserted::

    python bench/searcher_storage.py --trials 100 --epochs 3 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from mathtune.analysis.store import journal_url
from mathtune.search.searcher import FactorOptunaSearch, close_storages
from mathtune.spaces.loader import load_space


def one_round(url: str, trials: int, epochs: int, seed: int) -> dict[str, float]:
    """Seconds per trial in each searcher call, and opening the storage, for one search's worth of trials."""
    space = load_space("arith-text2text-addsub")
    rng = random.Random(seed)
    spent = {"open": 0.0, "suggest": 0.0, "result": 0.0, "complete": 0.0}
    t0 = time.perf_counter()
    searcher = FactorOptunaSearch(space, storage=url, study_name="bench", seed=seed)
    searcher.studies()
    spent["open"] = time.perf_counter() - t0
    for i in range(trials):
        t0 = time.perf_counter()
        config = searcher.suggest(f"t{i}")
        t1 = time.perf_counter()
        value = 0.0
        for epoch in range(1, epochs + 1):
            value = rng.random()
            searcher.on_trial_result(f"t{i}", {"val_exact_match": value, "epoch": epoch})
        t2 = time.perf_counter()
        searcher.on_trial_complete(f"t{i}", {"val_exact_match": value, "epoch": epochs, "config": config})
        t3 = time.perf_counter()
        spent["suggest"] += t1 - t0
        spent["result"] += t2 - t1
        spent["complete"] += t3 - t2
    close_storages()
    return {k: (v if k == "open" else v / trials) for k, v in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3, help="results reported per trial")
    parser.add_argument("--rounds", type=int, default=3, help="searches per storage, alternating")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "journal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in runs:
                path = Path(tmp) / f"{kind}-{r}"
                url = f"sqlite:///{path}.db" if kind == "sqlite" else journal_url(f"{path}.journal")
                runs[kind].append(one_round(url, args.trials, args.epochs, seed=r))
    print(f"{args.trials} trials of {args.epochs} epochs per search, {args.rounds} searches per storage "
          f"(median); ms per trial in each searcher call:")
    medians = {kind: {k: statistics.median(run[k] for run in rs) for k in rs[0]} for kind, rs in runs.items()}
    print("| storage | open (s) | suggest | results | complete | per trial |")
    print("|---|---|---|---|---|---|")
    for kind, m in medians.items():
        total = m["suggest"] + m["result"] + m["complete"]
        print(f"| {kind} | {m['open']:.2f} | {m['suggest'] * 1000:.1f} | {m['result'] * 1000:.1f} | "
              f"{m['complete'] * 1000:.1f} | {total * 1000:.1f} |")
    per = {kind: m["suggest"] + m["result"] + m["complete"] for kind, m in medians.items()}
    print(f"journal against SQLite: {per['sqlite'] / per['journal']:.1f}x less searcher time per trial")


if __name__ == "__main__":
    main()
