"""Write a `mathtune train` run (or several training seeds of one configuration) as a shipped configuration.

A shipped configuration (``trainables/configs/NAME.json``) is a ``mathtune train FAMILY --config FILE`` input
that carries the figure its run measured, selected on validation: the best epoch's ``val_*`` and ``test_*``
metrics, the data it was measured on, the wall time, the machine and the command that produced it.

With several run folders (the same configuration trained with different ``seed`` values), the figure is the
mean over the runs, ``figure.seeds`` keeps each run's value per metric, and the configuration is the first
run's (its seed is the one ``mathtune train --config FILE`` retrains).

Example::

    python bench/ship_config.py arith-text2text-mul-60 runs/mul60-s0 runs/mul60-s1 runs/mul60-s2 \\
        --produced-by "mathtune train arith-text2text --config ... --set seed=N --out runs/mul60-sN"
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_run(folder: Path) -> dict:
    path = folder / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"ship_config: {path}: not a finished `mathtune train` run ({exc})")
    return result


def figure_of(results: list[dict]) -> dict:
    keys = [k for k, v in results[0]["best"].items()
            if (k.startswith(("val_", "test_")) or k == "classifier_acc") and isinstance(v, (int, float))]
    if len(results) == 1:
        return {**{k: results[0]["best"][k] for k in keys}, "epoch": int(results[0]["best"]["epoch"])}
    figure = {k: statistics.fmean(r["best"][k] for r in results) for k in keys}
    figure["epoch"] = int(results[0]["best"]["epoch"])
    figure["seeds"] = {k: [r["best"][k] for r in results] for k in keys}
    figure["seed_values"] = [r["config"]["seed"] for r in results]
    figure["epochs_selected"] = [int(r["best"]["epoch"]) for r in results]
    return figure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="configuration name: writes trainables/configs/NAME.json")
    p.add_argument("runs", nargs="+", type=Path, help="finished `mathtune train` output folders (one per seed)")
    p.add_argument("--produced-by", required=True, help="the command(s) that trained the runs")
    p.add_argument("--note", default="", help="anything a reader of the figure should know")
    args = p.parse_args(argv)
    results = [read_run(r) for r in args.runs]
    family = results[0]["family"]
    if any(r["family"] != family for r in results):
        sys.exit("ship_config: the runs belong to different families")
    base = {k: v for k, v in results[0]["config"].items() if k != "seed"}
    for r, folder in zip(results[1:], args.runs[1:]):
        other = {k: v for k, v in r["config"].items() if k != "seed"}
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            sys.exit(f"ship_config: {folder} differs from {args.runs[0]} in {', '.join(diff)} (only seed may differ)")
    import torch

    threads = results[0]["config"].get("threads")
    payload = {
        "family": family,
        "figure": figure_of(results),
        "measured_on": results[0].get("data", ""),
        "selected": "the epoch with the best validation metric of each run (test reported only)"
                    + (f"; figure = mean over {len(results)} training seeds" if len(results) > 1 else ""),
        "wall_time_s": round(statistics.fmean(r["wall_time_s"] for r in results), 1),
        "machine": f"{platform.machine()} with {threads} torch thread(s), torch {torch.__version__}, run beside "
                   f"other jobs on a 2-core machine (wall times are upper bounds)",
        "date": date.today().isoformat(),
        "produced_by": args.produced_by,
        "train_command": f"mathtune train {family} --config trainables/configs/{args.name}.json",
        **({"note": args.note} if args.note else {}),
        "config": results[0]["config"],
    }
    out = ROOT / "trainables" / "configs" / f"{args.name}.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in payload["figure"].items() if isinstance(v, float) and k.startswith("test_")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
