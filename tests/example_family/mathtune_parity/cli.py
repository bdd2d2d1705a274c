"""`mathtune parity-predict RUN BITS`: a command this package adds to mathtune (entry point mathtune.commands).

Imports stay inside ``run`` so that building mathtune's parser stays fast; bad input raises ``CommandError``,
which the mathtune CLI prints as one line.
"""

from __future__ import annotations

from mathtune.trainables.commands import Command, CommandError


def _arguments(p):
    p.add_argument("run", metavar="RUN", help="a `mathtune train parity-mlp` folder (its best/ checkpoint)")
    p.add_argument("bits", metavar="BITS", help="a bit string as long as the model's, e.g. 1011")


def _run(args) -> int:
    from pathlib import Path

    import torch

    from mathtune.trainables import get_family
    from mathtune.trainables.loop import load_checkpoint

    state, saved, _ = load_checkpoint(Path(args.run) / "best")
    family = get_family("parity-mlp")
    config = family.read_config(saved, where=str(Path(args.run) / "best" / "config.json"))  # the typed config
    if len(args.bits) != config.bits or set(args.bits) - {"0", "1"}:
        raise CommandError(f"BITS {args.bits!r}: expected {config.bits} characters of 0 and 1")
    model = family.build_model(config, None)
    model.load_state_dict(state["model"])
    x = torch.tensor([[float(b) for b in args.bits]])
    print(f"predicted parity: {int(model(x).argmax(-1))} (true parity: {args.bits.count('1') % 2})")
    return 0


PREDICT = Command(help="predict the parity of a bit string with a trained parity-mlp model",
                  description="Load RUN's best checkpoint and print its prediction for BITS.",
                  add_arguments=_arguments, run=_run)
