"""Training-step speed of the text-to-program families against a minimal hand-written model, and dev decode times.

For each family, one process builds the family's dataset and model from its defaults (plus ``--set``) and a
minimal PyTorch model of the same sizes: the same encoder (a fresh instance), then a plain LSTM decoder over
the gold tokens in one call, a linear output layer and cross-entropy: no grammar masks, no number pointer,
no attention, no teacher-forcing mixing. With ``--set amp=true`` both run under bfloat16 autocast. Both train on the same batches, in alternating rounds (so a
change in machine load touches both alike), and the script prints samples/s of each and their ratio.

With ``--checkpoint FAMILY=PATH`` (a trained model of that family) it also times greedy and beam-10 decoding
of the whole dev file with that model (an untrained model's outputs run to ``max_decode_len``, so its decode
times say little; without a checkpoint decoding is not timed).

Example (about a minute per family on two cores)::

    .venv/bin/python bench/t2m_speed.py --families t2m-lstm t2m-attn --set teacher_forcing=1.0 \\
        --set batch_size=64 --checkpoint t2m-lstm=runs/lstm-ls30
    .venv/bin/python bench/t2m_speed.py --families t2m-attn --set attention_style=luong --set teacher_forcing=1.0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

FAMILIES = ("t2m-lstm", "t2m-attn", "t2m-bert-frozen", "t2m-bert-ft")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in every family that has it (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--limit-train", type=int, default=2000, help="training problems to draw batches from")
    p.add_argument("--batches", type=int, default=24, help="timed batches per model (after 2 warm-up batches)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds the timed batches are split into")
    p.add_argument("--checkpoint", action="append", default=[], metavar="FAMILY=PATH",
                   help="a trained model to time dev decoding with (greedy and beam 10, all dev problems)")
    p.add_argument("--out", default="", help="also write the figures as JSON here")
    return p.parse_args(argv)


def minimal_model(family, config, data):
    """Same encoder, plain LSTM decoder of the family's decoder sizes, linear output, cross-entropy."""
    import torch
    from torch import nn

    class Minimal(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = family.make_encoder(config, data)
            V = len(data.meta["program_vocab"]["tokens"])
            H, L = config.dec_hidden, config.dec_layers
            self.H, self.L = H, L
            self.embed = nn.Embedding(V, config.dec_emb)
            self.bridge = nn.Linear(self.encoder.summary_dim, 2 * L * H)
            self.lstm = nn.LSTM(config.dec_emb, H, L, batch_first=True)
            self.out = nn.Linear(H, V)

        def loss(self, batch, sos: int, pad: int):
            _, _, summary = self.encoder(batch)
            tgt = batch["tgt"]
            N = tgt.shape[0]
            init = self.bridge(summary).view(N, 2, self.L, self.H).permute(1, 2, 0, 3)
            state = (torch.tanh(init[0]).contiguous(), init[1].contiguous())
            inputs = torch.cat([torch.full((N, 1), sos, dtype=torch.long), tgt[:, :-1]], dim=1)
            out, _ = self.lstm(self.embed(inputs), state)
            logits = self.out(out)
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                               ignore_index=pad)

    return Minimal()


def time_steps(step, batches, optimizer) -> float:
    t0 = time.perf_counter()
    n = 0
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = step(batch)
        loss.backward()
        optimizer.step()
        n += int(batch["tgt"].shape[0])
    return n / (time.perf_counter() - t0)


