"""Model families, the shared training loop and its Ray Tune wrapper."""

from .base import ConfigError, Family, FamilyConfig, Param
from .errors import MathtuneError
from .loop import load_checkpoint, save_checkpoint, train
from .registry import family_names, get_family

__all__ = ["ConfigError", "Family", "FamilyConfig", "Param", "train", "save_checkpoint", "load_checkpoint",
           "MathtuneError", "family_names", "get_family"]
