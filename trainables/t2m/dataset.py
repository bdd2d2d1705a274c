"""Datasets of the text-to-program families: files, splits, vocabularies, encoded parts and batches.

Parts: ``train`` (from ``train_file``, optionally subsampled with ``limit_train``), ``val`` (the dev
file by default; a slice of the training part when ``val_fraction`` > 0) and, only when validation is
carved from train, ``test`` = the dev file, recorded for reporting and never used for selection. The
COL775 test split is held apart; score it with ``mathtune evaluate``.

Vocabularies come from the training part only and travel with the model (see ``models.Seq2Prog``),
so a checkpoint can encode any new file the same way (:func:`encode_part`).

Example::

    data = build_t2m_data(cfg, family="t2m-attn", kind="glove")
    data.describe()   # 'train 19791 (train.json), val 2961 (dev.json); program vocabulary ...'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..config import FamilyConfig
from .data import DataError, Example, Vocab, load_split, problem_number_alignment, tokenize_problem
from .glove import glove_matrix, load_glove
from .pretrained import cached_encoder_states, load_encoder, wordpiece_inputs
from .programs import build_program_vocab, program_to_tokens

__all__ = ["ENV_DIR", "DEFAULT_DIR", "resolve_file", "Ragged", "Part", "T2MData", "build_t2m_data", "encode_part",
           "collate", "train_batches", "eval_batches"]

ENV_DIR = "MATHTUNE_MATHQA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = PROJECT_ROOT.parent / "shared" / "data" / "mathqa" / "col775"
META_FORMAT = "mathtune.t2m/1"
KINDS = ("glove", "frozen", "finetune")


def resolve_file(value: str, key: str, default_name: str) -> Path:
    """The file for config ``key``: ``value`` if given, else ``default_name`` in ``$MATHTUNE_MATHQA`` or in
    ``../shared/data/mathqa/col775`` beside the project root. Missing files raise a one-line DataError."""
    if value:
        path = Path(os.path.expanduser(value))
        if not path.is_file():
            raise DataError(f"{key}: {value}: file not found")
        return path
    folder = Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else DEFAULT_DIR
    path = folder / default_name
    if not path.is_file():
        raise DataError(f"{key}: {path} not found; set {ENV_DIR} to the folder holding train.json and dev.json, "
                        f"or --set {key}=PATH")
    return path


@dataclass
class Ragged:
    """Variable-length rows stored flat (``flat[offsets[i]:offsets[i+1]]``); pickles compactly."""

    flat: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray], dtype=np.int32) -> "Ragged":
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        flat = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype=dtype)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class Part:
    """One encoded split: examples (for scoring) and the arrays a batch is cut from."""

    name: str
    source: str
    examples: list[Example]
    src: Ragged                    # input ids: GloVe vocabulary ids or word-piece ids
    num_pos: np.ndarray            # (n, K) input position of number k (0 where there is none)
    num_count: np.ndarray          # (n,) numbers the decoder may use (at most K)
    tgt: Ragged                    # program token ids, <eos> included
    num_slot: Ragged | None = None  # GloVe inputs: per token, 1 + the number index it starts (0 = none)
    states: Ragged | None = None   # frozen encoder: per word piece, its hidden state (float16)

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class T2MData:
    """Everything a trial needs; picklable and shared through the object store."""

    meta: dict[str, Any]
    parts: dict[str, Part]
    glove: np.ndarray | None = None        # (input vocab, dim) initial embeddings
    glove_found: np.ndarray | None = None  # which rows came from GloVe
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def program_vocab(self) -> Vocab:
        return Vocab.from_dict(self.meta["program_vocab"])

    def describe(self) -> str:
        i = self.info
        parts = ", ".join(f"{p.name} {len(p)} ({p.source})" for p in self.parts.values())
        extra = f"; GloVe covers {i['glove_coverage']:.1%} of {i['input_vocab']} input tokens" if "glove_coverage" in i else ""
        return (f"{parts}; program vocabulary {len(self.meta['program_vocab']['tokens'])} tokens, "
                f"up to {self.meta['max_numbers']} numbers{extra}")


def _subsample(examples: list[Example], limit: int, rng: np.random.Generator) -> list[Example]:
    if not limit or limit >= len(examples):
        return examples
    keep = np.sort(rng.choice(len(examples), size=limit, replace=False))
    return [examples[i] for i in keep]


def build_t2m_data(config: FamilyConfig, *, family: str, kind: str,
                   device: torch.device | str = "cpu") -> T2MData:
    """Load, split, build vocabularies from the training part and encode every part (see module doc)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    train_path = resolve_file(config.train_file, "train_file", "train.json")
    dev_path = resolve_file(config.dev_file, "dev_file", "dev.json")
    rng = np.random.default_rng(config.data_seed)
    train = _subsample(load_split(train_path), config.limit_train, rng)
    dev = load_split(dev_path)
    if config.limit_dev:
        dev = dev[:config.limit_dev]
    named: dict[str, tuple[list[Example], str]] = {}
    if config.val_fraction > 0:
        order = rng.permutation(len(train))
        n_val = max(1, int(round(config.val_fraction * len(train))))
        if n_val >= len(train):
            raise DataError(f"val_fraction: {config.val_fraction} leaves no training examples out of {len(train)}")
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        named["val"] = ([train[i] for i in val_idx], f"{train_path.name} slice")
        named["test"] = (dev, dev_path.name)
        train = [train[i] for i in train_idx]
    else:
        named["val"] = (dev, dev_path.name)
    if not train:
        raise DataError(f"train_file: {train_path}: no training examples")
    if not named["val"][0]:
        raise DataError(f"dev_file: {dev_path}: no validation examples")

    max_numbers = max(len(problem_number_alignment(e.problem)[1].numbers) for e in train)
    vocab = build_program_vocab([e.program for e in train], max_numbers)
    meta: dict[str, Any] = {"format": META_FORMAT, "family": family, "kind": kind,
                            "program_vocab": vocab.to_dict(), "max_numbers": max(1, max_numbers)}
    info: dict[str, Any] = {"train_file": str(train_path), "dev_file": str(dev_path)}
    glove = found = None
    if kind == "glove":
        counts: dict[str, int] = {}
        for e in train:
            for t in tokenize_problem(e.problem):
                counts[t] = counts.get(t, 0) + 1
        index = load_glove(config.glove)[1]
        kept = sorted((t for t, c in counts.items() if c >= config.min_freq or t in index or t.lower() in index),
                      key=lambda t: (-counts[t], t))
        in_vocab = Vocab([*Vocab.SPECIALS, *[t for t in kept if t not in Vocab.SPECIALS]])
        glove, found = glove_matrix(in_vocab.tokens, config.glove)
        meta["input_vocab"] = in_vocab.to_dict()
        meta["glove_dim"] = int(glove.shape[1])
        info["input_vocab"] = len(in_vocab)
        info["glove_coverage"] = float(found[len(Vocab.SPECIALS):].mean()) if len(in_vocab) > 4 else 0.0
    else:
        encoder = load_encoder(config.encoder)[1]
        meta["enc_dim"] = int(encoder.config.hidden_size)
        if kind == "finetune" and config.finetune_layers:
            layers, trained = int(encoder.config.num_hidden_layers), int(config.finetune_layers)
            if trained > layers:
                raise DataError(f"finetune_layers: {trained} is more than the {layers} layers of encoder "
                                f"{config.encoder!r}")
            meta["frozen_layers"] = layers - trained
    parts = {"train": encode_part("train", train, meta, config, source=train_path.name, device=device)}
    for name, (exs, source) in named.items():
        parts[name] = encode_part(name, exs, meta, config, source=source, device=device)
    return T2MData(meta=meta, parts=parts, glove=glove, glove_found=found, info=info)


