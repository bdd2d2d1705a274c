"""The typed, frozen configuration of a family: one record type per family, made from its parameters.

:meth:`Family.config_type() <mathtune.trainables.base.Family.config_type>` builds (once per family class) a frozen
dataclass with one field per parameter of :meth:`~mathtune.trainables.base.Family.all_params`, typed from the
:class:`~mathtune.trainables.base.Param` (its ``type``; ``Literal`` of its ``choices``; ``Optional`` where the
default is None) and defaulting to the parameter's default. :meth:`Family.make_config
<mathtune.trainables.base.Family.make_config>` returns one; family code reads attributes (``config.hidden``),
and a name the family does not declare is an ``AttributeError`` where it is read, never a silent default.

What every config record has (:class:`FamilyConfig`):

* attribute reads; no assignment (frozen); ``config["name"]`` for a name held in a variable (declared names
  only: ``KeyError`` otherwise; no ``get``, no iteration);
* :meth:`~FamilyConfig.as_dict`: the plain dict (JSON values, every parameter in declaration order) that
  checkpoints, ``result.json``, Tune's parameters and shipped files hold;
* :meth:`~FamilyConfig.replace`: a copy with some values changed, each checked by its ``Param`` and the family's
  cross-key rules, with the same :class:`~mathtune.trainables.base.ConfigError` messages as ``make_config``;
* equality and hashing by family and values; a repr that shows only the values that differ from the defaults;
* pickling (Ray sends configs to workers): a config travels as its family class (by import path, as pickle
  sends any class: a registered family's class and each ``replay-NAME`` class, :mod:`~mathtune.trainables.replay`,
  are importable) and its values, and is rebuilt there through ``make_config``, since the record type itself is
  made at run time and cannot be imported by name.

Example::

    fam = get_family("arith-text2text")
    cfg = fam.make_config({"split": 0.5, "epochs": 2})
    cfg.hidden, cfg.split                  # (256, 0.5)
    cfg                                    # ArithText2TextConfig(epochs=2, split=0.5)
    cfg.replace(hidden=128).hidden         # 128
    cfg.replace(hidden=1)                  # ConfigError: config: hidden: 1 is below the minimum 4
    json.dumps(cfg.as_dict())              # what a checkpoint's config.json holds
"""

from __future__ import annotations

import dataclasses
import keyword
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

if TYPE_CHECKING:
    from .base import Family, Param

__all__ = ["FamilyConfig", "config_type_for"]

# what a config record has besides its parameters: no parameter may be called so
RESERVED = frozenset({"as_dict", "replace"})


class FamilyConfig:
    """Base of every family's config record type (see the module docstring). Made by ``Family.make_config``."""

    __slots__ = ()
    #: the family class the record type was made for
    _family: ClassVar[type[Family]]
    #: its parameters, name -> Param, in declaration order (``Family.all_params()``)
    _params: ClassVar[dict[str, Param]]

    def as_dict(self) -> dict[str, Any]:
        """Every parameter and its value, in declaration order: the plain dict that files and Tune hold."""
        return {name: getattr(self, name) for name in self._params}

    def replace(self, **changes: Any) -> FamilyConfig:
        """A copy with ``changes``, each checked by its ``Param`` (an unknown name, a value out of range or of the
        wrong type raises ``ConfigError``, as ``make_config`` does) and then by the family's ``check_config``."""
        return self._family._configure(self.as_dict(), changes, where="config")

    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str) or name not in self._params:
            raise KeyError(f"{self._family.name} has no parameter {name!r}")
        return getattr(self, name)

    __iter__ = None  # not a mapping: as_dict() lists the parameters

    def __getattr__(self, name: str) -> Any:  # only reached when the name is not a field
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{type(self).__name__}: family {self._family.name} has no parameter {name!r}",
                             name=name, obj=self)

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in self._params.items()}
        changed = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items()
                            if value != defaults[name] or type(value) is not type(defaults[name]))
        return f"{type(self).__name__}({changed})"

    def __reduce__(self):
        return _rebuild, (self._family, self.as_dict())


def _rebuild(family: type[Family], values: dict[str, Any]) -> FamilyConfig:
    return family.make_config(values)


def _field_type(param: Param) -> Any:
    kind: Any = Literal[tuple(param.choices)] if param.choices else param.type
    return Optional[kind] if param.default is None else kind


def _post_init(self: FamilyConfig) -> None:
    """``Cls(name=value, ...)`` (and ``dataclasses.replace``) checks like ``make_config``: every value through its
    Param, then the family's cross-key rules; values are coerced to the parameters' types."""
    values = self.as_dict()
    defaults = {name: p.default for name, p in self._params.items()}
    changed = {k: v for k, v in values.items() if v is not defaults[k]}
    checked = self._family._configure(defaults, changed, where="config")
    for name, value in checked.as_dict().items():
        if value is not values[name]:
            object.__setattr__(self, name, value)


def config_type_for(family: type[Family]) -> type[FamilyConfig]:
    """A new frozen dataclass for ``family``'s parameters, named ``{FamilyClass}Config`` (call it through
    ``Family.config_type()``, which makes one per family class)."""
    params = family.all_params()
    clash = sorted(n for n in params
                   if n in RESERVED or n.startswith("_") or not n.isidentifier() or keyword.iskeyword(n))
    if clash:
        raise TypeError(f"family {family.name}: parameter name(s) {', '.join(clash)} cannot be config attributes")
    fields = [(name, _field_type(p), dataclasses.field(default=p.default)) for name, p in params.items()]
    name = f"{family.__name__}Config"
    cls = dataclasses.make_dataclass(
        name, fields, bases=(FamilyConfig,), frozen=True, eq=True, repr=False,
        namespace={"_family": family, "_params": params, "__post_init__": _post_init,
                   "__doc__": f"The configuration of {family.name} (frozen; see mathtune.trainables.config)."})
    cls.__module__ = family.__module__
    cls.__qualname__ = name
    return cls
