"""Write a `mathtune train` run (or several training seeds of one configuration) as a shipped configuration.

A shipped configuration (``trainables/configs/NAME.json``) is a ``mathtune train FAMILY --config FILE`` input
that carries the figure its run measured, selected on validation: the best epoch's ``val_*`` and ``test_*``
metrics, the data it was measured on, the wall time, the machine and the command that produced it.

With several run folders (the same configuration trained with different ``seed`` values), the figure is the
mean over the runs, ``figure.seeds`` keeps each run's value per metric, and the configuration is the first
run's (its seed is the one ``mathtune train --config FILE`` retrains).

The figure also carries ``train_char_acc`` and ``train_exact_match``: the selected checkpoint (each run's
``best/``) scored on its own training queries in eval mode (no dropout, no augmentation), the reference
reports' "train" rows. ``--train-only`` adds just these to an already shipped file from the runs that
produced it, leaving the rest of the file as it is (each run's selected epoch must be the file's).

Example::

    python bench/ship_config.py arith-text2text-mul-60 runs/mul60-s0 runs/mul60-s1 runs/mul60-s2 \\
        --produced-by "mathtune train arith-text2text --config ... --set seed=N --out runs/mul60-sN"
    python bench/ship_config.py arith-text2text-mul-40 runs/mul40-240 --train-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import date
from pathlib import Path

from mathtune.trainables.provenance import describe

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


def search_of(exp: Path) -> dict:
    """What a shipped file records of the search that found it: experiment, space, options, budget spent."""
    try:
        record = json.loads((exp / "mathtune.json").read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"ship_config: --search {exp}: not a mathtune experiment ({exc})")
    try:
        budget = json.loads((exp / "budget.json").read_text())
    except (OSError, ValueError):
        budget = {}
    opts = record.get("options") or {}
    sets = " ".join(f"--set {k}={v}" for k, v in (opts.get("overrides") or {}).items())
    return {"experiment": record.get("name", exp.name), "space": record.get("space_name"),
            "command": f"mathtune search {record.get('space_name')} {sets}".strip(),
            "budget_s": opts.get("budget"), "spent_s": budget.get("spent_s"), "created": record.get("created")}


def machine_of(provenance: list[list[dict]]) -> str:
    """Where the runs trained, from what each recorded when it started (and at each resume), not the machine
    that ships them."""
    lines = list(dict.fromkeys(describe(entry) for run in provenance for entry in run))
    if not lines:
        return "not recorded (the runs trained before runs recorded their machine)"
    return "; ".join(lines)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def train_figures(folders: list[Path], family_name: str) -> list[dict[str, float]]:
    """Each run's selected checkpoint (``best/``) scored on its training queries: train_char_acc, train_exact_match."""
    import torch

    from mathtune.analysis.views import rebuild_run

    torch.set_num_threads(1)
    out = []
    for folder in folders:
        family, model, data, config = rebuild_run(family_name, folder / "best")
        if not hasattr(family, "part_metrics"):
            sys.exit(f"ship_config: {family_name} has no per-part metrics; use it without train figures")
        scored = family.part_metrics(model, data, config, "train", torch.device("cpu"))
        out.append({k: scored[k] for k in ("train_char_acc", "train_exact_match")})
    return out


def add_train_figures(figure: dict, scored: list[dict[str, float]]) -> dict:
    """``figure`` with the train metrics of ``scored`` (one entry per seed run, in the figure's seed order)."""
    figure = dict(figure)
    for key in ("train_char_acc", "train_exact_match"):
        values = [s[key] for s in scored]
        figure[key] = statistics.fmean(values)
        if "seeds" in figure:
            figure["seeds"] = {**figure["seeds"], key: values}
    return figure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="configuration name: writes trainables/configs/NAME.json")
    p.add_argument("runs", nargs="+", type=Path, help="finished `mathtune train` output folders (one per seed)")
    p.add_argument("--produced-by", help="the command(s) that trained the runs (required unless --train-only)")
    p.add_argument("--note", default="", help="anything a reader of the figure should know")
    p.add_argument("--search", type=Path, metavar="EXP",
                   help="the search experiment that found the configuration (its name, command and budget are "
                        "recorded, and `mathtune reference` says the figure came from a search)")
    p.add_argument("--configs-dir", type=Path, default=ROOT / "trainables" / "configs",
                   help="where shipped configurations live (default: trainables/configs)")
    p.add_argument("--train-only", action="store_true",
                   help="add the train figures to the already shipped NAME.json from the runs that produced it")
    args = p.parse_args(argv)
    results = [read_run(r) for r in args.runs]
    family = results[0]["family"]
    out = args.configs_dir / f"{args.name}.json"
    if args.train_only:
        return write_train_only(out, family, results, args.runs)
    if not args.produced_by:
        sys.exit("ship_config: --produced-by is required (the command(s) that trained the runs)")
    if any(r["family"] != family for r in results):
        sys.exit("ship_config: the runs belong to different families")
    base = {k: v for k, v in results[0]["config"].items() if k != "seed"}
    for r, folder in zip(results[1:], args.runs[1:]):
        other = {k: v for k, v in r["config"].items() if k != "seed"}
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            sys.exit(f"ship_config: {folder} differs from {args.runs[0]} in {', '.join(diff)} (only seed may differ)")
    provenance = [r.get("provenance") or [] for r in results]
    payload = {
        "family": family,
        "figure": add_train_figures(figure_of(results), train_figures(args.runs, family)),
        "measured_on": results[0].get("data", ""),
        "selected": "the epoch with the best validation metric of each run (test reported only)"
                    + (f"; figure = mean over {len(results)} training seeds" if len(results) > 1 else ""),
        "wall_time_s": round(statistics.fmean(r["wall_time_s"] for r in results), 1),
        "machine": machine_of(provenance),
        "provenance": provenance,
        "date": date.today().isoformat(),
        "produced_by": args.produced_by,
        "train_command": f"mathtune train {family} --config trainables/configs/{args.name}.json",
        **({"note": args.note} if args.note else {}),
        **({"search": search_of(args.search)} if args.search else {}),
        "config": results[0]["config"],
    }
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {_shown(out)}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in payload["figure"].items() if isinstance(v, float) and k.startswith("test_")))
    return 0


def write_train_only(out: Path, family: str, results: list[dict], folders: list[Path]) -> int:
    try:
        payload = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"ship_config: {out}: not a shipped configuration ({exc})")
    figure = payload["figure"]
    epochs = figure.get("epochs_selected", [figure["epoch"]])
    if payload["family"] != family or len(epochs) != len(results):
        sys.exit(f"ship_config: {out} is {payload['family']} from {len(epochs)} run(s); got {len(results)} {family} run(s)")
    shipped = {k: v for k, v in payload["config"].items() if k not in ("seed", "threads")}
    for r, folder, epoch in zip(results, folders, epochs):
        cfg = {k: v for k, v in r["config"].items() if k not in ("seed", "threads")}
        if cfg != shipped or int(r["best"]["epoch"]) != int(epoch):
            diff = sorted(k for k in cfg.keys() | shipped.keys() if cfg.get(k) != shipped.get(k))
            sys.exit(f"ship_config: {folder} did not produce {out.name} (config differs in {diff or 'nothing'}; "
                     f"selected epoch {r['best']['epoch']}, the file's {epoch})")
    payload["figure"] = add_train_figures(figure, train_figures(folders, family))
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{_shown(out)}: train_char_acc {payload['figure']['train_char_acc']:.4f}, "
          f"train_exact_match {payload['figure']['train_exact_match']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
