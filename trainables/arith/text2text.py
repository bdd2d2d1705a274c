"""arith-text2text: query characters ("22+13") -> answer characters ("35 ").

Default model = the seed report's: one-hot input, LSTM(256) encoder (plus ``extra_layers`` more),
the final state repeated to the answer length, LSTM(256) decoder, per-step softmax, initialised as Keras
initialises it (``init``, see :mod:`.init`). ``attention=luong`` lets each answer step also read the
encoder's per-character outputs (:class:`LuongAttention`).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from ..base import Family, FamilyConfig, Param, adam
from ..reportviews import ReportView
from .data import ALPHABET, DIGITS, ArithData, build_arith
from .init import INITS, KERAS_ADAM_EPS, apply_init
from .views import arith_views

__all__ = ["ATTENTIONS", "LuongAttention", "Seq2SeqLSTM", "ArithText2Text", "char_metrics", "iterate_batches",
           "lstm_optimizer"]

ATTENTIONS = ("none", "luong")


class LuongAttention(nn.Module):
    """Luong's "general" attention after the decoder LSTM: each answer step's decoder output scores every
    encoder output, and ``tanh(W [output; context])`` replaces the output the logits read.

    The decoder LSTM itself still reads only the repeated encoder state, so the model stays one parallel pass
    (no step loop); what attention adds is direct access to each query character's encoder output.
    """

    def __init__(self, decoder_hidden: int, encoder_hidden: int):
        super().__init__()
        self.score = nn.Linear(encoder_hidden, decoder_hidden, bias=False)
        self.combine = nn.Linear(decoder_hidden + encoder_hidden, decoder_hidden)

    def weights(self, decoded: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        """(B, T, S): each answer step's softmax over the query characters."""
        return torch.softmax(decoded @ self.score(encoded).transpose(1, 2), dim=-1)

    def forward(self, decoded: torch.Tensor, encoded: torch.Tensor) -> torch.Tensor:
        context = self.weights(decoded, encoded) @ encoded
        return torch.tanh(self.combine(torch.cat([decoded, context], dim=-1)))


class Seq2SeqLSTM(nn.Module):
    """One-hot chars -> LSTM encoder stack -> repeat -> LSTM decoder [-> attention] -> per-step logits."""

    def __init__(self, vocab_size: int, answer_len: int, *, hidden: int = 256, extra_layers: int = 0,
                 decoder_hidden: int = 256, dropout: float = 0.0, input_size: int | None = None,
                 attention: str = "none"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}")
        self.vocab_size = vocab_size
        self.answer_len = answer_len
        self.encoder = nn.LSTM(input_size or vocab_size, hidden, num_layers=1 + extra_layers, batch_first=True,
                               dropout=dropout if extra_layers else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.LSTM(hidden, decoder_hidden, batch_first=True)
        self.attention = LuongAttention(decoder_hidden, hidden) if attention == "luong" else None
        self.out = nn.Linear(decoder_hidden, vocab_size)

    def encode_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x, self.vocab_size).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded, (h, _) = self.encoder(self.encode_inputs(x))
        state = self.dropout(h[-1])  # (B, hidden)
        repeated = state.unsqueeze(1).expand(-1, self.answer_len, -1)
        decoded, _ = self.decoder(repeated)
        if self.attention is not None:
            decoded = self.attention(decoded, self.dropout(encoded))
        return self.out(decoded)  # (B, T, V)


def char_metrics(logits_or_pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float, int]:
    """(exact-match count, correct-character count, n) for predictions vs targets (B, T)."""
    pred = logits_or_pred.argmax(-1) if logits_or_pred.dim() == 3 else logits_or_pred
    eq = pred == target
    return float(eq.all(dim=1).sum()), float(eq.sum()), target.shape[0]


