"""Which torch device a run uses, and whether bfloat16 autocast trains there: read by the loop and by the
families (which need the device when they build data or place a model), so neither imports the other."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import FamilyConfig

__all__ = ["resolve_device", "bf16_autocast_works"]


def resolve_device(config: FamilyConfig) -> torch.device:
    """The torch device of ``config.device``: auto (CUDA when torch sees a GPU), cpu or cuda."""
    want = config.device
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but torch sees no GPU")
    return torch.device(want)


@functools.lru_cache(maxsize=8)
def bf16_autocast_works(device: torch.device) -> bool:
    """Whether bfloat16 autocast can train on ``device``: CUDA, or a CPU with AVX512-BF16 or AMX units.
    Elsewhere oneDNN has no bfloat16 LSTM ("could not create a primitive descriptor"), so families that
    offer ``amp`` train in float32 there."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return any(bool(getattr(torch.cpu, probe, lambda: False)())
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
