"""The step-by-step decoders' LSTM step, the fused cell against a one-step ``nn.LSTM`` call: one training epoch each.

The decoders that run their LSTM one step at a time (Bahdanau attention, teacher forcing below 1, the operation
decoder; every decoder when decoding) take each step with ``trainables.t2m.lstm.lstm_step``, PyTorch's fused LSTM
cell over the module's weights. This script trains one epoch of ``--limit-train`` problems with it and with the
module's own one-step call in its place, in alternating rounds from the same initial weights, and prints the
process's CPU seconds of each and their ratio.

Example (about 5 minutes on one core)::

    .venv/bin/python bench/t2m_lstm_step.py --set decoder=op --set batch_size=16
    .venv/bin/python bench/t2m_lstm_step.py --family t2m-attn --set attention_style=bahdanau \\
        --set teacher_forcing=0.6 --set batch_size=32
"""

from __future__ import annotations

import argparse
import json
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from t2m_batching import epoch_parser  # this folder's side-by-side epoch benchmark: the same options

    return epoch_parser(__doc__.split("\n\n")[0]).parse_args(argv)


def module_call(lstm, x, state):
    """The step as the module's own call over a sequence of one."""
    out, state = lstm(x.unsqueeze(1), state)
    return out[:, 0], state


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from mathtune.trainables import get_family
    from mathtune.trainables.t2m import models, opdecoder
    from mathtune.trainables.t2m.lstm import lstm_step

    shipped = json.loads(open(args.config).read())
    fam = get_family(args.family or shipped["family"])
    config = fam.make_config({**shipped["config"], "limit_train": args.limit_train, "limit_dev": 16,
                              "threads": args.threads, "device": "cpu", **dict(p.split("=", 1) for p in args.set)})
    torch.set_num_threads(args.threads)
    data = fam.build_data(config)
    n = len(data.parts["train"])
    cpu = {"fused cell": 0.0, "module call": 0.0}
    for rnd in range(args.rounds):
        for name, step in (("fused cell", lstm_step), ("module call", module_call)):
            models.lstm_step = opdecoder.lstm_step = step
            torch.manual_seed(0)
            model = fam.build_model(config, data).train()
            opt = fam.optimizer(model, config)
            gen = torch.Generator().manual_seed(rnd)
            batches = list(fam.batches(data, config, gen, torch.device("cpu")))
            coins = torch.Generator().manual_seed(rnd)
            start = time.process_time()
            for b in batches:
                opt.zero_grad()
                fam.loss(model, b, config, coins).backward()
                opt.step()
            spent = time.process_time() - start
            cpu[name] += spent
            print(f"[lstm-step] round {rnd + 1} {name}: {n} problems in {spent:.1f} s CPU ({n / spent:.1f} samples/s)",
                  flush=True)
    models.lstm_step = opdecoder.lstm_step = lstm_step
    print(f"[lstm-step] the fused cell trains {cpu['module call'] / cpu['fused cell']:.2f}x as fast as the module's "
          f"one-step call ({cpu['module call']:.1f} s against {cpu['fused cell']:.1f} s CPU over {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
