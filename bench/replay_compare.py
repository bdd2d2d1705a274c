"""Replayed variants of method (d) against the saved replays of (a) and (d), paired on the same seeds.

Each variant is a ``bench/search_efficiency.py --replay ... --methods d --out FILE`` run with other search
settings (ASHA grace period, reduction factor, ...). Prints, per variant, the median recorded CPU seconds to
the top-1% and top-5% targets, how many seeds reach top 1%, (a)'s median over this one at top 5%, and a
two-sided Wilcoxon signed-rank test against the default (d) of the saved file on the same seeds (a search
that never reached a target ranks slower than every search that did).

Example::

    python bench/search_efficiency.py --replay bench/results/replay-table.parquet --methods d --seeds $(seq 0 19) \\
        --num-samples 32 --grace-period 1 --out replay-g1.json
    python bench/replay_compare.py --base bench/results/replay-results-32.json.gz "grace 1"=replay-g1.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

NEVER = 1e12  # ranks a search that never reached the target after every one that did


def _load(path: str) -> list[dict]:
    p = Path(path)
    try:
        with (gzip.open(p, "rt") if p.suffix == ".gz" else p.open()) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        sys.exit(f"replay_compare: {path}: not a saved replay file ({exc})")


def _mid(values) -> float:
    """The median as bench/search_efficiency.py reads it (numpy's inverted-CDF quantile: a value of the list)."""
    return float(np.quantile(np.array(list(values), dtype=float), 0.5, method="inverted_cdf"))


def _median(values: list[float]) -> str:
    m = _mid(values)
    return "never" if m >= NEVER or math.isinf(m) else f"{m:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="bench/results/replay-results-32.json.gz", help="saved replays with (a) and (d)")
    parser.add_argument("variants", nargs="+", metavar="LABEL=FILE", help="a replay of (d) with other settings")
    args = parser.parse_args()
    by = {(r["method"], r["seed"]): r for r in _load(args.base)}
    print("| (d) variant | CPU s to top 1% | CPU s to top 5% | seeds reaching top 1% | (a) / this, top 5% | "
          "CPU s in all | p vs default (d), top 1% | p, top 5% |")
    print("|---|---|---|---|---|---|---|---|")
    rows_of = {"default (saved)": [r for (m, _), r in sorted(by.items()) if m == "d"]}
    for spec in args.variants:
        label, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"replay_compare: {spec!r}: expected LABEL=FILE")
        rows_of[label] = sorted((r for r in _load(path) if r["method"] == "d"), key=lambda r: r["seed"])
    for label, rows in rows_of.items():
        seeds = [r["seed"] for r in rows]
        missing = [s for s in seeds if ("a", s) not in by or ("d", s) not in by]
        if missing:
            sys.exit(f"replay_compare: {label}: seeds {missing} are not in {args.base}")
        reach = {k: [min(r["reached"][k], NEVER) for r in rows] for k in ("top 1%", "top 5%")}
        pvals = []
        for k, mine in reach.items():
            base = [min(by[("d", s)]["reached"][k], NEVER) for s in seeds]
            pvals.append("-" if mine == base else f"{wilcoxon(mine, base).pvalue:.2g}")
        a5 = _mid(min(by[("a", s)]["reached"]["top 5%"], NEVER) for s in seeds)
        print(f"| {label} | {_median(reach['top 1%'])} | {_median(reach['top 5%'])} | "
              f"{sum(v < NEVER for v in reach['top 1%'])} of {len(rows)} | {a5 / _mid(reach['top 5%']):.2f}x | "
              f"{_mid(r['total_cpu_s'] for r in rows):.0f} | {pvals[0]} | {pvals[1]} |")


if __name__ == "__main__":
    main()
