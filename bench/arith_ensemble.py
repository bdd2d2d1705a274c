"""Several arithmetic runs decoded as one model: their selected checkpoints' answer probabilities averaged.

Each run folder is a `mathtune train` output (its ``best/`` checkpoint was selected on validation); all must
be the same family on the same data (same split, data seed and operator set; they may differ in anything
else, typically the training seed). The ensemble's membership is fixed in advance (every run given), so
nothing is selected on test. Prints each member's and the ensemble's validation and test exact match and
per-character accuracy, the test accuracy per answer position (in the order the model emits them; reversed
right-padded answers start with the padding, fixed-width reversed ones with the units digit), and with
``--out`` writes them as JSON. One run alone gives its figures and positions.

Example::

    python bench/arith_ensemble.py runs/mul50-240-s0 runs/mul50-240-s1 runs/mul50-240-s2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mathtune.trainables.atomic import write_text
from mathtune.trainables.checkpoints import load_trained, run_checkpoint
from mathtune.trainables.records import RUN_FILE, RunRecord
from mathtune.trainables.arith.text2text import char_metrics


def load_member(folder: Path):
    """(family, model in eval mode, data, config, selected epoch) of a run's ``best/`` checkpoint."""
    family_name = RunRecord.read(folder).family
    best = run_checkpoint(folder, "best")
    family, config, model, data = load_trained(best, family=family_name, device="cpu")
    return family, model, data, config, json.loads((best / "metrics.json").read_text())["epoch"]


def probabilities(family, model, data, part: str) -> torch.Tensor:
    x_all = torch.from_numpy(family.inputs(data))
    idx = torch.from_numpy(data.part(part))
    with torch.no_grad():
        return torch.cat([model(x_all[idx[s:s + family.eval_batch]]).float().softmax(-1)
                          for s in range(0, len(idx), family.eval_batch)])


def scores(prob: torch.Tensor, target: torch.Tensor, data) -> dict:
    """Exact match and per character on the answers as the reference writes them; positions as emitted."""
    pred = prob.argmax(-1)
    exact, chars, n = char_metrics(torch.from_numpy(data.written(pred.numpy())),
                                   torch.from_numpy(data.written(target.numpy())))
    positions = (pred == target).float().mean(0).tolist()
    return {"exact_match": exact / n, "char_acc": chars / target.numel(), "positions": positions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="`mathtune train` output folders (each with best/)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    members = []
    for folder in args.runs:
        if run_checkpoint(folder, "best") is None or not (folder / RUN_FILE).is_file():
            print(f"arith_ensemble: {folder}: not a finished `mathtune train` run (no best/ or result.json)",
                  file=sys.stderr)
            return 2
        members.append((folder, *load_member(folder)))
    family, data, config0 = members[0][1], members[0][3], members[0][4]
    data_key = family.data_key(config0)
    for folder, fam, _, _, cfg, _ in members[1:]:
        if fam.name != family.name or fam.data_key(cfg) != data_key:
            print(f"arith_ensemble: {folder} is not {family.name} on {args.runs[0]}'s data", file=sys.stderr)
            return 2
    result: dict[str, dict] = {"members": {}, "ensemble": {}}
    summed = {}
    print(f"{family.name}: {data.describe()}")
    print("| model | epoch | val EM | val per char | test EM | test per char |")
    print("|---|---|---|---|---|---|")
    for folder, fam, model, _, _, epoch in members:
        row = {}
        for part in ("val", "test"):
            prob = probabilities(fam, model, data, part)
            summed[part] = prob if part not in summed else summed[part] + prob
            row[part] = scores(prob, torch.from_numpy(data.y[data.part(part)]), data)
        result["members"][str(folder)] = {"epoch": epoch, **row}
        print(f"| {folder} | {epoch} | {row['val']['exact_match']:.2%} | {row['val']['char_acc']:.2%} "
              f"| {row['test']['exact_match']:.2%} | {row['test']['char_acc']:.2%} |")
    for part in ("val", "test"):
        result["ensemble"][part] = scores(summed[part], torch.from_numpy(data.y[data.part(part)]), data)
    e = result["ensemble"]
    print(f"| ensemble of {len(members)} | - | {e['val']['exact_match']:.2%} | {e['val']['char_acc']:.2%} "
          f"| {e['test']['exact_match']:.2%} | {e['test']['char_acc']:.2%} |")
    width = len(e["test"]["positions"])
    reversed_ = data.reverse in ("answer", "both")
    order = ("reversed, fixed width: units first" if reversed_ and data.digits == "fixed" else
             "reversed: 1 = the last character of the right-padded written answer" if reversed_ else "reading order")
    print(f"\ntest accuracy per answer position (as emitted; {order})")
    print("| model | " + " | ".join(str(i + 1) for i in range(width)) + " |")
    print("|---|" + "---|" * width)
    for name, row in [*result["members"].items(), (f"ensemble of {len(members)}", e)]:
        print(f"| {name} | " + " | ".join(f"{v:.2%}" for v in row["test"]["positions"]) + " |")
    if args.out:
        write_text(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
