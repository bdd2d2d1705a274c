"""arith-text2img: query characters ("22+13") -> the answer drawn as MNIST-style digit images.

Model (:class:`~mathtune.trainables.arith.img_models.Text2ImgModel`, the seed's by default): one-hot
characters, LSTM(512) encoder (+ ``extra_layers``), dropout 0.2, repeat to the answer length, LSTM(256)
decoder, then per answer position dense 7*7*128 + batch-norm, transposed convs to 64 and 1 channels,
sigmoid. Trained with per-pixel binary cross-entropy against the answer images of the training pool.

Metrics (``val_*`` for selection, ``test_*`` for reporting only):

* ``pixel_loss``: mean per-pixel binary cross-entropy against the target images (scaled to [0, 1]).
* ``pixel_acc``: the seed-style pixel "accuracy": the fraction of pixels whose binarised prediction
  (> 0.5) equals the binarised target (> 0.5). Mostly background, so it is high even for unreadable output.
* ``pixel_acc_exact``: what Keras' ``binary_accuracy`` computed for the seed report (target *not*
  binarised: a pixel counts only where the target is exactly 0 or 1 and the rounded prediction equals it;
  grey rim pixels of MNIST digits never count). Lower than ``pixel_acc``; reported for comparison with the
  seed's 85-86%.
* ``exact_match`` (the family's metric): the *readable answer*: a digit classifier, trained on MNIST
  images held apart from every query (see :mod:`~mathtune.trainables.arith.classifier`), reads each
  generated image as a digit, minus or blank, and the decoded answer must equal the true answer.
* ``char_acc``: the fraction of answer positions the classifier reads correctly.
* ``classifier_acc`` (no prefix, every epoch): the classifier's own accuracy on its held-apart MNIST
  digits: the readable figures are only as good as this instrument.

The classifier is trained in :meth:`ArithText2Img.build_data` (on the driver, once per search) or loaded
from its on-disk cache (``$MATHTUNE_CACHE``, else ``~/.cache/mathtune``), keyed by a hash of its training
images and settings; its weights travel inside the dataset to every trial.

Example::

    >>> from mathtune.trainables import get_family, train
    >>> fam = get_family("arith-text2img")
    >>> cfg = fam.make_config({"limit": 256, "epochs": 1, "hidden": 32, "decoder_hidden": 32})
    >>> result = train(fam, cfg)                                       # doctest: +SKIP
    >>> result["last"]["val_exact_match"], result["last"]["classifier_acc"]   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..base import FamilyConfig, Param
from .classifier import (ClassifierConfig, DigitCNN, classes_to_ids, classes_to_strings, classifier_for_pools,
                         read_digits)
from .image_data import ImageArithData
from .image_family import ImageArithFamily, autocast_for
from .img_models import TEXT2IMG_SEED, Text2ImgModel
from .mnist import find_mnist_folder, load_mnist
from .text2text import iterate_batches

__all__ = ["ArithText2Img", "pixel_scores"]


def pixel_scores(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(binarised pixel matches, Keras-style exact pixel matches) summed over a batch.

    ``pred`` are sigmoid outputs in [0, 1]; ``target`` images scaled to [0, 1].
    """
    on = pred > 0.5
    binarised = float((on == (target > 0.5)).sum())
    exact = float((target == on.to(target.dtype)).sum())
    return binarised, exact


