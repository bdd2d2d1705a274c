"""The seam every model family plugs into.

A family is one folder under ``trainables/`` with a :class:`Family` subclass registered in
``trainables/registry.py``. The family supplies data, model, loss and metrics; the shared loop in
``trainables/loop.py`` does the rest (optimiser, epochs, checkpoints, reporting), with or without Ray.

A family's methods receive its configuration as a typed, frozen record (:mod:`~mathtune.trainables.config`),
made from its parameters by :meth:`Family.make_config`, and read attributes (``config.hidden``).

Example::

    from mathtune.trainables import get_family, train
    fam = get_family("arith-text2text")
    cfg = fam.make_config({"split": 0.5, "epochs": 2})     # ArithText2TextConfig(epochs=2, split=0.5)
    result = train(fam, cfg)
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch

from .config import FamilyConfig, config_type_for
from .errors import MathtuneError, ShipError
from .reportviews import ReportFigure, ReportView

__all__ = ["ConfigError", "Family", "FamilyConfig", "Param", "Batch", "adam"]

Batch = Any


class ConfigError(MathtuneError, ValueError):
    """A bad configuration value; the message names the key and what is wrong."""


@dataclass(frozen=True)
class Param:
    """One configuration key of a family: its default, type, help text and allowed range."""

    default: Any
    help: str
    type: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type or raise :class:`ConfigError`."""
        if value is None and self.default is None:
            return None
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "yes")
                else:
                    value = bool(value)
            elif self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                if isinstance(value, bool):
                    raise ValueError
                value = int(float(value)) if isinstance(value, str) else int(value)
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {self.type.__name__}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        if self.low is not None and value < self.low:
            raise ConfigError(f"{key}: {value!r} is below the minimum {self.low}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{key}: {value!r} is above the maximum {self.high}")
        return value


# Keys every family has; the loop reads them.
COMMON_PARAMS: dict[str, Param] = {
    "epochs": Param(20, "maximum number of training epochs (ASHA may stop a trial earlier)", int, 1, 10_000),
    "batch_size": Param(32, "training batch size", int, 1, 65_536),
    "lr": Param(1e-3, "Adam learning rate", float, 1e-7, 10.0),
    "lr_schedule": Param("constant", "learning-rate schedule over the epochs: constant, or cosine decay to zero "
                                     "at the last epoch (usually better final accuracy)", str,
                         choices=("constant", "cosine")),
    "warmup": Param(0.0, "linear learning-rate warm-up over this fraction of the run's optimizer steps (epochs x "
                         "batches per epoch): step k of the W warm-up steps trains at (k + 1) / W of every parameter "
                         "group's lr, as lr_schedule sets it for that epoch; after them lr_schedule alone (0 = off; "
                         "0.06 warms up over the first 6% of the steps)", float, 0.0, 0.5),
    "grad_clip": Param(0.0, "clip the gradient norm to this value (0 = off)", float, 0.0, 1e6),
    "ema": Param(0.0, "decay of an exponential moving average of the weights, updated after every step; "
                      "evaluation, selection and the checkpoints' model use the averaged weights (0 = off; "
                      "0.999 averages over about the last 1,000 steps; the decay warms up over the first ones, "
                      "min(ema, (1 + n) / (10 + n)) after n steps)", float, 0.0, 0.99999),
    "average_last": Param(0, "checkpoint averaging: a uniform average of the weights evaluated at the end of each of "
                             "the last K epochs (with ema, of the averaged weights), evaluated after the last epoch "
                             "like an epoch; the last epoch's row (its val_* and test_*, its checkpoint's model) is "
                             "the average when its validation metric beats that epoch's own weights', flagged "
                             "averaged_last K (0 otherwise), with both evaluations beside as averaged_* and "
                             "unaveraged_*, so every epoch still reports once and the run's best is the average "
                             "only when it beats every epoch on validation (0 = off; at most epochs)", int, 0, 10_000),
    "seed": Param(0, "seed for model initialisation and batch order", int, 0, 2**31 - 1),
    "data_seed": Param(0, "seed for the dataset and its train/validation/test split", int, 0, 2**31 - 1),
    "threads": Param(0, "torch CPU threads (0 = the trial's CPU count, or all cores outside Tune)", int, 0, 1024),
    "device": Param("auto", "torch device: auto (cuda when available), cpu or cuda", str,
                    choices=("auto", "cpu", "cuda")),
}


