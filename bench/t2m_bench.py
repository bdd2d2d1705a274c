"""Benchmark the four text-to-program families on a fixed CPU budget and score dev at several beam widths.

Each family trains with its defaults (plus ``--set`` overrides) one epoch at a time, resuming from its
last checkpoint, until the next epoch would not fit in ``--budget-s`` seconds of wall time (at least one
epoch always runs); epochs validate greedily on dev. The checkpoint with the best dev execution accuracy is
then scored on dev at each ``--widths`` in one nested-beam pass. The test split is held apart and not used.

Results go to ``OUT/results.json`` and ``OUT/results.md`` (one row per family: training problems, epochs,
wall time, exact match and execution accuracy per width, the data files). Every row states whether the
training set was subsampled (``--limit-train``), which a budget usually forces on CPU: on a shared 2-core
machine with one torch thread, a full 19,791-problem epoch of the default t2m-lstm takes on the order of
10-20 minutes, and fine-tuning MiniLM much longer.

Example (a quick look, about 4 x 2 minutes)::

    .venv/bin/python bench/t2m_bench.py --budget-s 90 --limit-train 2000 --limit-dev 300 --out runs/bench-quick

Full run (hours on CPU; use a GPU with ``--set device=cuda``)::

    .venv/bin/python bench/t2m_bench.py --budget-s 3600 --out runs/bench-full

Each family's run stays in ``OUT/FAMILY`` (``best/``, ``last/``); ship one with
``mathtune ship NAME OUT/FAMILY --produced-by "..."``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

FAMILIES = ("t2m-lstm", "t2m-attn", "t2m-bert-frozen", "t2m-bert-ft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--budget-s", type=float, default=1200.0, help="training wall-time budget per family (seconds)")
    p.add_argument("--limit-train", type=int, default=0, help="training problems (seeded subset; 0 = all 19,791)")
    p.add_argument("--limit-dev", type=int, default=0, help="first N dev problems (0 = all 2,961)")
    p.add_argument("--widths", type=int, nargs="+", default=[1, 5, 10], help="beam widths to score dev at")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in every family that has it (repeatable)")
    p.add_argument("--out", default="runs/t2m-bench", help="output folder (default runs/t2m-bench)")
    return p.parse_args(argv)


def bench_family(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from mathtune.trainables import get_family, train
    from mathtune.trainables.checkpoints import load_trained
    from mathtune.trainables.loop import set_threads
    from mathtune.trainables.t2m.evaluation import evaluate_file, vocabularies_of

    fam = get_family(name)
    known = fam.all_params()
    overrides: dict[str, Any] = {"limit_train": args.limit_train, "limit_dev": args.limit_dev,
                                 "threads": args.threads, "beam_width": 1}
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key in known:
            overrides[key] = value
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    config = fam.make_config({**overrides, "epochs": 1})
    data = fam.build_data(config)
    data_time = time.perf_counter() - t0
    print(f"[bench] {name}: {fam.describe_data(data)} (built in {data_time:.1f} s)", flush=True)
    train_time, epoch, last_epoch_time, result = 0.0, 0, 0.0, None
    max_epochs = int(overrides.get("epochs", 1000))
    while epoch < max_epochs and (epoch == 0 or train_time + last_epoch_time <= args.budget_s):
        epoch += 1
        t1 = time.perf_counter()
        result = train(fam, fam.make_config({**overrides, "epochs": epoch}), data=data, checkpoint_dir=run_dir,
                       progress=lambda line: print(line, flush=True) if "epoch" in line else None)
        last_epoch_time = time.perf_counter() - t1
        train_time += last_epoch_time
    _, cfg, model, _ = load_trained(run_dir / "best", data=vocabularies_of, overrides={"threads": args.threads})
    set_threads(cfg)
    t2 = time.perf_counter()
    limit = args.limit_dev or 0
    scored = evaluate_file(fam, cfg, model, data.info["dev_file"], widths=args.widths, limit=limit)
    decode_time = time.perf_counter() - t2
    best = result["best"] if result else {}
    row = {"family": name, "train_problems": len(data.parts["train"]), "subsampled": bool(args.limit_train),
           "dev_problems": scored.scores[args.widths[0]].n, "epochs": epoch, "best_epoch": best.get("epoch"),
           "train_wall_s": round(train_time, 1), "data_build_s": round(data_time, 1),
           "decode_wall_s": round(decode_time, 1), "threads": args.threads,
           "train_file": data.info["train_file"], "dev_file": data.info["dev_file"],
           "config": cfg.as_dict(), "scores": {w: {"exact_match": r.exact_match, "exec_acc": r.execution_accuracy}
                                     for w, r in scored.scores.items()}}
    for w, r in scored.scores.items():
        print(f"[bench] {name} beam {w}: exact match {r.exact_match:.2f}%, execution accuracy "
              f"{r.execution_accuracy:.2f}%", flush=True)
    return row


def markdown(rows: list[dict[str, Any]], widths: list[int], budget: float) -> str:
    head = ["family", "train problems", "epochs (best)", "train s"]
    head += [f"beam {w} exec / EM" for w in widths]
    lines = [f"Dev scores after at most {budget:.0f} s of training per family (first epoch always runs); "
             "execution accuracy / exact match in percent; selection on dev, test held apart.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["family"], f"{r['train_problems']}{' (subset)' if r['subsampled'] else ''}",
                 f"{r['epochs']} ({r['best_epoch']})", f"{r['train_wall_s']:.0f}"]
        cells += [f"{r['scores'][w]['exec_acc']:.2f} / {r['scores'][w]['exact_match']:.2f}" for w in widths]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        lines += ["", f"Data: {rows[0]['train_file']} / {rows[0]['dev_file']} (first {rows[0]['dev_problems']} dev "
                      f"problems); torch threads {rows[0]['threads']}; seeds 0 (model) and 0 (data)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from mathtune.trainables.atomic import write_text

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.families:
        rows.append(bench_family(name, args, out))
        write_text(out / "results.json", json.dumps(rows, indent=1, default=str))
        write_text(out / "results.md", markdown(rows, args.widths, args.budget_s))
    print(markdown(rows, args.widths, args.budget_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
