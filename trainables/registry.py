"""Name -> family. Adding a family means one folder under ``trainables/`` plus one line here
(and a space file under ``spaces/``)."""

from __future__ import annotations

import importlib

from .base import ConfigError, Family

__all__ = ["FAMILIES", "get_family", "family_names"]

# name -> "module:Class", imported lazily so that listing families stays fast.
FAMILIES: dict[str, str] = {
    "arith-text2text": "mathtune.trainables.arith.text2text:ArithText2Text",
    "arith-img2text": "mathtune.trainables.arith.img2text:ArithImg2Text",
    "arith-text2img": "mathtune.trainables.arith.text2img:ArithText2Img",
    "t2m-lstm": "mathtune.trainables.t2m.family:T2MLstm",
    "t2m-attn": "mathtune.trainables.t2m.family:T2MAttn",
    "t2m-bert-frozen": "mathtune.trainables.t2m.family:T2MBertFrozen",
    "t2m-bert-ft": "mathtune.trainables.t2m.family:T2MBertFT",
}


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> Family:
    """An instance of the family called ``name``; unknown names raise :class:`ConfigError`."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r} (known: {', '.join(family_names())})")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