class Family(abc.ABC):
    """A model family: data, model, loss and metrics for one task.

    Subclasses set ``name``, ``description``, ``params`` (every config key with default, type and
    help; the common keys in :data:`COMMON_PARAMS` are added automatically) and ``data_params``
    (the keys that determine the dataset, so a search builds each dataset once and shares it).
    Metrics returned by :meth:`evaluate` are named ``val_*`` (selection) and ``test_*`` (reporting
    only; never used to select or stop).

    Every method given a ``config`` gets the family's typed, frozen config record (:meth:`config_type`, made by
    :meth:`make_config`) and reads attributes: ``config.hidden``. A parameter the family does not declare is an
    ``AttributeError`` where it is read; ``config.replace(beam_width=5)`` is a checked copy and
    ``config.as_dict()`` the plain dict that checkpoints and Tune hold.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[dict[str, Param]]
    data_params: ClassVar[tuple[str, ...]]
    metric: ClassVar[str] = "val_exact_match"
    mode: ClassVar[str] = "max"
    #: parameters that change only how a trained model decodes (beam width, an output temperature): a space lists
    #: them under ``decode:`` and a search scores each trial's selected checkpoint at every listed value
    decode_params: ClassVar[tuple[str, ...]] = ()
    #: other families whose models a value of this family's parameters builds (t2m-attn with attention_style
    #: none is t2m-lstm): a search's report compares its result with their shipped files too
    builds_families: ClassVar[tuple[str, ...]] = ()
    _config_type: ClassVar[type[FamilyConfig]]  # made by config_type(), once per family class

    # ----------------------------------------------------------------- configuration
    @classmethod
    def all_params(cls) -> dict[str, Param]:
        merged = dict(COMMON_PARAMS)
        merged.update(cls.params)
        return merged

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {k: p.default for k, p in cls.all_params().items()}

    @classmethod
    def config_type(cls) -> type[FamilyConfig]:
        """This family's config record type: a frozen dataclass named ``{FamilyClass}Config`` with one typed field
        per parameter (:mod:`~mathtune.trainables.config`), made once per family class; a subclass with its
        parent's name and parameters (one that changes only behaviour) shares its parent's."""
        made = cls.__dict__.get("_config_type")
        if made is None:
            same = [b for b in cls.__mro__[1:] if isinstance(b, type) and issubclass(b, Family) and
                    getattr(b, "name", None) == getattr(cls, "name", None) and hasattr(b, "params") and
                    b.all_params() == cls.all_params()]
            made = same[0].config_type() if same else config_type_for(cls)
            cls._config_type = made
        return made

    @classmethod
    def make_config(cls, overrides: Mapping[str, Any] | None = None, *, where: str = "config") -> FamilyConfig:
        """The typed, frozen config of this family: the defaults updated with ``overrides`` (a plain mapping: Tune's
        parameters, a JSON file, ``--set`` values), each value checked by its :class:`Param`, then
        :meth:`check_config`. Unknown keys are errors. ``config.as_dict()`` is the plain dict again."""
        return cls._configure(cls.defaults(), overrides or {}, where=where)

    @classmethod
    def read_config(cls, saved: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *,
                    where: str = "config") -> FamilyConfig:
        """The config of a configuration saved earlier (a checkpoint's ``config.json``, a shipped file's
        ``config``, a ``--config`` file): like :meth:`make_config`, but keys this family does not know (parameters
        of older versions) are left out; ``overrides`` are then applied and checked as usual."""
        known = cls.all_params()
        return cls.make_config({**{k: v for k, v in saved.items() if k in known}, **(overrides or {})}, where=where)

    @classmethod
    def _configure(cls, base: Mapping[str, Any], overrides: Mapping[str, Any], *, where: str) -> FamilyConfig:
        """``base`` (every parameter's value, already checked) with ``overrides`` checked on top, as a record."""
        params = cls.all_params()
        values = dict(base)
        for key, value in overrides.items():
            if key not in params:
                known = ", ".join(sorted(params))
                raise ConfigError(f"{where}: unknown parameter {key!r} for family {cls.name} (known: {known})")
            try:
                values[key] = params[key].check(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        config_type = cls.config_type()
        config = object.__new__(config_type)
        for key in params:
            object.__setattr__(config, key, values[key])
        if config.average_last > config.epochs:  # the loop's own rule, whatever a family's check_config adds
            raise ConfigError(f"{where}: average_last: {config.average_last} is above epochs ({config.epochs}): it "
                              f"averages the weights of the run's last average_last epochs")
        cls.check_config(config, where=where)
        return config

    @classmethod
    def check_config(cls, config: FamilyConfig, *, where: str = "config") -> None:
        """Cross-key checks of a config record; override to add family rules. Raise :class:`ConfigError`."""

    @classmethod
    def data_key(cls, config: FamilyConfig) -> tuple:
        """The values that determine this config's dataset (hashable)."""
        return tuple((k, getattr(config, k)) for k in cls.data_params)

    # ----------------------------------------------------------------- the task
    @abc.abstractmethod
    def build_data(self, config: FamilyConfig) -> Any:
        """Build the dataset for ``config`` (depends only on :attr:`data_params`). Picklable."""

    @abc.abstractmethod
    def build_model(self, config: FamilyConfig, data: Any) -> torch.nn.Module:
        """A fresh model for ``config``."""

    @abc.abstractmethod
    def batches(self, data: Any, config: FamilyConfig, generator: torch.Generator,
                device: torch.device) -> Iterable[Batch]:
        """One epoch of shuffled training batches (on ``device``)."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Batch, config: FamilyConfig,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean training loss of one batch (the model is in training mode).

        ``generator`` is the run's random generator (on the CPU; the one :meth:`batches` shuffles with, saved
        in every checkpoint), for any randomness of the step itself, e.g. teacher-forcing coin flips, so that
        a resumed run draws the same numbers; None when a caller outside the loop computes one loss."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, data: Any, config: FamilyConfig,
                 device: torch.device, *, final: bool = False) -> dict[str, float]:
        """Validation and test metrics (``val_*``, ``test_*``) with the model in eval mode.

        ``final`` is true for the last evaluation of a run, where a family may decode more
        expensively (e.g. beam search).
        """

    def score_decoded(self, model: torch.nn.Module, data: Any, config: FamilyConfig, device: torch.device,
                      settings: list[dict[str, Any]]) -> list[dict[str, float]]:
        """The final evaluation (``val_*`` and ``test_*``) of a trained model at each of ``settings`` (values of
        :attr:`decode_params`), in their order. The default evaluates once per setting; a family that can score
        several settings in one pass (t2m: every beam width from one beam search) overrides it."""
        return [self.evaluate(model, data, config.replace(**setting), device, final=True) for setting in settings]

    # ----------------------------------------------------------------- optional hooks
    def optimizer(self, model: torch.nn.Module, config: FamilyConfig) -> torch.optim.Optimizer:
        return adam(model.parameters(), lr=config.lr)

    def scheduler(self, optimizer: torch.optim.Optimizer, config: FamilyConfig):
        """A learning-rate scheduler stepped once per epoch (None = constant), from ``lr_schedule``."""
        if config.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        return None

    def steps_per_epoch(self, data: Any, config: FamilyConfig) -> int:
        """Optimizer steps in one epoch (the batches :meth:`batches` yields), for the ``warmup`` length; the loop
        asks only when ``warmup`` > 0. The default counts one epoch's batches built on the CPU with a throwaway
        generator; a family that knows the count without building them overrides it."""
        return sum(1 for _ in self.batches(data, config, torch.Generator().manual_seed(0), torch.device("cpu")))

    def warm_start(self, model: torch.nn.Module, config: FamilyConfig) -> str | None:
        """Copy weights into a freshly built ``model`` before its first epoch (the loop never calls it when a
        run resumes). Returns one line for the progress output, or None when nothing was asked for."""
        return None

    def describe_data(self, data: Any) -> str:
        """One line saying what data a run uses (printed and recorded with metrics)."""
        return ""

    # ----------------------------------------------------------------- shipping (analysis/ship.py: `mathtune ship`)
    #: what ``mathtune ship`` calls a run of a family that ships its trained model, measured by the family
    #: (:meth:`ship_model`), e.g. "text-to-program"; None (the default): the family's runs ship as a configuration,
    #: from one or more training seeds, with the figures they recorded and their train figures
    ships_model: ClassVar[str | None] = None

    def ship_model(self, run: Path, *, name: str, out: Path, produced_by: str, note: str = "",
                   searched: dict[str, Any] | None = None, weights: str | None = None,
                   widths: Sequence[int] | None = None, threads: int | None = None,
                   log: Callable[[str], None] | None = None) -> Path:
        """``mathtune ship NAME RUN`` for a family with :attr:`ships_model`: write the configuration ``out``
        from ``run`` (a ``mathtune train`` folder, a checkpoint or a Tune trial folder of this family) with the
        figures the family measures on its selected checkpoint, at decode ``widths`` with ``threads`` torch
        threads (None: the family's defaults), and with ``weights=WNAME`` ship the model itself as well.
        ``note`` says how the run was chosen, ``searched`` is what the search that found it recorded, ``log``
        takes progress lines. Returns ``out``; bad input raises
        :class:`~mathtune.trainables.errors.ShipError`."""
        raise ShipError(f"{self.name}: its runs ship as configurations, not as a model")

    def ship_ensemble(self, runs: Sequence[Path], *, name: str, produced_by: str, note: str = "",
                      searched: dict[str, Any] | None = None, weights: str | None = None,
                      widths: Sequence[int] | None = None, threads: int | None = None,
                      votes: Sequence[int] | None = None, log: Callable[[str], None] | None = None) -> Path:
        """``mathtune ship NAME RUN1 RUN2 ... --weights WNAME`` for a family with :attr:`ships_model` whose
        models also decode as one ensemble: ship ``runs`` (two or more, the first of this family, each with its
        ``votes``, default one) as one ensemble model ``pretrained:WNAME`` and return its folder. The default: a run of this family ships alone (one-line
        :class:`~mathtune.trainables.errors.ShipError`)."""
        raise ShipError(f"a {self.ships_model or 'configuration'} run of {self.name} ships alone; got {len(runs)} "
                        f"runs")

    def select_members(self, runs: Sequence[Path], *, size: int, width: int = 1, pool: int = 8,
                       threads: int | None = None, log: Callable[[str], None] | None = None
                       ) -> tuple[list[Path], list[int], str]:
        """``mathtune ship NAME RUN... --weights WNAME --select K`` for a family with :attr:`ships_model` whose
        models decode as one ensemble: choose at most ``size`` of ``runs`` on validation (decoded at ``width``,
        among the ``pool`` best by their recorded figures) and return them, their votes in the ensemble and a
        sentence on how they were chosen. The default: the family's models do not form ensembles (one-line
        :class:`~mathtune.trainables.errors.ShipError`)."""
        raise ShipError(f"--select: {self.name} runs do not ship as ensembles, so there are no members to choose")

    def train_figures(self, model: torch.nn.Module, data: Any, config: FamilyConfig,
                      device: torch.device) -> dict[str, float]:
        """What a shipped configuration records of a run's selected checkpoint (``model`` in eval mode) on its own
        training data, beside the validation and test figures: ``train_*`` metrics, e.g. ``train_exact_match``.
        The default, ``{}``: the family records none."""
        return {}

    # ----------------------------------------------------------------- what the reports show
    #: test metrics the report's family summary shows beside the selection metric's test figure, as
    #: (metric, column title) pairs, e.g. ``(("test_char_acc", "test per-char"),)``; reported only, like every test_*
    report_metrics: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def extra_supervision(cls, config: FamilyConfig) -> str | None:
        """What ``config`` trains with beyond the task's own answers, that the reference reports' models did not
        have (e.g. an auxiliary head), as a phrase for ``mathtune reference`` ("a per-image reading head
        (aux_weight)"), or None (the default) for nothing more. A shipped configuration that names some is
        shown beside the best one shipped without it."""
        return None

    def report_views(self, model: torch.nn.Module, data: Any, config: FamilyConfig, device: torch.device, *,
                     name: str, title: str, epoch: Any = None) -> list[ReportView]:
        """The views of a trained model in ``mathtune report`` (``analysis/views.py`` calls it with the best
        checkpoint of each of the best trials, its configuration and its dataset built again): figures, tables
        and notes (:mod:`~mathtune.trainables.reportviews`), e.g. an error analysis of the test answers, images
        the model drew, attention heat maps.

        ``name`` (a file-name-safe slug unique to this model in the report) starts every figure's file name and
        every table's name; ``title`` names the model in headings and figure titles ("EXP split=0.5 trial
        5e57"); ``epoch`` is the checkpoint's epoch. A view that raises becomes a one-line note in the report.

        The default shows :meth:`report_figures` as one view, none when there are none."""
        figures = self.report_figures(model, data, config, device) or {}
        view = ReportView(f"{title}: {self.name} views",
                          figures=[ReportFigure(fig, str(caption), f"{name}-view{i + 1}")
                                   for i, (caption, fig) in enumerate(figures.items())])
        return [view] if view.figures else []

    def report_figures(self, model: torch.nn.Module, data: Any, config: FamilyConfig,
                       device: torch.device) -> dict[str, Any]:
        """Figures of a trained model for the report, {caption: matplotlib Figure}, the simple case of
        :meth:`report_views`; none by default."""
        return {}

    def has_report_views(self) -> bool:
        """Whether the report has views of this family's trained models (so it loads their checkpoints)."""
        cls = type(self)
        return cls.report_views is not Family.report_views or cls.report_figures is not Family.report_figures


def adam(params: Iterable[Any], *, lr: float, eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, or AdamW (decoupled weight decay) when ``weight_decay`` > 0, on PyTorch's fused kernel where the
    parameters' device has one (CPU and CUDA): one pass over each parameter per step instead of a dozen tensor
    operations, about 80% of the optimizer's time and 7-8% of a text2text ``*`` step on one CPU thread
    (docs/benchmarks.md). ``params`` are tensors or parameter groups, as ``torch.optim.Adam`` takes them.

    A run resumed from a checkpoint takes the optimizer's settings, ``fused`` among them, from the checkpoint
    (``load_state_dict``), so it goes on with the kernel it started with and stays exact."""
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)
    extra = {"weight_decay": weight_decay} if weight_decay > 0 else {}
    cls = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
    return cls(params, lr=lr, eps=eps, fused=fused or None, **extra)
