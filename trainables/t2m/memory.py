"""What a text-to-program decoder reads while it decodes: :class:`Memory`, one row per hypothesis.

Both decoders (:class:`~.models.Decoder`, one LSTM step per program token, and
:class:`~.opdecoder.OpDecoder`, one per operation) build it in ``start`` from the encoder's outputs; beam
search repeats its rows once per beam slot (:meth:`Memory.repeat`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Memory"]


@dataclass
class Memory:
    """What the decoder reads, one row per hypothesis."""

    states: torch.Tensor                 # (N, L, D) encoder states
    mask: torch.Tensor                   # (N, L) True at real positions
    keys: torch.Tensor | None            # (N, L, H) attention keys
    num_states: torch.Tensor             # (N, K, D) encoder states at number positions
    num_keys: torch.Tensor | None        # (N, K, H) pointer keys (OpDecoder: (N, K, E) number candidates)
    num_count: torch.Tensor              # (N,) numbers the problem has (at most K)

    def repeat(self, width: int) -> "Memory":
        rep = lambda t: None if t is None else t.repeat_interleave(width, 0)  # noqa: E731
        return Memory(*(rep(getattr(self, f)) for f in ("states", "mask", "keys", "num_states", "num_keys",
                                                         "num_count")))
