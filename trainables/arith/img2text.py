"""arith-img2text: a query as five MNIST-style images ("2", "2", "+", "1", "3") -> answer characters ("35 ").

Model (:class:`~mathtune.trainables.arith.img_models.Img2TextModel`): a per-image CNN (1-3 blocks of
conv + ReLU + 2x2 max-pool + dropout), dense + ReLU, LSTM encoder (+ ``extra_layers``), its state repeated to
the answer length, LSTM decoder, per-step softmax. Defaults reproduce the seed report's models, which
differ by operator set; as parameter defaults are static, the architecture keys use ``0`` to mean "the
seed's value for this operator set":

=================  ==============  ==========================
key                ``+-`` seed      ``*`` seed
=================  ==============  ==========================
conv_blocks        1               3
filters            512             256 (first block)
filters_next       (one block)     512 (blocks 2-3)
kernel             3               5 (first block)
dense_units        80              100
decoder_hidden     256             128
=================  ==============  ==========================

(``kernel_next`` = 3, ``hidden`` = 256, ``dropout`` = 0.25, ``extra_layers`` = 0 for both.) Metrics are
those of arith-text2text: ``val_exact_match`` (selection), ``val_char_acc``, ``val_loss`` and the same for
``test_*`` (reporting only). Images of training/validation queries and of test queries come from disjoint
MNIST pools.

Beyond the seed: ``aux_weight`` trains a linear head on the CNN features to read each query image's own
character (the training queries' text says which it is), beside the answer loss; ``aux_feed`` lets the
encoder read that head's probabilities ("concat" with the features, "only" instead of them), and runs with
a head report ``val_read_acc`` / ``test_read_acc``. The shipped ``+-`` configuration uses both
(docs/benchmarks.md). ``reverse``, ``weight_decay`` and ``init`` are arith-text2text's (the ``*`` recipe:
both sequences reversed, decoupled weight decay, Keras initialisation), ``init`` defaulting to PyTorch's here.

Example::

    >>> from mathtune.trainables import get_family, train
    >>> fam = get_family("arith-img2text")
    >>> cfg = fam.make_config({"limit": 256, "epochs": 1, "filters": 8, "dense_units": 16, "hidden": 32})
    >>> fam.model_kwargs(cfg)["filters"]
    [8]
    >>> result = train(fam, cfg)                                           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ..base import FamilyConfig, Param
from .image_family import ImageArithFamily, autocast_for, shift_images, warp_images
from .img_models import AUX_FEEDS, IMG2TEXT_SEED, Img2TextModel
from .init import INITS, apply_init
from .text2text import ArithText2Text, iterate_batches, lstm_optimizer

__all__ = ["ArithImg2Text"]


class ArithImg2Text(ImageArithFamily):
    name = "arith-img2text"
    description = ("two-digit arithmetic, query as MNIST digit images -> answer characters "
                   "(per-image CNN + LSTM encoder-decoder)")
    render = "queries"
    aux_head = "a per-image reading head"
    params = {
        **ImageArithFamily.arith_params,
        **ImageArithFamily.image_params,
        "conv_blocks": Param(0, "conv blocks per image (conv + ReLU + 2x2 max-pool + dropout), 1-3; "
                                "0 = the seed's (1 for '+-', 3 for '*')", int, 0, 3),
        "filters": Param(0, "filters of the first conv block; 0 = the seed's (512 for '+-', 256 for '*'). "
                            "16-32 filters cost ~20-30x less per image on CPU", int, 0, 4096),
        "filters_next": Param(0, "filters of conv blocks 2-3; 0 = the seed's (512 for '*'; for '+-', whose seed "
                                 "has one block, the same as filters)", int, 0, 4096),
        "kernel": Param(0, "kernel size of the first conv block; 0 = the seed's (3 for '+-', 5 for '*')",
                        int, 0, 9),
        "kernel_next": Param(3, "kernel size of conv blocks 2-3 (the seed's 3)", int, 1, 9),
        "dropout": Param(0.25, "dropout after each conv block (the seed's 0.25)", float, 0.0, 0.9),
        "dense_units": Param(0, "dense layer after the CNN, per image; 0 = the seed's (80 for '+-', 100 for '*')",
                             int, 0, 4096),
        "hidden": Param(256, "encoder LSTM width (the seed's 256)", int, 4, 4096),
        "decoder_hidden": Param(0, "decoder LSTM width; 0 = the seed's (256 for '+-', 128 for '*')", int, 0, 4096),
        "extra_layers": Param(0, "extra encoder LSTM layers beyond the first (the seed's best '+-' row had one)",
                              int, 0, 4),
        "batch_norm": Param(False, "batch-norm after each conv (before its ReLU); off in the seed. Makes the "
                                   "per-image CNN train faster and with larger learning rates", bool),
        "augment_shift": Param(0, "training only: move each image by a random offset of up to this many pixels "
                                  "(0 = off, the seed)", int, 0, 6),
        "augment_rotate": Param(0.0, "training only: rotate each image by a random angle of up to this many "
                                     "degrees (0 = off, the seed)", float, 0.0, 45.0),
        "augment_scale": Param(0.0, "training only: scale each image by a random factor in [1 - s, 1 + s] "
                                    "(0 = off, the seed)", float, 0.0, 0.5),
        "aux_weight": Param(0.0, "training only: weight of an auxiliary loss in which a linear head reads each "
                                 "query image's own character (digit, operator, padding) from its CNN features, "
                                 "supervised by the training queries' text; predictions use the head only "
                                 "through aux_feed (0 = off, the seed)", float, 0.0, 10.0),
        "aux_feed": Param("off", "what the encoder LSTM reads of a per-image character head (trained directly by "
                                 "aux_weight): its probabilities, a symbolic reading of each image, 'concat' beside "
                                 "the dense features or 'only' instead of them; 'off' = the dense features alone "
                                 "(the seed)", str, choices=AUX_FEEDS),
        "reverse": ArithText2Text.params["reverse"],
        "weight_decay": ArithText2Text.params["weight_decay"],
        "init": Param("torch", "initialisation of the LSTM and dense layers: torch (PyTorch's defaults, Adam epsilon "
                               "1e-8) or keras (the reference's Keras defaults, as arith-text2text's init; Adam "
                               "epsilon 1e-7); the convolutions keep PyTorch's", str, choices=INITS),
    }
    data_params = ImageArithFamily.data_params + ("reverse",)

    @classmethod
    def model_kwargs(cls, config: FamilyConfig) -> dict[str, Any]:
        """Keyword arguments of :class:`Img2TextModel` for ``config``, the 0 = seed-default keys resolved."""
        seed = IMG2TEXT_SEED[config.ops]
        blocks = config.conv_blocks or len(seed["filters"])
        first = config.filters or seed["filters"][0]
        later = config.filters_next or (seed["filters"][1] if len(seed["filters"]) > 1 else first)
        return {"filters": [first] + [later] * (blocks - 1),
                "kernel": [config.kernel or seed["kernel"][0]] + [config.kernel_next] * (blocks - 1),
                "conv_blocks": blocks, "dropout": config.dropout,
                "dense_units": config.dense_units or seed["dense_units"], "hidden": config.hidden,
                "extra_layers": config.extra_layers,
                "decoder_hidden": config.decoder_hidden or seed["decoder_hidden"],
                "batch_norm": config.batch_norm}

    def build_data(self, config):
        return self.load_images(config, reverse=config.reverse)

    def inputs(self, data):
        return data.images

    def build_model(self, config, data):
        aux_vocab = data.vocab_size if config.aux_weight > 0 or config.aux_feed != "off" else 0
        model = Img2TextModel(data.answer_len, data.vocab_size, aux_vocab=aux_vocab, aux_feed=config.aux_feed,
                              **self.model_kwargs(config))
        return self.place_model(apply_init(model, config.init), config)

    def optimizer(self, model, config):
        return lstm_optimizer(model, config)

    def batches(self, data, config, generator, device):
        """Training batches ``(images, answers)``, augmented on the CPU; with ``aux_weight`` also the query
        characters the images render, ``(images, answers, query_chars)``."""
        shift, rotate, scale = config.augment_shift, config.augment_rotate, config.augment_scale
        idx = torch.from_numpy(data.train_index)
        images, answers = torch.from_numpy(data.images), torch.from_numpy(data.y)
        chars = torch.from_numpy(data.x) if config.aux_weight > 0 else None
        for sel in iterate_batches(len(idx), config.batch_size, generator):
            rows = idx[sel]
            x = shift_images(warp_images(images[rows], rotate, scale, generator), shift, generator)
            batch = (x.to(device, non_blocking=True), answers[rows].to(device))
            yield batch if chars is None else batch + (chars[rows].to(device),)

    def loss(self, model, batch, config, generator=None):
        with autocast_for(batch[0].device, config):
            if len(batch) == 2:
                return super().loss(model, batch, config, generator)
            x, y, chars = batch
            logits, image_logits = model(x, with_aux=True)
            answer_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            image_loss = F.cross_entropy(image_logits.reshape(-1, image_logits.shape[-1]), chars.reshape(-1))
            return answer_loss + config.aux_weight * image_loss

    @torch.no_grad()
    def evaluate(self, model, data, config, device, *, final=False):
        """text2text's metrics; with a per-image character head also ``val_read_acc`` / ``test_read_acc``,
        the fraction of the part's digit images the head reads right (test digits come from unseen images),
        scored from the same forward passes as the answers."""
        with autocast_for(device, config):
            return super().evaluate(model, data, config, device, final=final)

    def part_metrics(self, model, data, config, part: str, device) -> dict[str, float]:
        with autocast_for(device, config):
            return super().part_metrics(model, data, config, part, device)

    def eval_forward(self, model, data, part, rows, x):
        """Answer logits; for validation and test with a character head also ``read_acc``, the digit images
        of the batch the head reads right."""
        if getattr(model, "aux", None) is None or part not in ("val", "test"):
            return model(x), {}
        logits, image_logits = model(x, with_aux=True)
        rows = rows.numpy()
        digits = torch.from_numpy(data.image_index[rows] >= 0)
        truth = torch.from_numpy(data.x[rows])[digits]
        read = image_logits.argmax(-1).cpu()[digits]
        return logits, {"read_acc": (int((read == truth).sum()), int(digits.sum()))}