def bench_family(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mathtune.trainables import get_family
    from mathtune.trainables.t2m.decoding import decode_part
    from mathtune.trainables.device import bf16_autocast_works

    fam = get_family(name)
    known = fam.all_params()
    overrides: dict[str, Any] = {"limit_train": args.limit_train, "threads": args.threads, "device": "cpu"}
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key in known:
            overrides[key] = value
    config = fam.make_config(overrides)
    torch.set_num_threads(args.threads)
    data = fam.build_data(config)
    gen = torch.Generator().manual_seed(0)
    batches = []
    while len(batches) < args.batches + 2:
        batches += list(fam.batches(data, config, gen, torch.device("cpu")))
    warm, timed = batches[:2], batches[2:args.batches + 2]
    torch.manual_seed(0)
    ours = fam.build_model(config, data)
    mini = minimal_model(fam, config, data)
    opt_ours = fam.optimizer(ours, config)
    opt_mini = torch.optim.Adam([p for p in mini.parameters() if p.requires_grad], lr=config.lr)
    vocab = ours.vocab
    step_ours = lambda b: fam.loss(ours, b, config)  # noqa: E731
    amp = config.amp and bf16_autocast_works(torch.device("cpu"))  # as the family's loss decides

    def step_mini(b):  # under the same autocast as ours (``amp``)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return mini.loss(b, vocab.sos_id, vocab.pad_id).float()

    ours.train(), mini.train()
    time_steps(step_ours, warm, opt_ours), time_steps(step_mini, warm, opt_mini)
    per = max(1, len(timed) // args.rounds)
    rates: dict[str, list[float]] = {"ours": [], "minimal": []}
    for r in range(0, len(timed), per):
        chunk = timed[r:r + per]
        rates["ours"].append(time_steps(step_ours, chunk, opt_ours))
        rates["minimal"].append(time_steps(step_mini, chunk, opt_mini))
    ours_rate = len(rates["ours"]) / sum(1 / x for x in rates["ours"])       # harmonic mean: total samples / time
    mini_rate = len(rates["minimal"]) / sum(1 / x for x in rates["minimal"])
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    row: dict[str, Any] = {"family": name, "batch_size": config.batch_size, "threads": args.threads, "amp": amp,
                           "teacher_forcing": config.teacher_forcing,
                           "attention_style": config.attention_style if fam.attention else "-",
                           "ours_samples_per_s": round(ours_rate, 2), "minimal_samples_per_s": round(mini_rate, 2),
                           "ratio": round(ours_rate / mini_rate, 3), "ours_params": params(ours),
                           "minimal_params": params(mini)}
    print(f"[speed] {name} (batch {config.batch_size}, teacher forcing {config.teacher_forcing}, attention "
          f"{row['attention_style']}, {args.threads} threads): ours {ours_rate:.3g} samples/s "
          f"({config.batch_size / ours_rate:.3g} s a step), minimal {mini_rate:.3g} samples/s, ratio "
          f"{ours_rate / mini_rate:.2f}", flush=True)
    ckpts = dict(pair.split("=", 1) for pair in args.checkpoint)
    if name in ckpts:
        from mathtune.trainables.t2m.dataset import encode_part, resolve_file
        from mathtune.trainables.t2m.data import load_split
        from mathtune.trainables.checkpoints import load_trained
        from mathtune.trainables.loop import set_threads
        from mathtune.trainables.t2m.evaluation import find_checkpoint, vocabularies_of

        _, cfg, model, _ = load_trained(find_checkpoint(ckpts[name]), data=vocabularies_of,
                                        overrides={"threads": args.threads, "device": "cpu"})
        set_threads(cfg)
        dev = resolve_file(cfg.dev_file, "dev_file", "dev.json")
        part = encode_part("dev", load_split(dev), model.meta, cfg, source=dev.name)
        for width in (1, 10):
            t0 = time.perf_counter()
            decode_part(model, part, widths=[width], config=cfg, device=torch.device("cpu"), with_loss=False)
            row[f"decode_beam{width}_s"] = round(time.perf_counter() - t0, 1)
        print(f"[speed] {name}: decoding all {len(part)} dev problems: greedy {row['decode_beam1_s']} s, beam 10 "
              f"{row['decode_beam10_s']} s", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = [bench_family(name, args) for name in args.families]
    print("\n| family | batch | teacher forcing | attention | ours samples/s | minimal samples/s | ratio | "
          "greedy dev decode s | beam-10 dev decode s |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['batch_size']} | {r['teacher_forcing']} | {r['attention_style']} | "
              f"{r['ours_samples_per_s']:.3g} | {r['minimal_samples_per_s']:.3g} | {r['ratio']:.2f} | "
              f"{r.get('decode_beam1_s', '-')} | {r.get('decode_beam10_s', '-')} |")
    if args.out:
        from mathtune.trainables.atomic import write_text

        write_text(args.out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
