"""Torch models of the arithmetic image families (plain ``nn.Module``s, no training code).

* :class:`Img2TextModel` (arith-img2text): a sequence of 28x28 images -> answer character logits.
  A per-image CNN (1-3 blocks of conv + ReLU + 2x2 max-pool + dropout), flatten, dense + ReLU, applied
  to all B*L images in one batch; an LSTM encoder (+ ``extra_layers``); its final state repeated to the
  answer length; an LSTM decoder; a per-step linear layer to vocabulary logits.
* :class:`Text2ImgModel` (arith-text2img): query character ids -> answer images. One-hot (or embedded)
  characters, LSTM encoder (+ ``extra_layers``), dropout, repeat, LSTM decoder, then per position
  dense 7*7*128 + batch-norm + ReLU, transposed conv 128->64 (stride 2) + BN + ReLU, transposed conv
  64->1 (stride 2), sigmoid (128 and 64 are ``proj_channels`` and ``up_channels``).

Defaults reproduce the seed reports' architectures: :data:`IMG2TEXT_SEED` (per operator set) and
:data:`TEXT2IMG_SEED`.

Example::

    >>> m = Img2TextModel(answer_len=3, vocab_size=14, **IMG2TEXT_SEED["+-"])
    >>> m(torch.zeros(2, 5, 28, 28, dtype=torch.uint8)).shape
    torch.Size([2, 3, 14])
    >>> g = Text2ImgModel(answer_len=3, vocab_size=14, **TEXT2IMG_SEED)
    >>> g(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 3, 28, 28])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AUX_FEEDS", "IMG2TEXT_SEED", "TEXT2IMG_SEED", "ImageEncoder", "Img2TextModel", "Text2ImgModel"]

# The seed reports' models. '+-': one conv block of 512 3x3 filters, dropout 0.25, dense 80, LSTM 256.
# '*': three conv blocks (256 filters 5x5, then 512, 512; the report names only the first block's kernel,
# the later blocks use 3x3 here), dense 100, encoder LSTM 256, decoder LSTM 128.
IMG2TEXT_SEED: dict[str, dict] = {
    "+-": {"filters": [512], "kernel": [3], "dropout": 0.25, "dense_units": 80, "hidden": 256,
           "extra_layers": 0, "decoder_hidden": 256},
    "*": {"filters": [256, 512, 512], "kernel": [5, 3, 3], "dropout": 0.25, "dense_units": 100, "hidden": 256,
          "extra_layers": 0, "decoder_hidden": 128},
}
AUX_FEEDS = ("off", "concat", "only")  # what Img2TextModel's encoder reads of the per-image character head
TEXT2IMG_SEED: dict = {"hidden": 512, "extra_layers": 0, "dropout": 0.2, "decoder_hidden": 256}


def _per_block(value: int | Sequence[int], blocks: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * blocks
    values = [int(v) for v in value]
    if len(values) == 1:
        return values * blocks
    if len(values) != blocks:
        raise ValueError(f"{name}: {len(values)} values for {blocks} conv blocks")
    return values


class ImageEncoder(nn.Module):
    """Per-image CNN: (M, 28, 28) -> (M, dense_units). Blocks of conv(same) + ReLU + max-pool 2 + dropout.

    ``batch_norm=True`` puts a batch-norm between each conv (then bias-free) and its ReLU; the seed has none.

    Example::

        >>> ImageEncoder([32, 64], 3, dropout=0.1, dense_units=50)(torch.rand(4, 28, 28)).shape
        torch.Size([4, 50])
    """

    def __init__(self, filters: int | Sequence[int] = 512, kernel: int | Sequence[int] = 3, *,
                 conv_blocks: int | None = None, dropout: float = 0.25, dense_units: int = 80,
                 batch_norm: bool = False):
        super().__init__()
        if conv_blocks is None:
            conv_blocks = 1 if isinstance(filters, int) else len(list(filters))
        if not 1 <= conv_blocks <= 3:
            raise ValueError(f"conv_blocks: {conv_blocks} must be 1, 2 or 3")
        filt = _per_block(filters, conv_blocks, "filters")
        kern = _per_block(kernel, conv_blocks, "kernel")
        layers: list[nn.Module] = []
        cin, size = 1, 28
        for f, k in zip(filt, kern):
            layers.append(nn.Conv2d(cin, f, k, padding="same", bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(f))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout)]
            cin, size = f, size // 2
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Linear(cin * size * size, dense_units)
        self.out_features = dense_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return F.relu(self.dense(self.conv(x).flatten(1)))


class Img2TextModel(nn.Module):
    """Image sequence (B, L, 28, 28), uint8 or float in [0, 1] -> answer logits (B, answer_len, vocab_size).

    ``filters``/``kernel`` are an int (same for every block) or one value per block; the number of conv
    blocks is ``conv_blocks`` or the length of ``filters``. ``decoder_hidden`` defaults to ``hidden``.
    The CNN runs on all B*L images at once.

    ``aux_vocab > 0`` adds a linear head reading each image's own character (digit, operator or padding)
    from its CNN features; ``forward(x, with_aux=True)`` then returns ``(logits, image_logits)``, the latter
    (B, L, aux_vocab). The head serves an auxiliary training loss. ``aux_feed`` gives its character
    probabilities to the encoder LSTM, a symbolic reading of each image like arith-text2text's one-hot
    input: ``"concat"`` beside the dense features, ``"only"`` instead of them; with ``"off"`` (the default)
    predictions never use the head.

    Example::

        >>> m = Img2TextModel(5, 14, **IMG2TEXT_SEED["*"])
        >>> m(torch.rand(2, 5, 28, 28)).shape
        torch.Size([2, 5, 14])
    """

    def __init__(self, answer_len: int, vocab_size: int, *, filters: int | Sequence[int] = 512,
                 kernel: int | Sequence[int] = 3, conv_blocks: int | None = None, dropout: float = 0.25,
                 dense_units: int = 80, hidden: int = 256, extra_layers: int = 0, decoder_hidden: int | None = None,
                 batch_norm: bool = False, aux_vocab: int = 0, aux_feed: str = "off"):
        super().__init__()
        self.answer_len = answer_len
        self.vocab_size = vocab_size
        self.images = ImageEncoder(filters, kernel, conv_blocks=conv_blocks, dropout=dropout,
                                   dense_units=dense_units, batch_norm=batch_norm)
        if aux_feed not in AUX_FEEDS:
            raise ValueError(f"aux_feed: {aux_feed!r} is not one of {', '.join(AUX_FEEDS)}")
        if aux_feed != "off" and aux_vocab <= 0:
            raise ValueError("aux_feed needs aux_vocab > 0 (a per-image character head to feed)")
        self.aux_feed = aux_feed
        encoder_in = {"off": dense_units, "concat": dense_units + aux_vocab, "only": aux_vocab}[aux_feed]
        self.encoder = nn.LSTM(encoder_in, hidden, num_layers=1 + extra_layers, batch_first=True)
        self.decoder = nn.LSTM(hidden, decoder_hidden or hidden, batch_first=True)
        self.out = nn.Linear(decoder_hidden or hidden, vocab_size)
        self.aux = nn.Linear(dense_units, aux_vocab) if aux_vocab > 0 else None

    def forward(self, x: torch.Tensor, *, with_aux: bool = False):
        if x.dim() != 4 or tuple(x.shape[2:]) != (28, 28):
            raise ValueError(f"expected images (B, L, 28, 28), got {tuple(x.shape)}")
        b, length = x.shape[:2]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        feats = self.images(x.reshape(b * length, 28, 28)).reshape(b, length, -1)
        if with_aux and self.aux is None:
            raise ValueError("with_aux=True needs a model built with aux_vocab > 0")
        image_logits = self.aux(feats) if (with_aux or self.aux_feed != "off") else None
        if self.aux_feed == "off":
            encoder_in = feats
        elif self.aux_feed == "concat":
            encoder_in = torch.cat([feats, image_logits.softmax(-1)], -1)
        else:
            encoder_in = image_logits.softmax(-1)
        _, (h, _) = self.encoder(encoder_in)
        repeated = h[-1].unsqueeze(1).expand(-1, self.answer_len, -1)
        decoded, _ = self.decoder(repeated)
        logits = self.out(decoded)
        return (logits, image_logits) if with_aux else logits


class Text2ImgModel(nn.Module):
    """Query ids (B, L) -> answer images (B, answer_len, 28, 28) in [0, 1] (sigmoid).

    ``embed_dim=0`` feeds one-hot characters (the seed); a positive value learns an embedding.
    ``proj_channels`` / ``up_channels`` size the image head (the seed's 128 and 64: dense 7*7*128, transposed
    convs 128->64->1); smaller values make it much cheaper on CPU.
    ``forward(x, logits=True)`` returns the pre-sigmoid values, for ``binary_cross_entropy_with_logits``.
    ``sharpen`` is the output temperature of the images (``sigmoid(sharpen * logits)``): trained on images
    drawn at random from a pool of handwriting, the model learns each pixel's probability of ink, an average
    that draws some digits faintly; above 1 each pixel moves towards the value it favours. It changes no
    weight, only what ``forward`` draws, and leaves ``logits=True`` untouched.

    Example::

        >>> m = Text2ImgModel(3, 14)
        >>> m(torch.tensor([[9, 11, 7, 13, 13]])).shape
        torch.Size([1, 3, 28, 28])
    """

    def __init__(self, answer_len: int, vocab_size: int, *, embed_dim: int = 0, hidden: int = 512,
                 extra_layers: int = 0, dropout: float = 0.2, decoder_hidden: int = 256, proj_channels: int = 128,
                 up_channels: int = 64, aux_vocab: int = 0, sharpen: float = 1.0):
        super().__init__()
        self.answer_len = answer_len
        self.sharpen = float(sharpen)
        self.vocab_size = vocab_size
        # optional training-only head: reads each answer position's character from the decoder state
        self.aux = nn.Linear(decoder_hidden, aux_vocab) if aux_vocab > 0 else None
        self.embed = nn.Embedding(vocab_size, embed_dim) if embed_dim > 0 else None
        self.encoder = nn.LSTM(embed_dim if embed_dim > 0 else vocab_size, hidden, num_layers=1 + extra_layers,
                               batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.LSTM(hidden, decoder_hidden, batch_first=True)
        self.proj_channels = proj_channels
        self.project = nn.Sequential(nn.Linear(decoder_hidden, 7 * 7 * proj_channels),
                                     nn.BatchNorm1d(7 * 7 * proj_channels), nn.ReLU(inplace=True))
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(proj_channels, up_channels, 5, stride=2, padding=2, output_padding=1),  # 7 -> 14
            nn.BatchNorm2d(up_channels), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(up_channels, 1, 5, stride=2, padding=2, output_padding=1),  # 14 -> 28
        )

    def forward(self, x: torch.Tensor, *, logits: bool = False, with_aux: bool = False):
        """Answer images (B, answer_len, 28, 28), sigmoid outputs unless ``logits``; with ``with_aux`` also the
        auxiliary head's character logits (B, answer_len, aux_vocab)."""
        if x.dim() != 2:
            raise ValueError(f"expected character ids (B, L), got {tuple(x.shape)}")
        x = x.long()
        inputs = self.embed(x) if self.embed is not None else F.one_hot(x, self.vocab_size).float()
        _, (h, _) = self.encoder(inputs)
        state = self.dropout(h[-1])
        decoded, _ = self.decoder(state.unsqueeze(1).expand(-1, self.answer_len, -1))
        images = self._draw(decoded, logits)
        if not with_aux:
            return images
        if self.aux is None:
            raise ValueError("this model has no auxiliary character head (aux_vocab=0)")
        return images, self.aux(decoded)

    def _draw(self, decoded: torch.Tensor, logits: bool) -> torch.Tensor:
        b = decoded.shape[0]
        maps = self.project(decoded.reshape(b * self.answer_len, -1)).reshape(-1, self.proj_channels, 7, 7)
        if maps.is_cuda:
            maps = maps.contiguous(memory_format=torch.channels_last)
        out = self.upsample(maps).reshape(b, self.answer_len, 28, 28)
        return out if logits else torch.sigmoid(out * self.sharpen if self.sharpen != 1.0 else out)
