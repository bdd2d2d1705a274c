"""Where an arith-img2text run with a per-image head (``aux_weight`` / ``aux_feed``) loses exact match:
reading digits or doing the arithmetic. Loads the run's best checkpoint and prints, per part:

* digit images read right (the run's ``*_read_acc``);
* queries whose digits are all read right;
* exact match overall, on those queries, and on the queries with a misread digit.

    python bench/read_breakdown.py runs/img-aux4 [runs/img-aux3 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mathtune.trainables.checkpoints import load_trained, run_checkpoint


def breakdown(run: Path) -> None:
    best = run_checkpoint(run, "best")
    saved = json.loads((best / "config.json").read_text())
    legacy = {"aux_feed": "concat"} if saved.get("aux_feed") is True else None  # before aux_feed took a mode
    _, config, model, data = load_trained(best, family="arith-img2text", overrides=legacy, device="cpu")
    if config.aux_weight <= 0 and config.aux_feed == "off":
        sys.exit(f"read_breakdown: {run}: the run has no per-image head (aux_weight 0, aux_feed off)")
    for part in ("val", "test"):
        rows = data.part(part)
        images = torch.from_numpy(data.images[rows])
        with torch.no_grad():
            outs = [model(images[s:s + 512], with_aux=True) for s in range(0, len(rows), 512)]
        answers = torch.cat([o[0] for o in outs]).argmax(-1).numpy()
        reads = torch.cat([o[1] for o in outs]).argmax(-1).numpy()
        digits = data.image_index[rows] >= 0
        read_ok = reads == data.x[rows]
        all_read = np.where(digits, read_ok, True).all(1)
        exact = (answers == data.y[rows]).all(1)
        misread = f"{exact[~all_read].mean():.4f}" if (~all_read).any() else "n/a (none)"
        print(f"{run} {part}: digits read {read_ok[digits].mean():.4f} | queries all read {all_read.mean():.4f} | "
              f"EM {exact.mean():.4f} | EM all read {exact[all_read].mean():.4f} | EM misread {misread}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="`mathtune train --out` folders")
    torch.set_num_threads(1)
    for run in parser.parse_args().runs:
        if run_checkpoint(run, "best") is None:
            sys.exit(f"read_breakdown: {run}: no best checkpoint (best/state.pt)")
        breakdown(run)


if __name__ == "__main__":
    main()
