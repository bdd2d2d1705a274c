"""Keras's layer initialisation for the arithmetic models, so that "the reference's model" is the same model.

The reference reports built their models in Keras, whose defaults differ from PyTorch's:

=====================  ==========================================  ==========================================
weights                Keras (the reference)                       PyTorch
=====================  ==========================================  ==========================================
LSTM input kernel      Glorot uniform                              uniform(+-1/sqrt(units))
LSTM recurrent kernel  orthogonal                                  uniform(+-1/sqrt(units))
LSTM biases            zero, forget gate 1 (``unit_forget_bias``)  two biases, each uniform(+-1/sqrt(units))
Dense / Linear         Glorot uniform, zero bias                   Kaiming uniform (a = sqrt 5), uniform bias
Adam epsilon           1e-7                                        1e-8
=====================  ==========================================  ==========================================

Both libraries order an LSTM's gates input, forget, cell, output, so the forget gate is the second quarter of
the bias. A PyTorch LSTM adds two bias vectors; the forget-gate 1 goes in one of them.

Example::

    model = Seq2SeqLSTM(14, 4)
    keras_init_(model)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["INITS", "KERAS_ADAM_EPS", "keras_init_", "apply_init"]

INITS = ("keras", "torch")
KERAS_ADAM_EPS = 1e-7


@torch.no_grad()
def keras_init_(module: nn.Module) -> nn.Module:
    """Re-initialise every ``nn.LSTM`` and ``nn.Linear`` inside ``module`` as Keras would; returns it."""
    for m in module.modules():
        if isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(p)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(p)
                elif name.startswith("bias_ih"):
                    p.zero_()
                    h = p.shape[0] // 4
                    p[h:2 * h] = 1.0
                elif name.startswith("bias_hh"):
                    p.zero_()
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                m.bias.zero_()
    return module


def apply_init(module: nn.Module, init: str) -> nn.Module:
    """``init``: ``keras`` (see the module docstring) or ``torch`` (leave PyTorch's initialisation)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    return keras_init_(module) if init == "keras" else module
