"""Ship a trained text-to-program run: its configuration as ``trainables/configs/FAMILY.json`` and, with
``--weights NAME``, the model itself inside the package as ``pretrained:NAME``; every figure is measured here,
on the files being shipped.

* The configuration file (the ``mathtune train FAMILY --config FILE`` contract): the run's config, its best
  epoch's greedy dev figures, and dev execution accuracy and exact match at each ``--widths`` decoded from the
  run's best checkpoint, with the data, wall time and command.
* ``--weights NAME``: the best checkpoint in float16 under ``trainables/weights/NAME/`` (state dict with
  vocabularies, config.json), loaded back the way ``mathtune evaluate pretrained:NAME`` loads it and scored on
  dev at ``--widths`` (all problems, and the first 200: the figure the package's test checks); the figures,
  the dev file's md5, the command and the wall time go into its ``model.json``.

Example::

    .venv/bin/python bench/ship_t2m.py runs/lstm-ls30 --weights t2m \\
        --train-command "mathtune train t2m-lstm --config trainables/configs/t2m-lstm.json"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST = 200


def measure(family, config, model, dev: Path, widths, limit: int = 0, label: str = "dev") -> dict[str, dict]:
    from mathtune.trainables.t2m.evaluation import evaluate_file

    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, dev, widths=widths, limit=limit)
    wall = time.perf_counter() - t0
    for w, r in out.scores.items():
        print(f"{label:14s} beam {w:3d}: execution {r.execution_accuracy:6.2f}%  exact match {r.exact_match:6.2f}%  "
              f"({r.n} problems)", flush=True)
    print(f"{label:14s} decoded in {wall:.1f} s", flush=True)
    return {str(w): {"exec_acc": round(r.execution_accuracy, 2), "exact_match": round(r.exact_match, 2), "problems": r.n}
            for w, r in out.scores.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a `mathtune train` folder (its best/), checkpoint or Tune trial folder")
    p.add_argument("--train-command", required=True,
                   help="the command that trained the run, as a user would type it (recorded)")
    p.add_argument("--weights", metavar="NAME", help="also ship the model as pretrained:NAME")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 5, 10], help="beam widths to measure")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads while measuring")
    p.add_argument("--note", default="", help="how the run was chosen (recorded as `selected`)")
    args = p.parse_args(argv)


    from mathtune.analysis.best import write_best
    from mathtune.trainables.loop import load_checkpoint
    from mathtune.trainables.provenance import describe
    from mathtune.trainables.t2m.dataset import resolve_file
    from mathtune.trainables.t2m.evaluation import find_checkpoint, load_trained
    from mathtune.trainables.t2m.shipped import MODEL_FILE, WEIGHTS_DIR, export_model, file_md5

    ckpt = find_checkpoint(args.checkpoint)
    _, run_config, metrics = load_checkpoint(ckpt)
    history = metrics.get("history") or []
    best = metrics.get("best") or {}
    family, config, model = load_trained(ckpt, overrides={"threads": args.threads, "device": "cpu"})
    train_file = resolve_file(config["train_file"], "train_file", "train.json")
    dev = resolve_file(config["dev_file"], "dev_file", "dev.json")
    wall = round(sum(float(h.get("epoch_time_s", 0.0)) for h in history), 1)
    provenance = metrics.get("provenance") or []  # where the run trained, recorded at its start and resumes
    trained_on = "; ".join(dict.fromkeys(describe(e) for e in provenance)) or \
        f"not recorded (trained before runs recorded their machine), {run_config.get('threads')} torch thread(s)"
    machine = f"trained on {trained_on}; measured with {args.threads} torch thread(s)"
    selected = args.note or ("the epoch with the best greedy dev execution accuracy of a full-data run (dev is "
                             "validation); the COL775 test split was not used")
    by_width = measure(family, config, model, dev, args.widths)
    cfg_path = ROOT / "trainables" / "configs" / f"{family.name}.json"
    payload = {
        "family": family.name,
        "figure": {"val_exec_acc": best.get("val_exec_acc"), "val_exact_match": best.get("val_exact_match"),
                   "epoch": best.get("epoch"), "dev_percent_by_beam_width": by_width},
        "measured_on": (f"a seeded subset of {config['limit_train']}" if config["limit_train"] else
                        f"all {len(json.loads(train_file.read_text()))}") + f" training problems of {train_file}; all "
                       f"{by_width[str(args.widths[0])]['problems']} problems of {dev} (md5 {file_md5(dev)}) as "
                       f"validation: selection and figures; the COL775 test split held apart",
        "wall_time_s": wall,
        "machine": machine,
        "provenance": provenance,
        "date": dt.date.today().isoformat(),
        "selected": selected,
        "train_command": f"mathtune train {family.name} --config trainables/configs/{family.name}.json",
        "produced_by": args.train_command,
        "config": run_config,
    }
    write_best(payload, cfg_path)
    print(f"[ship] configuration written: {cfg_path}", flush=True)
    if not args.weights:
        return 0

    dest = WEIGHTS_DIR / args.weights
    tmp = WEIGHTS_DIR / f".{args.weights}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    record = {"name": args.weights, "family": family.name, "source_checkpoint": str(ckpt),
              "train_command": f"mathtune train {family.name} --config trainables/configs/{family.name}.json",
              "produced_by": args.train_command, "train_wall_time_s": wall, "epochs_trained": len(history),
              "date": dt.date.today().isoformat(), "machine": machine, "selected": selected}
    export_model(ckpt, tmp, record=record)
    family, config, model = load_trained(tmp, overrides={"threads": args.threads, "device": "cpu"})
    figures = {"dev": measure(family, config, model, dev, args.widths, label="shipped dev"),
               f"dev_first_{FIRST}": measure(family, config, model, dev, args.widths, FIRST,
                                             label=f"shipped dev[:{FIRST}]")}
    record.update({"figures": figures, "measured_on": {"file": dev.name, "md5": file_md5(dev),
                                                       "threads": args.threads},
                   "size_bytes": sum(f.stat().st_size for f in tmp.iterdir())})
    saved = json.loads((tmp / MODEL_FILE).read_text())
    (tmp / MODEL_FILE).write_text(json.dumps({**saved, **record}, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"[ship] pretrained:{args.weights} written to {dest} ({record['size_bytes'] / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
