"""What the fused Adam kernel saves: training steps of a real configuration with PyTorch's per-tensor Adam and
with the fused kernel mathtune uses (``trainables.base.adam``), interleaved in one run on the same batches.

Prints CPU time per step (the process's own, so other work on the machine inflates both alike rather than
one), the optimizer's share, and how far the two runs' weights are apart at the end (the kernels round
differently; both are exact on resume, each with its own kernel).

    python bench/optimizer_step.py                         # the * campaign's best recipe, 40 steps x 3 rounds
    python bench/optimizer_step.py --family t2m-lstm --set limit_train=2000 --set batch_size=32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="arith-text2text")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration values (default: the * 60/40 campaign's best trial, 99ea0dda)")
    parser.add_argument("--steps", type=int, default=40, help="steps timed per kernel and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from mathtune.trainables import get_family
    from mathtune.trainables.base import adam

    torch.set_num_threads(args.threads)
    values = {"ops": "*", "split": 0.6, "hidden": 512, "decoder_hidden": 512, "batch_size": 64, "dropout": 0.25,
              "weight_decay": 0.3, "init": "keras", "reverse": "both", "digits": "fixed", "lr": 0.0079} \
        if args.family == "arith-text2text" and not args.set else {}
    for item in args.set:
        key, _, value = item.partition("=")
        values[key] = value
    family = get_family(args.family)
    config = family.make_config(values)
    data = family.build_data(config)
    device = torch.device("cpu")
    torch.manual_seed(0)
    base = family.build_model(config, data)
    optimizer = family.optimizer(base, config)
    lr, eps = optimizer.defaults["lr"], optimizer.defaults["eps"]
    decay = optimizer.defaults.get("weight_decay", 0.0) if isinstance(optimizer, torch.optim.AdamW) else 0.0
    generator = torch.Generator().manual_seed(0)
    batches = [b for _, b in zip(range(args.steps), family.batches(data, config, generator, device))]
    models, optimizers = {}, {}
    for kernel in ("per-tensor", "fused"):
        models[kernel] = copy.deepcopy(base)
        params = [p for p in models[kernel].parameters() if p.requires_grad]
        if kernel == "fused":
            optimizers[kernel] = adam(params, lr=lr, eps=eps, weight_decay=decay)
        else:
            cls = torch.optim.AdamW if decay else torch.optim.Adam
            optimizers[kernel] = cls(params, lr=lr, eps=eps, foreach=False, **({"weight_decay": decay} if decay else {}))
    step_s: dict[str, list[float]] = {k: [] for k in models}
    opt_s: dict[str, list[float]] = {k: [] for k in models}
    for round_ in range(args.rounds):
        for kernel, model in models.items():
            model.train()
            spent = opt = 0.0
            for i, batch in enumerate(batches):
                torch.manual_seed(round_ * len(batches) + i)  # the same dropout masks for both kernels
                start = time.process_time()
                loss = family.loss(model, batch, config)
                optimizers[kernel].zero_grad(set_to_none=True)
                loss.backward()
                middle = time.process_time()
                optimizers[kernel].step()
                end = time.process_time()
                spent += end - start
                opt += end - middle
            step_s[kernel].append(spent / len(batches))
            opt_s[kernel].append(opt / len(batches))
    n = sum(p.numel() for p in base.parameters() if p.requires_grad)
    print(f"{args.family}: {n:,} trained parameters, {len(batches)} steps x {args.rounds} rounds, "
          f"{args.threads} thread(s); CPU time per step, median over rounds")
    for kernel in models:
        print(f"  {kernel:>10}: step {statistics.median(step_s[kernel]) * 1e3:7.1f} ms, of which optimizer "
              f"{statistics.median(opt_s[kernel]) * 1e3:6.1f} ms")
    ratio = statistics.median(step_s["per-tensor"]) / statistics.median(step_s["fused"])
    gap = max((a - b).abs().max().item() for a, b in zip(models["per-tensor"].parameters(),
                                                       models["fused"].parameters()))
    print(f"  fused steps are {ratio:.3f}x as fast; largest weight difference after "
          f"{len(batches) * args.rounds} steps: {gap:.2e}")


if __name__ == "__main__":
    main()
