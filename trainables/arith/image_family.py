"""What the two arithmetic image families share: MNIST-backed data, GPU speed-ups, batch augmentation.

:class:`ImageArithFamily` extends :class:`~mathtune.trainables.arith.text2text.ArithFamily` (``ops``,
``split``, ``val_fraction``, ``limit``, exact-match metrics) with the ``mnist_dir`` and ``amp`` parameters.
On a GPU, models run channels-last and under bfloat16 autocast (``amp``); on CPU everything stays float32.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from ..base import FamilyConfig, Param
from ..device import resolve_device
from .image_data import ImageArithData, build_image_arith
from .text2text import ArithFamily

__all__ = ["ImageArithFamily", "autocast_for", "shift_images", "warp_images"]


def autocast_for(device: torch.device, config: FamilyConfig):
    """bfloat16 autocast on CUDA when ``config.amp``; a no-op context elsewhere (CPU stays float32)."""
    if device.type == "cuda" and config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each 28x28 image of ``x`` (..., 28, 28) moved by a random whole-pixel offset in [-max_shift, max_shift]
    on both axes, zero-filled (a blank image stays blank). One gather; any dtype; draws from ``generator``.

    Example::

        >>> x = torch.zeros(2, 5, 28, 28, dtype=torch.uint8)
        >>> shift_images(x, 2, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 5, 28, 28])
    """
    if max_shift <= 0:
        return x
    shape = x.shape
    flat = x.reshape(-1, 28, 28)
    m, k = flat.shape[0], int(max_shift)
    padded = F.pad(flat, (k, k, k, k))
    offsets = torch.randint(0, 2 * k + 1, (2, m), generator=generator)
    ar = torch.arange(28)
    rows = (offsets[0, :, None] + ar)[:, :, None]
    cols = (offsets[1, :, None] + ar)[:, None, :]
    return padded[torch.arange(m)[:, None, None], rows, cols].reshape(shape)


def warp_images(x: torch.Tensor, max_degrees: float, max_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Each 28x28 image of ``x`` (..., 28, 28) rotated about its centre by a random angle in
    [-max_degrees, max_degrees] and scaled by a random factor in [1 - max_scale, 1 + max_scale] (bilinear,
    zero-filled; a blank image stays blank). Same dtype out (uint8 is rounded back); ``x`` itself when both
    are 0. One batched ``grid_sample``; draws from ``generator``.

    Example::

        >>> x = torch.zeros(2, 5, 28, 28, dtype=torch.uint8)
        >>> warp_images(x, 10.0, 0.1, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 5, 28, 28])
    """
    if max_degrees <= 0 and max_scale <= 0:
        return x
    shape, dtype = x.shape, x.dtype
    flat = x.reshape(-1, 1, 28, 28).float()
    m = flat.shape[0]
    u = torch.rand(2, m, generator=generator) * 2 - 1
    angle = u[0] * (max_degrees * np.pi / 180.0)
    inv_scale = 1.0 / (1.0 + u[1] * max_scale)  # the grid maps output to input: zoom in by s = sample at 1/s
    cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, [m, 1, 28, 28], align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(dtype).reshape(shape)


class ImageArithFamily(ArithFamily):
    """Base of arith-img2text and arith-text2img: the text split, with one side rendered as MNIST images."""

    render: str = "queries"
    eval_batch = 512
    #: what the ``aux_weight`` head of the family's models reads: supervision the reference's model did not have
    aux_head: ClassVar[str] = "an auxiliary head"
    data_params = ArithFamily.data_params + ("mnist_dir", "val_pool")
    image_params: dict[str, Param] = {
        "mnist_dir": Param("", "folder holding the MNIST test set (t10k-*-ubyte[.gz]); '' = $MATHTUNE_MNIST, else "
                               "../shared/data/mnist next to the project", str),
        "val_pool": Param(True, "validation queries draw their digit images from their own MNIST pool, apart from "
                                "the training, test and classifier pools, so selection sees reading errors on new "
                                "handwriting; false: from the training pool (the figures before 2026-12-02)", bool),
        "amp": Param(True, "on a GPU: bfloat16 autocast and channels-last convolutions (ignored on CPU, which "
                           "stays float32)", bool),
    }

    def load_images(self, config: FamilyConfig, mnist: tuple[np.ndarray, np.ndarray] | None = None,
                    mnist_source: str = "", *, reverse: str = "none") -> ImageArithData:
        """The queries and their images for ``config``; ``reverse`` as arith-text2text's (a family with that
        parameter passes its value)."""
        return build_image_arith(config.ops, config.split, config.data_seed, config.val_fraction,
                                 limit=config.limit, render=self.render, mnist_dir=config.mnist_dir,
                                 mnist=mnist, mnist_source=mnist_source, val_pool=config.val_pool,
                                 reverse=reverse)

    def build_data(self, config: FamilyConfig) -> ImageArithData:
        return self.load_images(config)

    @classmethod
    def extra_supervision(cls, config: FamilyConfig) -> str | None:
        """The ``aux_weight`` head, when a configuration trains it (``mathtune reference`` names it)."""
        return f"{cls.aux_head} (aux_weight)" if config.aux_weight > 0.0 else None

    def describe_data(self, data: ImageArithData) -> str:
        return data.describe()

    def place_model(self, model: torch.nn.Module, config: FamilyConfig) -> torch.nn.Module:
        """Channels-last weights when the run will be on a GPU with ``amp``."""
        if resolve_device(config).type == "cuda" and config.amp:
            model = model.to(memory_format=torch.channels_last)
        return model