class ArithText2Img(ImageArithFamily):
    name = "arith-text2img"
    description = ("two-digit arithmetic, query characters -> answer as digit images (LSTM encoder-decoder + "
                   "transposed convs); readable-answer exact match scored by a held-apart digit classifier")
    render = "answers"
    aux_head = "an answer-character head"
    data_params = ImageArithFamily.data_params + ("classifier_epochs",)
    params = {
        **ImageArithFamily.arith_params,
        **ImageArithFamily.image_params,
        "hidden": Param(TEXT2IMG_SEED["hidden"], "encoder LSTM width (the seed's 512)", int, 4, 4096),
        "decoder_hidden": Param(TEXT2IMG_SEED["decoder_hidden"], "decoder LSTM width (the seed's 256)", int, 4, 4096),
        "extra_layers": Param(TEXT2IMG_SEED["extra_layers"], "extra encoder LSTM layers beyond the first", int, 0, 4),
        "dropout": Param(TEXT2IMG_SEED["dropout"], "dropout on the encoder state (the seed's 0.2)", float, 0.0, 0.9),
        "embed_dim": Param(0, "character embedding size; 0 = one-hot characters (the seed)", int, 0, 1024),
        "proj_channels": Param(128, "channels of the 7x7 map the decoder state is projected to (the seed's 128; "
                                    "32 is about 10x cheaper on CPU)", int, 1, 1024),
        "up_channels": Param(64, "channels after the first transposed conv, 7x7 -> 14x14 (the seed's 64)",
                             int, 1, 1024),
        "aux_weight": Param(0.0, "weight of an auxiliary loss (0 = off, the seed): a linear head on the decoder "
                                 "state reads each answer position's character, supervised by the answer text the "
                                 "training images were drawn from; the images are still drawn from the decoder "
                                 "state alone and the head plays no part in evaluation", float, 0.0, 100.0),
        "sharpen": Param(1.0, "output temperature of the generated images: pixels are sigmoid(sharpen x logit). "
                              "1 (the seed) draws the trained per-pixel ink probabilities, an average over the "
                              "training pool's handwriting that draws some digits faintly (a blurred 5 reads as "
                              "blank); 2 moves each pixel towards ink or paper, whichever it favours. Decode-time "
                              "only (no weight changes; choose it on validation); binarised pixel accuracy and "
                              "the pixel loss do not depend on it", float, 0.1, 100.0),
        "classifier_epochs": Param(ClassifierConfig.epochs, "training epochs of the answer-reading digit classifier "
                                   "(part of its cache key; the default reaches >= 98% on held-apart digits; "
                                   "fewer only for quick tests)", int, 1, 100),
    }

    def __init__(self) -> None:
        self._reader: tuple[int, torch.device, DigitCNN] | None = None

    # ------------------------------------------------------------------ data
    def build_data(self, config: FamilyConfig) -> ImageArithData:
        """Answer images, plus the digit classifier (trained once, then read from its cache)."""
        folder = find_mnist_folder(config.mnist_dir or None)
        images, labels = load_mnist(folder)
        data = self.load_images(config, mnist=(images, labels), mnist_source=str(folder))
        model, acc = classifier_for_pools(images, labels, data.pools,
                                          config=ClassifierConfig(epochs=config.classifier_epochs))
        metrics = {k: v for k, v in model.metrics.items() if isinstance(v, (int, float, str, bool))}
        data.classifier = {"state_dict": {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                           "metrics": metrics, "accuracy": float(acc)}
        return data

    def reader(self, data: ImageArithData, device: torch.device) -> DigitCNN:
        """The dataset's digit classifier as a module on ``device`` (built once per dataset and device)."""
        if self._reader is None or self._reader[0] != id(data) or self._reader[1] != device:
            model = DigitCNN()
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in data.classifier["state_dict"].items()})
            self._reader = (id(data), device, model.to(device).eval())
        return self._reader[2]

    # ------------------------------------------------------------------ model and training
    decode_params = ("sharpen",)

    def build_model(self, config, data):
        model = Text2ImgModel(data.answer_len, data.vocab_size, embed_dim=config.embed_dim,
                              hidden=config.hidden, extra_layers=config.extra_layers,
                              dropout=config.dropout, decoder_hidden=config.decoder_hidden,
                              proj_channels=config.proj_channels, up_channels=config.up_channels,
                              aux_vocab=data.vocab_size if config.aux_weight > 0 else 0,
                              sharpen=config.sharpen)
        return self.place_model(model, config)

    def batches(self, data, config, generator, device):
        idx = torch.from_numpy(data.train_index)
        x, images, y = torch.from_numpy(data.x), torch.from_numpy(data.images), torch.from_numpy(data.y)
        for sel in iterate_batches(len(idx), config.batch_size, generator):
            rows = idx[sel]
            yield x[rows].to(device), images[rows].to(device, non_blocking=True), y[rows].to(device)

    def loss(self, model, batch, config, generator=None):
        x, target, y = batch
        weight = config.aux_weight
        with autocast_for(x.device, config):
            out = model(x, logits=True, with_aux=weight > 0)
        logits, aux = out if weight > 0 else (out, None)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target.float().div_(255.0))
        if aux is not None:
            loss = loss + weight * F.cross_entropy(aux.float().reshape(-1, aux.shape[-1]), y.reshape(-1).long())
        return loss

    @torch.no_grad()
    def evaluate(self, model, data, config, device, *, final=False):
        metrics: dict[str, float] = {}
        for part in ("val", "test"):
            metrics.update(self.part_metrics(model, data, config, part, device))
        metrics["classifier_acc"] = float(data.classifier["accuracy"])
        return metrics

    @torch.no_grad()
    def part_metrics(self, model, data, config, part: str, device) -> dict[str, float]:
        """The pixel and readable-answer metrics of one part ("val", "test" or "train")."""
        reader = self.reader(data, device)
        x_all, img_all, y_all = (torch.from_numpy(a) for a in (data.x, data.images, data.y))
        idx = torch.from_numpy(data.part(part))
        loss = binarised = exact_px = exact = chars = 0.0
        for start in range(0, len(idx), self.eval_batch):
            rows = idx[start:start + self.eval_batch]
            x, target = x_all[rows].to(device), img_all[rows].to(device).float().div_(255.0)
            with autocast_for(device, config):
                logits = model(x, logits=True)
            logits = logits.float()
            pred = torch.sigmoid(logits * config.sharpen)
            loss += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
            b, e = pixel_scores(pred, target)
            binarised, exact_px = binarised + b, exact_px + e
            read = torch.from_numpy(classes_to_ids(read_digits(reader, pred)))
            eq = read == y_all[rows]
            exact, chars = exact + float(eq.all(dim=1).sum()), chars + float(eq.sum())
        n = len(idx)
        pixels = n * data.answer_len * 28 * 28
        return {f"{part}_pixel_loss": loss / pixels, f"{part}_pixel_acc": binarised / pixels,
                f"{part}_pixel_acc_exact": exact_px / pixels, f"{part}_exact_match": exact / n,
                f"{part}_char_acc": chars / (n * data.answer_len)}

    @torch.no_grad()
    def generate(self, model: nn.Module, data: ImageArithData, part: str, device: torch.device) -> np.ndarray:
        """Generated answer images, uint8 (n, answer_len, 28, 28), for one part of the data."""
        idx = torch.from_numpy(data.part(part))
        x_all = torch.from_numpy(data.x)
        out = [model(x_all[idx[s:s + self.eval_batch]].to(device)).float().mul(255).round().byte().cpu()
               for s in range(0, len(idx), self.eval_batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, data.answer_len, 28, 28), np.uint8)

    @torch.no_grad()
    def predict(self, model, data, part: str, device) -> list[str]:
        """Answers as the digit classifier reads the generated images (padding stripped)."""
        classes = read_digits(self.reader(data, device), self.generate(model, data, part, device))
        return [s.strip() for s in classes_to_strings(classes)]
