"""Attention heat maps of the text-to-program families with an attention decoder (``mathtune report``).

A few problems of the validation part, spread over it deterministically, are decoded greedily while the
decoder's attention weights are recorded (:func:`~.models.record_attention`); each becomes one heat map:
rows are the generated program tokens (``<eos>`` included when the program ended), columns the source
tokens the encoder read (GloVe words, or word pieces with ``[CLS]``/``[SEP]`` for the BERT families), the
tokens holding number ``nK`` marked with it. Very long sources and programs are cut (the first
``max_source`` / ``max_steps``), and the caption says so. The title says whether the program executes to
the problem's answer (course rules, :mod:`.scoring`).

Example::

    maps = attention_maps(model, data.parts["val"], [0, 10], config=cfg, device=torch.device("cpu"))
    maps[0].weights.shape        # (len(maps[0].program_tokens), len(maps[0].source_tokens))
    figures = attention_figures(model, data, cfg, torch.device("cpu"))   # {caption: Figure}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..config import FamilyConfig
from .beam import greedy_decode
from .data import Example, problem_number_alignment
from .dataset import Part, T2MData, collate
from .models import Seq2Prog, record_attention
from .pretrained import load_encoder
from .programs import tokens_to_program
from .scoring import exact_match, execution_correct

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AttentionMap", "attention_maps", "attention_figure", "attention_figures", "spread_rows"]

MAX_SOURCE = 60
MAX_STEPS = 60


@dataclass
class AttentionMap:
    """One greedily decoded problem and its decoder attention."""

    part: str                    # part name (val, test, ...)
    source: str                  # where the part came from (dev.json, train.json slice, ...)
    row: int                     # position in the part
    example: Example
    program_tokens: list[str]    # generated tokens, <eos> included when the program ended
    source_tokens: list[str]     # what the encoder read, number tokens marked "(nK)"
    weights: np.ndarray          # (len(program_tokens), len(source_tokens)); rows sum to 1
    predicted: str               # the program string that is scored
    exact: bool
    correct: bool | None         # executes to the answer (None: the problem has no numeric answer)


def spread_rows(n: int, count: int) -> list[int]:
    """``count`` row positions spread evenly over ``0 .. n-1`` (deterministic; fewer when n is small)."""
    if n <= 0 or count <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))


def _source_tokens(model: Seq2Prog, part: Part, row: int, config: FamilyConfig) -> list[str]:
    if model.meta["kind"] == "glove":
        tokens = problem_number_alignment(part.examples[row].problem)[0] or ["<unk>"]  # as encode_part
    else:
        tokens = load_encoder(config.encoder)[0].convert_ids_to_tokens(part.src[row].tolist())
    tokens = list(tokens)
    marks: dict[int, list[str]] = {}
    for k in range(int(part.num_count[row])):
        marks.setdefault(int(part.num_pos[row, k]), []).append(f"n{k}")
    for pos, names in marks.items():
        if pos < len(tokens):
            tokens[pos] = f"{tokens[pos]} ({','.join(names)})"
    return tokens


@torch.no_grad()
def attention_maps(model: Seq2Prog, part: Part, rows: Sequence[int], *, config: FamilyConfig,
                   device: torch.device) -> list[AttentionMap]:
    """Greedy decoding of ``rows`` of ``part`` (one batch) with the attention of every step recorded."""
    rows = [int(r) for r in rows]
    if not rows:
        return []
    model.eval()
    batch = collate(part, rows, device)
    with record_attention(model) as log:
        out = greedy_decode(model, batch, config.max_decode_len)
    steps = torch.stack(log, 1).float().cpu().numpy() if log else np.zeros((len(rows), 0, batch["src"].shape[1]))
    maps = []
    for j, r in enumerate(rows):
        ex = part.examples[r]
        ids, ended = out.tokens[j], bool(out.finished[j])
        program_tokens = model.vocab.decode(ids, strip_special=False)
        if ended:
            program_tokens.append(model.vocab.token_of(model.vocab.eos_id))
        predicted = tokens_to_program(model.vocab.decode(ids))
        length = int(part.src.lengths[r])
        maps.append(AttentionMap(
            part.name, part.source, r, ex, program_tokens, _source_tokens(model, part, r, config),
            steps[j, :len(program_tokens), :length], predicted, exact_match(predicted, ex.program),
            None if ex.answer is None else execution_correct(predicted, ex.problem, ex.answer)))
    return maps


def _verdict(m: AttentionMap) -> str:
    if m.correct is None:
        return "no numeric answer to check"
    text = "executes to the right answer" if m.correct else "does not execute to the right answer"
    return text + (" (exact match)" if m.exact else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def attention_figure(m: AttentionMap, *, max_source: int = MAX_SOURCE, max_steps: int = MAX_STEPS) -> "Figure":
    """A heat map of ``m``: program tokens (rows) against source tokens (columns), with a colour bar."""
    from matplotlib.figure import Figure

    w = m.weights[:max_steps, :max_source]
    rows, cols = w.shape
    fig = Figure(figsize=(min(max(0.17 * cols + 2.6, 6.0), 14.0), min(max(0.17 * rows + 2.4, 3.5), 14.0)),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(w.max(initial=0.0)), 1e-6),
                      interpolation="nearest")
    ax.set_xticks(range(cols), [_cut(t, 18) for t in m.source_tokens[:cols]], rotation=90, fontsize=7)
    ax.set_yticks(range(rows), m.program_tokens[:rows], fontsize=7)
    n_src, n_steps = len(m.source_tokens), len(m.program_tokens)
    ax.set_xlabel("source tokens" + (f" (first {cols} of {n_src})" if cols < n_src else ""), fontsize=8)
    ax.set_ylabel("generated program tokens" + (f" (first {rows} of {n_steps})" if rows < n_steps else ""),
                  fontsize=8)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.01)
    bar.set_label("attention weight", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    ax.set_title(f"{m.part} problem {m.example.index} ({m.source}): greedy program {_verdict(m)}\n"
                 f"{_cut(m.predicted or '(empty)', 110)}", fontsize=8)
    return fig


def _caption(m: AttentionMap, kind: str, max_source: int, max_steps: int) -> str:
    what = "word pieces" if kind != "glove" else "words"
    text = (f"Decoder attention while greedily decoding {m.part} problem {m.example.index} of {m.source}: rows are "
            f"the generated program tokens (<eos> included when it ended), columns the source {what} (a number's "
            f"token marked with its nK); the colour scale runs to this map's largest weight. "
            f"The program {_verdict(m)}.")
    n_src, n_steps = len(m.source_tokens), len(m.program_tokens)
    if n_src > max_source:
        text += f" Only the first {max_source} of {n_src} source tokens are drawn (rows then sum to less than 1)."
    if n_steps > max_steps:
        text += f" Only the first {max_steps} of {n_steps} program tokens are drawn."
    return text


def attention_figures(model: Seq2Prog, data: T2MData, config: FamilyConfig, device: torch.device, *,
                      count: int = 3, part: str = "val", max_source: int = MAX_SOURCE,
                      max_steps: int = MAX_STEPS) -> dict[str, "Figure"]:
    """``{caption: heat map}`` for ``count`` problems spread over ``part``; ``{}`` without attention."""
    if not model.decoder.attention or part not in data.parts or not len(data.parts[part]):
        return {}
    p = data.parts[part]
    maps = attention_maps(model, p, spread_rows(len(p), count), config=config, device=device)
    kind = model.meta["kind"]
    return {_caption(m, kind, max_source, max_steps): attention_figure(m, max_source=max_source, max_steps=max_steps)
            for m in maps}
