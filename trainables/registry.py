"""Name -> family, found through the ``mathtune.families`` entry-point group.

mathtune's own families are registered there in its ``pyproject.toml``; a package of your own adds one the
same way, and ``mathtune families``, ``train``, ``search`` (with your space file) and ``report`` then use it
like a built-in one, and ``replay-NAME`` replays a learning-curve table recorded from it::

    # pyproject.toml of your package
    [project.entry-points."mathtune.families"]
    my-family = "my_package.family:MyFamily"     # a mathtune.trainables.Family subclass

Entry points are read once per process and their modules imported only when a family is used, so listing
families stays fast.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from .base import ConfigError, Family

__all__ = ["ENTRY_POINT_GROUP", "get_family", "family_names", "family_sources", "families_of_class"]

ENTRY_POINT_GROUP = "mathtune.families"
REPLAY_PREFIX = "replay-"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # the first distribution on the path wins, as for console scripts
    return found


def family_names() -> list[str]:
    """Registered families, then ``replay-NAME`` for each (a recorded learning-curve table of NAME played back,
    :mod:`mathtune.trainables.replay`)."""
    names = sorted(_entry_points())
    return names + [REPLAY_PREFIX + n for n in names if not n.startswith(REPLAY_PREFIX) and
                    REPLAY_PREFIX + n not in names]


def family_sources() -> dict[str, str]:
    """Family name -> "module:Class" and the distribution that registers it."""
    out = {}
    for name, ep in _entry_points().items():
        dist = getattr(ep, "dist", None)
        out[name] = f"{ep.value} ({dist.name if dist is not None else 'unknown package'})"
    return out


def families_of_class(class_name: str) -> list[str]:
    """The registered families whose class is called ``class_name`` (read from the entry points' "module:Class"
    values: nothing is imported)."""
    return [name for name, ep in _entry_points().items() if (ep.attr or "").rpartition(".")[2] == class_name]


def get_family(name: str) -> Family:
    """An instance of the family called ``name``; unknown names, and a registered family that cannot be
    imported or is not a :class:`Family`, raise :class:`ConfigError` (one line)."""
    eps = _entry_points()
    if not eps:
        raise ConfigError("no model families are registered: mathtune's package metadata is missing; reinstall it "
                          "(pip install -c constraints.txt -e .)")
    if name not in eps and name.startswith(REPLAY_PREFIX) and name[len(REPLAY_PREFIX):] in eps:
        from .replay import replay_family  # replay imports this module (it finds its classes' sources here)

        return replay_family(type(get_family(name[len(REPLAY_PREFIX):])))()
    if name not in eps:
        raise ConfigError(f"unknown family {name!r} (known: {', '.join(family_names())})")
    ep = eps[name]
    try:
        cls = ep.load()
    except Exception as exc:  # noqa: BLE001 - a plugin's import error becomes one line naming it
        raise ConfigError(f"family {name!r} ({ep.value}) cannot be imported: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise ConfigError(f"family {name!r} ({ep.value}) is not a mathtune.trainables.Family subclass")
    return cls()
