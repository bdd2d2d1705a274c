"""Search spaces (YAML files in this folder) and their loader."""

from .loader import ParamSpec, Space, SpaceError, load_space, space_names, space_path

__all__ = ["ParamSpec", "Space", "SpaceError", "load_space", "space_names", "space_path"]