def encode_part(name: str, examples: list[Example], meta: dict[str, Any], config: FamilyConfig, *,
                source: str = "", device: torch.device | str = "cpu") -> Part:
    """Encode ``examples`` with the vocabularies in ``meta`` (training or a checkpoint's); ``config`` (the model's
    own) says which encoder and how many word pieces."""
    K = int(meta["max_numbers"])
    vocab = Vocab.from_dict(meta["program_vocab"])
    tgt = Ragged.from_rows([vocab.encode(program_to_tokens(e.program), add_eos=True) for e in examples])
    tokens, aligns = [], []
    for e in examples:
        toks, al = problem_number_alignment(e.problem)
        if not toks:
            toks, al = problem_number_alignment("<unk>")
        tokens.append(toks)
        aligns.append(al)
    num_count = np.array([min(len(al.numbers), K) for al in aligns], dtype=np.int32)
    num_pos = np.zeros((len(examples), K), dtype=np.int32)
    if meta["kind"] == "glove":
        in_vocab = Vocab.from_dict(meta["input_vocab"])
        src = Ragged.from_rows([in_vocab.encode(t) for t in tokens])
        slots = []
        for i, al in enumerate(aligns):
            f = np.asarray(al.first_number_of_token, dtype=np.int32) + 1
            slots.append(np.where(f <= K, f, 0))
            tok_of = al.token_of_number[:K]
            num_pos[i, :len(tok_of)] = tok_of
        return Part(name, source, examples, src, num_pos, num_count, tgt, num_slot=Ragged.from_rows(slots))
    tokenizer, encoder = load_encoder(config.encoder)
    pieces = wordpiece_inputs(tokenizer, tokens, config.max_input_tokens)
    for i, ((ids, first), al) in enumerate(zip(pieces, aligns)):
        tok_of = np.asarray(al.token_of_number[:K], dtype=np.int64)
        num_pos[i, :len(tok_of)] = first[tok_of] if len(tok_of) else []
    src = Ragged.from_rows([ids for ids, _ in pieces])
    states = None
    if meta["kind"] == "frozen" or meta.get("frozen_layers"):
        layer = meta.get("frozen_layers") if meta["kind"] == "finetune" else None
        flat, offsets, _ = cached_encoder_states(encoder, [ids for ids, _ in pieces], device=device, layer=layer)
        states = Ragged(flat, offsets)
    return Part(name, source, examples, src, num_pos, num_count, tgt, states=states)