def lstm_optimizer(model: nn.Module, config: FamilyConfig) -> torch.optim.Optimizer:
    """Adam with ``config.init``'s epsilon (Keras's 1e-7 or PyTorch's 1e-8); AdamW when ``weight_decay`` > 0."""
    eps = KERAS_ADAM_EPS if config.init == "keras" else 1e-8
    return adam(model.parameters(), lr=config.lr, eps=eps, weight_decay=config.weight_decay)


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterable[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


class ArithFamily(Family):
    """Shared parts of the arithmetic families: data params, splits, exact-match metrics, report views."""

    data_params = ("ops", "split", "data_seed", "val_fraction", "limit")
    eval_batch: int = 2048  # rows per evaluation forward pass (image families use fewer)
    arithmetic_answers = True  # predict() returns numbers as strings: the report adds its error analysis (views.py)
    report_metrics = (("test_char_acc", "test per-char"),)  # what the reference reports called accuracy
    arith_params: dict[str, Param] = {
        "ops": Param("+-", "operator set: '+-' (20,000 queries) or '*' (10,000)", str, choices=("+-", "*")),
        "split": Param(0.5, "fraction of all queries used for training (validation carved from it); "
                            "the rest is the test set", float, 0.01, 0.99),
        "val_fraction": Param(0.1, "fraction of the training portion held out for validation "
                                   "(selection and early stopping use it, never the test set)", float, 0.01, 0.5),
        "limit": Param(0, "keep only this many training queries, validation and test shrunk alike "
                          "(0 = all; for quick runs and tests)", int, 0, 1_000_000),
        "batch_size": Param(8, "training batch size (the seed recipe used 8)", int, 1, 65_536),
    }

    def build_data(self, config: FamilyConfig) -> ArithData:
        return build_arith(config.ops, config.split, config.data_seed, config.val_fraction,
                           limit=config.limit)

    def describe_data(self, data: ArithData) -> str:
        return data.describe()

    def steps_per_epoch(self, data: ArithData, config) -> int:
        return -(-len(data.train_index) // config.batch_size)  # iterate_batches: full batches and one rest

    def inputs(self, data: ArithData) -> np.ndarray:
        return data.x

    def batches(self, data, config, generator, device):
        idx = torch.from_numpy(data.train_index)
        x, y = torch.from_numpy(self.inputs(data)), torch.from_numpy(data.y)
        for sel in iterate_batches(len(idx), config.batch_size, generator):
            rows = idx[sel]
            yield x[rows].to(device), y[rows].to(device)

    def loss(self, model, batch, config, generator=None):
        x, y = batch
        logits = model(x)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model, data, config, device, *, final=False):
        metrics: dict[str, float] = {}
        for part in ("val", "test"):
            metrics.update(self.part_metrics(model, data, config, part, device))
        return metrics

    @torch.no_grad()
    def train_figures(self, model, data, config, device) -> dict[str, float]:
        """Per-character accuracy and exact match on the training queries as they are (the reference reports
        give a train accuracy beside the test one)."""
        scored = self.part_metrics(model, data, config, "train", device)
        return {k: scored[k] for k in ("train_char_acc", "train_exact_match")}

    def part_metrics(self, model, data, config, part: str, device) -> dict[str, float]:
        """``{part}_loss``, ``{part}_exact_match`` and ``{part}_char_acc`` of ``model`` (in eval mode) on one part
        of the data: "val", "test", or "train" (the training queries as they are, without augmentation)."""
        x_all, y_all = torch.from_numpy(self.inputs(data)), torch.from_numpy(data.y)
        fixed = getattr(data, "y_written", None)
        written = torch.from_numpy(fixed) if fixed is not None else None
        idx = torch.from_numpy(data.part(part))
        exact = chars = loss = 0.0
        tallies: dict[str, list[int]] = {}
        for start in range(0, len(idx), self.eval_batch):
            rows = idx[start:start + self.eval_batch]
            x, y = x_all[rows].to(device), y_all[rows].to(device)
            logits, counts = self.eval_forward(model, data, part, rows, x)
            for name, (right, total) in counts.items():
                tally = tallies.setdefault(name, [0, 0])
                tally[0], tally[1] = tally[0] + right, tally[1] + total
            loss += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                      reduction="sum"))
            if written is None:
                e, c, _ = char_metrics(logits, y)
            else:  # scored as the reference writes answers, whatever the model's format
                pred = torch.from_numpy(data.written(logits.argmax(-1).cpu().numpy()))
                e, c, _ = char_metrics(pred, written[rows])
            exact, chars = exact + e, chars + c
        n = len(idx)
        return {f"{part}_loss": loss / (n * data.answer_len), f"{part}_exact_match": exact / n,
                f"{part}_char_acc": chars / (n * data.answer_len),
                **{f"{part}_{name}": right / total if total else float("nan")
                   for name, (right, total) in tallies.items()}}

    def eval_forward(self, model, data, part: str, rows: torch.Tensor, x: torch.Tensor):
        """``(answer logits, counts)`` for the evaluation rows ``rows`` (inputs ``x``) of ``part``; ``counts``
        maps a metric name to ``(right, total)`` of this batch, summed over the part and reported as
        ``{part}_{name}``: a family that scores more than the answer from the same pass returns some."""
        return model(x), {}

    @torch.no_grad()
    def predict(self, model, data, part: str, device) -> list[str]:
        """Decoded answer strings (padding stripped) for one part of the data (``"val"``, ``"test"``)."""
        idx = torch.from_numpy(data.part(part))
        x_all = torch.from_numpy(self.inputs(data))
        pred = np.concatenate([model(x_all[idx[s:s + self.eval_batch]].to(device)).argmax(-1).cpu().numpy()
                               for s in range(0, len(idx), self.eval_batch)]) if len(idx) else np.zeros((0, 0), int)
        pred = data.written(pred)
        return ["".join(ALPHABET[i] for i in row).strip() for row in pred]

    def generate(self, model, data, part: str, device) -> Any:
        """Generated answer images, an array (n, positions, H, W), for one part of the data; None (this default)
        for a family that writes its answers as characters."""
        return None

    def report_views(self, model, data, config, device, *, name, title, epoch=None) -> list[ReportView]:
        """The error analysis of the test answers and, for a family that draws its answers, a grid of them
        (:mod:`.views`), then any :meth:`report_figures`."""
        return arith_views(self, model, data, device, name=name, title=title, epoch=epoch) + \
            super().report_views(model, data, config, device, name=name, title=title, epoch=epoch)


