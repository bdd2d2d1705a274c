"""Search-space files: YAML -> validated :class:`Space` -> Optuna define-by-run suggestions.

A space file::

    family: arith-text2text          # a registered family (``mathtune families``)
    description: one line for ``mathtune spaces``
    metric: val_exact_match          # a validation metric: selection never looks at test data
    mode: max
    objectives:                      # optional, instead of metric/mode: several objectives, the first
      - {metric: val_exact_match, mode: max}   # a validation metric (ASHA stops on it alone), the others
      - {metric: num_params, mode: min}        # validation metrics or costs (num_params, epoch_time_s)
    factors:                         # study factors: every value gets its own Optuna study,
      split: [0.5, 0.25]             # trials go round-robin over them, ASHA compares within one
    params:                          # searched parameters
      hidden: {type: choice, values: [128, 256, 512]}
      extra_layers: {type: int, low: 0, high: 2}
      dropout: {type: float, low: 0.0, high: 0.5}
      lr: {type: logfloat, low: 1.0e-4, high: 1.0e-2}
    constants: {ops: "+-", epochs: 30}
    resources: {cpus: 1, gpus: 0}    # per trial; CLI options override
    scheduler: {grace_period: 2, reduction_factor: 3}
    points_to_evaluate:              # optional warm start, evaluated first
      - {hidden: 256, extra_layers: 0, dropout: 0.0, lr: 0.001}

Example::

    >>> space = load_space("arith-text2text-addsub")
    >>> space.family, space.metric
    ('arith-text2text', 'val_exact_match')
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mathtune.trainables.base import ConfigError, FamilyConfig
from mathtune.trainables.errors import MathtuneError
from mathtune.trainables.registry import get_family

__all__ = ["SpaceError", "ParamSpec", "Space", "load_space", "space_names", "space_path", "SPACE_DIR", "COST_METRICS",
           "check_param_value", "check_combos"]

SPACE_DIR = Path(__file__).resolve().parent
PARAM_TYPES = ("choice", "int", "float", "logfloat")
TOP_KEYS = ("family", "description", "metric", "mode", "objectives", "factors", "params", "constants",
            "resources", "scheduler", "points_to_evaluate", "decode")
COST_METRICS = ("num_params", "epoch_time_s")
"""Objectives beside validation metrics: the model's parameter count and an epoch's wall time (the loop
reports both every epoch); neither looks at any data."""
SCHEDULER_KEYS = ("grace_period", "reduction_factor", "brackets")


class SpaceError(MathtuneError, ValueError):
    """A bad space file; the message names the file and the key."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def suggest(self, trial) -> Any:
        if self.type == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step)
        return trial.suggest_float(self.name, self.low, self.high, log=True)

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return value in self.values
        try:
            return self.low <= float(value) <= self.high
        except (TypeError, ValueError):
            return False

    def grid_values(self) -> list[Any]:
        """Every value of a finite parameter (a choice, an int range, a float with a step), for grid search;
        raises :class:`SpaceError` for a continuous one."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.type == "float" and self.step:
            n = int(round((self.high - self.low) / self.step))
            return [round(self.low + i * self.step, 12) for i in range(n + 1)]
        raise SpaceError(f"{self.name}: a {self.type} [{self.low:g}, {self.high:g}] has no grid; give it as "
                         f"{{type: choice, values: [...]}} (or a float with a step) to search a grid")

    def describe(self) -> str:
        if self.type == "choice":
            return f"choice {list(self.values)}"
        return f"{self.type} [{self.low:g}, {self.high:g}]"


@dataclass
class Space:
    """A validated search space."""

    name: str
    path: Path
    family: str
    description: str
    metric: str
    mode: str
    factors: dict[str, list[Any]]
    params: dict[str, ParamSpec]
    constants: dict[str, Any]
    resources: dict[str, float] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, mode); first = metric, mode
    # decode-time settings (a family's ``decode_params``): trials train with the first value, and each trial's
    # selected checkpoint is then scored at every value on validation (:mod:`mathtune.search.decode`)
    decode: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def factor_combos(self) -> list[dict[str, Any]]:
        """Every combination of factor values (one Optuna study each); ``[{}]`` without factors."""
        keys = list(self.factors)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.factors[k] for k in keys))]

    def suggest(self, trial) -> dict[str, Any]:
        """Define-by-run: sample every searched parameter on an Optuna trial."""
        return {name: spec.suggest(trial) for name, spec in self.params.items()}

    def grid(self) -> dict[str, list[Any]]:
        """The searched parameters as a grid (Optuna's GridSampler search space); :class:`SpaceError` names
        the file and the first continuous parameter."""
        try:
            return {name: spec.grid_values() for name, spec in self.params.items()}
        except SpaceError as exc:
            raise SpaceError(f"{self.path}: {exc}") from None

    def config(self, factors: dict[str, Any], params: dict[str, Any]) -> FamilyConfig:
        """The full trial config, the family's typed record (``.as_dict()`` for Tune's plain parameters)."""
        overrides = {**self.constants, **{k: v[0] for k, v in self.decode.items()}, **factors, **params}
        return get_family(self.family).make_config(overrides, where=str(self.path))

    @property
    def epochs(self) -> int:
        """The most epochs a trial runs (ASHA's ``max_t``): the constant, or the longest schedule when ``epochs``
        is searched (a trial with a shorter one ends, as finished, at its own last epoch)."""
        spec = self.params.get("epochs")
        if spec is not None:
            return int(max(spec.values) if spec.type == "choice" else spec.high)
        return int(self.constants.get("epochs", get_family(self.family).defaults()["epochs"]))


def _objectives(where: str, raw: dict[str, Any]) -> list[tuple[str, str]]:
    """``objectives:`` as (metric, mode) pairs: the first a validation metric, the rest validation metrics or
    costs (:data:`COST_METRICS`), no metric twice; [] when the file has none."""
    value = raw.get("objectives")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) < 2:
        raise SpaceError(f"{where}: objectives: expected a list of at least two {{metric, mode}} mappings "
                         f"(one objective: use metric and mode)")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        key = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) - {"metric", "mode"} or "metric" not in item:
            raise SpaceError(f"{where}: {key}: expected a mapping with metric and mode, got {item!r}")
        metric, mode = item["metric"], item.get("mode", "max")
        if mode not in ("max", "min"):
            raise SpaceError(f"{where}: {key}.mode: {mode!r} must be 'max' or 'min'")
        allowed = metric.startswith("val_") if i == 0 else (metric.startswith("val_") or metric in COST_METRICS)
        if not isinstance(metric, str) or not allowed:
            what = "a validation metric (val_...)" if i == 0 else \
                f"a validation metric (val_...) or a cost ({', '.join(COST_METRICS)})"
            raise SpaceError(f"{where}: {key}.metric: {metric!r} must be {what}; test data is never an objective")
        if metric in (m for m, _ in out):
            raise SpaceError(f"{where}: {key}.metric: {metric} is already an objective")
        out.append((metric, mode))
    return out


def space_names() -> list[str]:
    """Names of the space files shipped with mathtune."""
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


def space_path(name_or_path: str | Path) -> Path:
    """A shipped space name, or a path to the user's own YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise SpaceError(f"{candidate}: space file not found")
        return candidate
    shipped = SPACE_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise SpaceError(f"unknown space {str(name_or_path)!r}: not a shipped space ({', '.join(space_names())}) "
                     f"nor an existing file")


def load_space(name_or_path: str | Path) -> Space:
    """Load and validate a space file; any problem raises :class:`SpaceError` naming file and key."""
    path = space_path(name_or_path)
    return _SpaceValidator(path, _read_yaml(path)).space()


def _read_yaml(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(f"{where}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{where}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{where}: expected a mapping of keys (family, metric, params, ...), got "
                         f"{type(raw).__name__}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    if "family" not in raw:
        raise SpaceError(f"{where}: missing key 'family'")
    return raw


def check_param_value(family, name: str, value: Any, where: str, key: str | None = None) -> Any:
    """``value`` checked and coerced by the family's parameter ``name``, else a :class:`SpaceError` naming
    ``where`` and ``key`` (the one value check of space files and of ``--set``)."""
    try:
        return family.all_params()[name].check(name, value)
    except ConfigError as exc:
        raise SpaceError(f"{where}: {key}: {exc}" if key else f"{where} {exc}") from None


class _SpaceValidator:
    """One method per section of a space file, each raising :class:`SpaceError` that names file and key."""

    def __init__(self, path: Path, raw: dict[str, Any]):
        self.path, self.raw, self.where = path, raw, str(path)
        try:
            self.family = get_family(str(raw["family"]))
        except ConfigError as exc:
            raise SpaceError(f"{self.where}: family: {exc}") from None
        self.fparams = self.family.all_params()
        self.seen: dict[str, str] = {}  # parameter -> the section that gave it

    def error(self, message: str) -> SpaceError:
        return SpaceError(f"{self.where}: {message}")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key) or {}
        if not isinstance(value, dict):
            raise self.error(f"{key}: expected a mapping, got {type(value).__name__}")
        return value

    def claim(self, section: str, name: Any) -> str:
        if not isinstance(name, str):
            raise self.error(f"{section}: key {name!r} is not a string")
        if name not in self.fparams:
            raise self.error(f"{section}.{name}: unknown parameter for family {self.family.name} "
                             f"(known: {', '.join(sorted(self.fparams))})")
        if name in self.seen:
            raise self.error(f"{section}.{name}: already given in {self.seen[name]}")
        self.seen[name] = section
        return name

    def check(self, key: str, name: str, value: Any) -> Any:
        return check_param_value(self.family, name, value, self.where, key)

    # ------------------------------------------------------------------ sections
    def metric_mode_objectives(self) -> tuple[str, str, list[tuple[str, str]]]:
        raw, family = self.raw, self.family
        metric = raw.get("metric", family.metric)
        if not isinstance(metric, str) or not metric.startswith("val_"):
            raise self.error(f"metric: {metric!r} is not a validation metric (must start with 'val_'; "
                             f"test data is never used for selection)")
        mode = raw.get("mode", family.mode)
        if mode not in ("max", "min"):
            raise self.error(f"mode: {mode!r} must be 'max' or 'min'")
        objectives = _objectives(self.where, raw)
        if objectives:
            if ("metric" in raw and raw["metric"] != objectives[0][0]) or ("mode" in raw and raw["mode"] !=
                                                                             objectives[0][1]):
                raise self.error(f"metric/mode: the first objective ({objectives[0][0]}, {objectives[0][1]}) is "
                                 f"the selection metric; leave metric and mode out or make them agree")
            metric, mode = objectives[0]
        return metric, mode, objectives

    def value_list(self, section: str, name: str, values: Any) -> list[Any]:
        """A non-empty list of distinct values of parameter ``name``, each checked by the family."""
        if not isinstance(values, list) or not values:
            raise self.error(f"{section}.{name}: expected a non-empty list of values")
        checked = [self.check(f"{section}.{name}", name, v) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise self.error(f"{section}.{name}: repeated value")
        return checked

    def factors(self) -> dict[str, list[Any]]:
        factors: dict[str, list[Any]] = {}
        for name, values in self.mapping("factors").items():
            self.claim("factors", name)
            factors[name] = self.value_list("factors", name, values)
        return factors

    def params(self) -> dict[str, ParamSpec]:
        params: dict[str, ParamSpec] = {}
        for name, spec in self.mapping("params").items():
            self.claim("params", name)
            params[name] = _param_spec(self.where, name, spec, lambda key, v, n=name: self.check(key, n, v))
        return params

    def constants(self) -> dict[str, Any]:
        constants: dict[str, Any] = {}
        for name, value in self.mapping("constants").items():
            self.claim("constants", name)
            constants[name] = self.check(f"constants.{name}", name, value)
        return constants

    def decode(self) -> dict[str, list[Any]]:
        decode: dict[str, list[Any]] = {}
        for name, values in self.mapping("decode").items():
            self.claim("decode", name)
            if name not in self.family.decode_params:
                allowed = ", ".join(self.family.decode_params) or "none"
                raise self.error(f"decode.{name}: not a decode-time setting of family {self.family.name} "
                                 f"(its decode-time settings: {allowed}); search it under params")
            decode[name] = self.value_list("decode", name, values)
        return decode

    def resources(self) -> dict[str, float]:
        resources = self.mapping("resources")
        for key, value in resources.items():
            if key not in ("cpus", "gpus"):
                raise self.error(f"resources.{key}: unknown (allowed: cpus, gpus)")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or not math.isfinite(value):
                raise self.error(f"resources.{key}: expected a number >= 0, got {value!r}")
        if resources.get("cpus", 1) == 0 and resources.get("gpus", 0) == 0:
            raise self.error("resources: a trial needs some CPU or GPU")
        return {k: float(v) for k, v in resources.items()}

    def scheduler(self) -> dict[str, Any]:
        scheduler = self.mapping("scheduler")
        for key, value in scheduler.items():
            if key not in SCHEDULER_KEYS:
                raise self.error(f"scheduler.{key}: unknown (allowed: {', '.join(SCHEDULER_KEYS)})")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 1:
                raise self.error(f"scheduler.{key}: expected a number >= 1, got {value!r}")
        if "reduction_factor" in scheduler and scheduler["reduction_factor"] < 2:
            raise self.error("scheduler.reduction_factor: must be at least 2")
        return dict(scheduler)

    def points(self, params: dict[str, ParamSpec], factors: dict[str, list[Any]]) -> list[dict[str, Any]]:
        points = self.raw.get("points_to_evaluate") or []
        if not isinstance(points, list):
            raise self.error("points_to_evaluate: expected a list of mappings")
        checked = []
        for i, point in enumerate(points):
            key = f"points_to_evaluate[{i}]"
            if not isinstance(point, dict):
                raise self.error(f"{key}: expected a mapping of parameter values")
            for name, value in point.items():
                if name not in params and name not in factors:
                    raise self.error(f"{key}.{name}: not a searched parameter or factor of this space")
                value = self.check(f"{key}.{name}", name, value)
                spec = params.get(name)
                if (spec is not None and not spec.contains(value)) or (name in factors and value not in factors[name]):
                    raise self.error(f"{key}.{name}: {value!r} lies outside the space")
                point[name] = value
            checked.append(point)
        return checked

    def space(self) -> Space:
        metric, mode, objectives = self.metric_mode_objectives()
        factors, params, constants = self.factors(), self.params(), self.constants()
        space = Space(name=self.path.stem, path=self.path, family=self.family.name,
                      description=str(self.raw.get("description", "")), metric=metric, mode=mode,
                      factors=factors, params=params, constants=constants, resources=self.resources(),
                      scheduler=self.scheduler(), points_to_evaluate=self.points(params, factors),
                      objectives=objectives, decode=self.decode())
        check_combos(space, self.where)
        return space


def check_combos(space: Space, where: str) -> None:
    """One full config per factor combination proves constants and factors agree with the family; where
    ``average_last`` or ``epochs`` is searched, that config takes the most epochs averaged and the fewest epochs
    the space can pick, so a trial the family would refuse (``average_last`` above ``epochs``) is a one-line
    error here, before the search starts, not a failure of the searcher's suggestion."""
    family = get_family(space.family)
    extremes = {name: value for name, value in (("average_last", _extreme(space.params.get("average_last"), max)),
                                                ("epochs", _extreme(space.params.get("epochs"), min)))
                if value is not None}
    for combo in space.factor_combos():
        try:
            family.make_config({**space.constants, **combo, **extremes}, where=where)
        except ConfigError as exc:
            raise SpaceError(str(exc)) from None


def _extreme(spec: ParamSpec | None, pick) -> Any:
    """``pick`` (min or max) of the values a searched parameter can take; None when it is not searched."""
    if spec is None:
        return None
    return pick(spec.values) if spec.type == "choice" else pick(spec.low, spec.high)


def _param_spec(where: str, name: str, spec: Any, check) -> ParamSpec:
    key = f"params.{name}"
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: {key}: expected a mapping like {{type: choice, values: [...]}} or "
                         f"{{type: float, low: 0, high: 1}}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise SpaceError(f"{where}: {key}.type: {kind!r} is not one of {', '.join(PARAM_TYPES)}")
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high", "step"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise SpaceError(f"{where}: {key}.{extra[0]}: not allowed for type {kind} (allowed: {', '.join(sorted(allowed))})")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: {key}.values: expected a non-empty list")
        return ParamSpec(name, kind, values=tuple(check(f"{key}.values", v) for v in values))
    for bound in ("low", "high"):
        if bound not in spec:
            raise SpaceError(f"{where}: {key}.{bound}: missing")
        value = spec[bound]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise SpaceError(f"{where}: {key}.{bound}: expected a number, got {value!r}")
        check(f"{key}.{bound}", value)
    low, high = spec["low"], spec["high"]
    if low > high:
        raise SpaceError(f"{where}: {key}: low {low} is above high {high}")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise SpaceError(f"{where}: {key}: int bounds must be whole numbers")
    if kind == "logfloat" and low <= 0:
        raise SpaceError(f"{where}: {key}.low: a logfloat needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0):
        raise SpaceError(f"{where}: {key}.step: expected a positive number, got {step!r}")
    if kind == "logfloat" and step is not None:
        raise SpaceError(f"{where}: {key}.step: not allowed for logfloat")
    return ParamSpec(name, kind, low=float(low) if kind != "int" else int(low),
                     high=float(high) if kind != "int" else int(high), step=step)
