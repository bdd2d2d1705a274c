"""parity-mlp: the parity of a random bit string, with a small MLP.

Everything a family needs: its parameters, data that depends only on ``data_params``, a model, batches,
a loss and validation/test metrics. Every method gets the family's typed, frozen config, made from its
parameters, and reads attributes (``config.bits``). Bad input raises ``ConfigError`` (a ``MathtuneError``),
which the mathtune CLI prints as one line.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mathtune.trainables import ConfigError, Family, Param


class ParityMLP(Family):
    name = "parity-mlp"
    description = "parity of a bit string (an example family from its own package)"
    params = {
        "bits": Param(4, "length of the bit strings", int, 1, 16),
        "examples": Param(512, "strings drawn per split part (train; validation and test get a quarter each)",
                          int, 8, 1_000_000),
        "hidden": Param(32, "MLP width", int, 2, 4096),
    }
    data_params = ("bits", "examples", "data_seed")
    metric = "val_accuracy"

    @classmethod
    def check_config(cls, config, *, where="config"):
        if config.hidden < config.bits:
            raise ConfigError(f"{where}: hidden: {config.hidden} is narrower than the {config.bits} bits")

    def build_data(self, config):
        rng = np.random.default_rng(config.data_seed)
        n = config.examples + 2 * (config.examples // 4)
        x = rng.integers(0, 2, size=(n, config.bits)).astype(np.float32)
        y = (x.sum(axis=1) % 2).astype(np.int64)
        cut = config.examples
        quarter = config.examples // 4
        return {"x": x, "y": y, "train": np.arange(cut), "val": np.arange(cut, cut + quarter),
                "test": np.arange(cut + quarter, n)}

    def describe_data(self, data):
        return f"parity: train {len(data['train'])} / val {len(data['val'])} / test {len(data['test'])}"

    def build_model(self, config, data):
        return nn.Sequential(nn.Linear(config.bits, config.hidden), nn.ReLU(),
                             nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                             nn.Linear(config.hidden, 2))

    def batches(self, data, config, generator, device):
        idx = torch.from_numpy(data["train"])
        order = idx[torch.randperm(len(idx), generator=generator)]
        x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            yield x[rows].to(device), y[rows].to(device)

    def loss(self, model, batch, config, generator=None):
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model, data, config, device, *, final=False):
        x, y = torch.from_numpy(data["x"]).to(device), torch.from_numpy(data["y"]).to(device)
        out = {}
        for part in ("val", "test"):
            rows = torch.from_numpy(data[part]).to(device)
            logits = model(x[rows])
            out[f"{part}_loss"] = float(nn.functional.cross_entropy(logits, y[rows]))
            out[f"{part}_accuracy"] = float((logits.argmax(-1) == y[rows]).float().mean())
        return out
