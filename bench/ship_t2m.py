"""Ship a trained text-to-program model inside the package as ``pretrained:NAME``, with figures measured on
the shipped file itself.

Exports CHECKPOINT (a checkpoint folder, a ``mathtune train`` folder or a Tune trial folder) in float16 to
``trainables/weights/NAME/`` (state dict with vocabularies, config.json), then loads that folder the way
``mathtune evaluate pretrained:NAME`` does and scores the dev file at ``--widths`` (all problems, and the
first 200, the figure the package's test checks), and records the figures, the dev file's md5, the command
that trained the model and its wall time in ``model.json``.

Example::

    .venv/bin/python bench/ship_t2m.py runs/lstm-ls30 --name t2m \\
        --train-command "mathtune train t2m-lstm --config trainables/configs/t2m-lstm.json"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import time
from pathlib import Path

FIRST = 200


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="checkpoint, `mathtune train` folder or Tune trial folder")
    p.add_argument("--name", default="t2m", help="shipped name: pretrained:NAME (default t2m)")
    p.add_argument("--dev-file", default="", help="dev file to measure on (default: the COL775 dev.json)")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 5, 10], help="beam widths to measure")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads while measuring")
    p.add_argument("--train-command", required=True, help="the command that trained the model (recorded)")
    args = p.parse_args(argv)

    import torch

    from mathtune.trainables.loop import load_checkpoint
    from mathtune.trainables.t2m.dataset import resolve_file
    from mathtune.trainables.t2m.evaluation import evaluate_file, find_checkpoint, load_trained
    from mathtune.trainables.t2m.shipped import WEIGHTS_DIR, export_model, file_md5

    ckpt = find_checkpoint(args.checkpoint)
    _, run_config, metrics = load_checkpoint(ckpt)
    history = metrics.get("history") or []
    dev = resolve_file(args.dev_file, "dev_file", "dev.json")
    dest = WEIGHTS_DIR / args.name
    tmp = WEIGHTS_DIR / f".{args.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    record = {"name": args.name, "family": json.loads((ckpt / "config.json").read_text()).get("family") or "",
              "source_checkpoint": str(ckpt), "train_command": args.train_command,
              "train_wall_time_s": round(sum(float(h.get("epoch_time_s", 0.0)) for h in history), 1),
              "epochs_trained": len(history), "date": dt.date.today().isoformat(),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads available, "
                         f"torch {torch.__version__}",
              "selected": "the epoch with the best greedy dev execution accuracy of its run (dev is validation; "
                          "the COL775 test split was not used)"}
    export_model(ckpt, tmp, record=record)
    family, config, model = load_trained(tmp, overrides={"threads": args.threads, "device": "cpu"})
    record["family"] = family.name
    figures: dict[str, dict[str, dict[str, float]]] = {}
    timing: dict[str, float] = {}
    for label, limit in (("dev", 0), (f"dev_first_{FIRST}", FIRST)):
        t0 = time.perf_counter()
        out = evaluate_file(family, config, model, dev, widths=args.widths, limit=limit)
        timing[label] = round(time.perf_counter() - t0, 1)
        figures[label] = {str(w): {"exec_acc": round(r.execution_accuracy, 2), "exact_match": round(r.exact_match, 2),
                                   "problems": r.n} for w, r in out.scores.items()}
        for w, r in out.scores.items():
            print(f"{label:14s} beam {w:3d}: execution {r.execution_accuracy:6.2f}%  exact match "
                  f"{r.exact_match:6.2f}%  ({r.n} problems)", flush=True)
    record.update({"figures": figures, "decode_wall_s": timing,
                   "measured_on": {"file": dev.name, "md5": file_md5(dev), "threads": args.threads},
                   "size_bytes": sum(f.stat().st_size for f in tmp.iterdir())})
    from mathtune.trainables.t2m.shipped import MODEL_FILE

    (tmp / MODEL_FILE).write_text(json.dumps({**json.loads((tmp / MODEL_FILE).read_text()), **record}, indent=1)
                                  + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"[ship] pretrained:{args.name} written to {dest} ({record['size_bytes'] / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