class ArithText2Text(ArithFamily):
    name = "arith-text2text"
    description = "two-digit arithmetic, query characters -> answer characters (LSTM encoder-decoder)"
    params = {
        **ArithFamily.arith_params,
        "hidden": Param(256, "encoder LSTM width", int, 4, 4096),
        "decoder_hidden": Param(256, "decoder LSTM width", int, 4, 4096),
        "extra_layers": Param(0, "extra encoder LSTM layers beyond the first", int, 0, 8),
        "dropout": Param(0.0, "dropout between encoder layers and on the encoder state", float, 0.0, 0.9),
        "init": Param("keras", "weight initialisation: keras (the reference's Keras defaults: Glorot-uniform input "
                               "and output weights, orthogonal recurrent weights, forget-gate bias 1, Adam epsilon "
                               "1e-7) or torch (PyTorch's layer defaults, Adam epsilon 1e-8)", str, choices=INITS),
        "reverse": Param("none", "feed the query and/or emit the answer reversed (none, query, answer, both); "
                                 "answer-reversed lets the decoder produce the carry digit last", str,
                         choices=("none", "query", "answer", "both")),
        "weight_decay": Param(0.0, "decoupled weight decay (AdamW) per step, as a fraction of lr; 0 = plain Adam, "
                                   "the reference's optimizer. Long runs with decay can keep generalising after the "
                                   "training set is fitted (the * rows)", float, 0.0, 10.0),
        "digits": Param("as-written", "how numbers are written in the sequences the model reads and writes: "
                                      "as-written (the reference's: 7*5 -> 35) or fixed (leading zeros to a fixed "
                                      "width: 07*05 -> 00035, so each digit keeps its place value at one position; "
                                      "with reverse=both the units come first). Metrics always score the answer as "
                                      "the reference writes it", str, choices=DIGITS),
        "attention": Param("none", "none (the reference's model) or luong: each answer step's decoder output also "
                                   "attends over the encoder's per-character outputs before the logits",
                           str, choices=ATTENTIONS),
    }
    data_params = ArithFamily.data_params + ("reverse", "digits")

    def build_data(self, config):
        return build_arith(config.ops, config.split, config.data_seed, config.val_fraction,
                           limit=config.limit, reverse=config.reverse, digits=config.digits)

    def build_model(self, config, data):
        model = Seq2SeqLSTM(data.vocab_size, data.answer_len, hidden=config.hidden,
                            extra_layers=config.extra_layers, decoder_hidden=config.decoder_hidden,
                            dropout=config.dropout, attention=config.attention)
        return apply_init(model, config.init)

    def optimizer(self, model, config):
        return lstm_optimizer(model, config)