def collate(part: Part, rows: Sequence[int], device: torch.device) -> dict[str, torch.Tensor]:
    """Padded tensors for ``rows`` of ``part`` (see ``models.Seq2Prog`` for the keys)."""
    rows = list(rows)
    B = len(rows)
    src_len = part.src.lengths[rows]
    tgt_len = part.tgt.lengths[rows]
    L, T = int(src_len.max()), int(tgt_len.max())
    src = np.zeros((B, L), dtype=np.int64)
    tgt = np.zeros((B, T), dtype=np.int64)
    slot = np.zeros((B, L), dtype=np.int64) if part.num_slot is not None else None
    states = np.zeros((B, L, part.states.flat.shape[1]), dtype=np.float32) if part.states is not None else None
    for j, r in enumerate(rows):
        src[j, :src_len[j]] = part.src[r]
        tgt[j, :tgt_len[j]] = part.tgt[r]
        if slot is not None:
            slot[j, :src_len[j]] = part.num_slot[r]
        if states is not None:
            states[j, :src_len[j]] = part.states[r]
    mask = np.arange(L)[None, :] < src_len[:, None]
    batch = {"src": src, "src_mask": mask, "tgt": tgt, "num_pos": part.num_pos[rows].astype(np.int64),
             "num_count": part.num_count[rows].astype(np.int64)}
    if slot is not None:
        batch["num_slot"] = slot
    if states is not None:
        batch["states"] = states
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


def train_batches(part: Part, batch_size: int, generator: torch.Generator,
                  device: torch.device, batching: str = "lengths") -> Iterator[dict[str, torch.Tensor]]:
    """One shuffled epoch, in batches of similar lengths, in random order (drawn from ``generator``).

    The shuffled problems are taken in pools of 50 batches. ``program``: each pool sorted by program length.
    ``lengths``: each pool sorted by input length, then each run of 16 batches re-sorted by program length, so a
    batch is short on both sides. The encoder runs over a batch's longest input and the decoder over its longest
    program; on MathQA (inputs 39 tokens on average, up to 356; programs 14) ``program`` batches padded the
    encoder's work 2.4x at batch 64, ``lengths`` 1.4x (programs 1.1x and 1.3x)."""
    n = len(part)
    order = torch.randperm(n, generator=generator).numpy()
    src_len, tgt_len = part.src.lengths, part.tgt.lengths
    pool = batch_size * 50
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        if batching == "program":
            chunk = chunk[np.argsort(tgt_len[chunk], kind="stable")]
        else:
            by_input = np.argsort(src_len[chunk], kind="stable")
            # each run back in shuffled order first, so problems of the same program length share batches by
            # chance, not by input length: a pool that holds every problem still deals new batches each epoch
            runs = [chunk[np.sort(by_input[i:i + 16 * batch_size])] for i in range(0, len(chunk), 16 * batch_size)]
            chunk = np.concatenate([run[np.argsort(tgt_len[run], kind="stable")] for run in runs])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    for b in torch.randperm(len(batches), generator=generator).tolist():
        yield collate(part, batches[b], device)


def eval_batches(part: Part, batch_size: int, device: torch.device) -> Iterator[tuple[np.ndarray, dict]]:
    """(rows, batch) over all of ``part`` in order of input length (for speed); rows say where results go."""
    order = np.argsort(part.src.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield rows, collate(part, rows, device)
