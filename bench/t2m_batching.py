"""One training epoch of a text-to-program family under each ``batching``, side by side: CPU seconds and padding.

Each round trains a fresh model (the same seed) for one epoch of ``--limit-train`` problems under ``program``
(batches of similar program length) and then ``lengths`` (similar input and program lengths), and prints the
process's CPU seconds per epoch, samples/s and how much padding each pads the inputs and programs with (padded
tokens over real tokens). The ratio of the summed CPU times over the rounds is the speed-up.

Example (about 4 minutes on one core)::

    .venv/bin/python bench/t2m_batching.py --config trainables/configs/t2m-lstm.json
    .venv/bin/python bench/t2m_batching.py --config trainables/configs/t2m-lstm.json --set decoder=op \\
        --set batch_size=16
"""

from __future__ import annotations

import argparse
import json
import time

MODES = ("program", "lengths")


def epoch_parser(description: str) -> argparse.ArgumentParser:
    """The options of a side-by-side training-epoch benchmark (this one and ``t2m_lstm_step.py``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--family", default="", help="family (default: the config file's)")
    p.add_argument("--config", default="trainables/configs/t2m-lstm.json",
                   help="a shipped or run config file to start from (default: the shipped t2m-lstm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    p.add_argument("--limit-train", type=int, default=3000, help="training problems in the epoch (default 3000)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of both ways, alternating (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return epoch_parser(__doc__.split("\n\n")[0]).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from mathtune.trainables import get_family

    shipped = json.loads(open(args.config).read())
    fam = get_family(args.family or shipped["family"])
    base = {**shipped["config"], "limit_train": args.limit_train, "limit_dev": 16, "threads": args.threads,
            "device": "cpu"}
    base.update(pair.split("=", 1) for pair in args.set)
    torch.set_num_threads(args.threads)
    cpu: dict[str, float] = {m: 0.0 for m in MODES}
    for rnd in range(args.rounds):
        for mode in MODES:
            config = fam.make_config({**base, "batching": mode})
            data = fam.build_data(config)
            part = data.parts["train"]
            torch.manual_seed(0)
            model = fam.build_model(config, data).train()
            opt = fam.optimizer(model, config)
            batches = list(fam.batches(data, config, torch.Generator().manual_seed(rnd), torch.device("cpu")))
            pad = [sum(b[k].numel() for b in batches) / float(getattr(part, k).lengths.sum()) for k in ("src", "tgt")]
            start = time.process_time()
            for b in batches:
                opt.zero_grad()
                fam.loss(model, b, config).backward()
                opt.step()
            spent = time.process_time() - start
            cpu[mode] += spent
            print(f"[batching] round {rnd + 1} {mode}: {len(part)} problems in {spent:.1f} s CPU "
                  f"({len(part) / spent:.1f} samples/s); inputs padded {pad[0]:.2f}x, programs {pad[1]:.2f}x",
                  flush=True)
    print(f"[batching] lengths trains {cpu['program'] / cpu['lengths']:.2f}x as fast as program "
          f"({cpu['program']:.1f} s against {cpu['lengths']:.1f} s CPU over {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
