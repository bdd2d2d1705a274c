"""The one training loop every family shares; runs with or without Ray.

Example::

    from mathtune.trainables import get_family, train
    fam = get_family("arith-text2text")
    cfg = fam.make_config({"split": 0.5, "epochs": 2, "batch_size": 64})
    result = train(fam, cfg, checkpoint_dir="runs/t2t")   # resumes if runs/t2t holds a checkpoint
    print(result["best"]["val_exact_match"])
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.optim.swa_utils import AveragedModel

from .atomic import atomic_folder, recover_folder
from .base import Family, FamilyConfig
from .device import bf16_autocast_works, resolve_device  # noqa: F401  (re-exported)
from .errors import CheckpointError
from .files import CHECKPOINT_FILE
from .metrics import is_better, test_metric_for
from .provenance import collect as collect_provenance

__all__ = ["train", "save_checkpoint", "load_checkpoint", "resolve_device", "set_threads", "eta_seconds",
           "format_duration", "CHECKPOINT_FILE", "CheckpointError"]

Reporter = Callable[[dict[str, Any], str], None]


def set_threads(config: FamilyConfig, cpus: float | None = None) -> int:
    """Match torch's intra-op threads to the CPUs this run owns (avoids oversubscription)."""
    n = int(config.threads or 0) or (max(1, int(cpus)) if cpus else os.cpu_count() or 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def averaged_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s parameters and buffers (batch-norm statistics included),
    for ``AveragedModel.update_parameters`` after every optimizer step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average forgets the
    initial weights within the first few hundred steps. Without it the starting values keep a share of
    ``decay ** n``, which matters for batch-norm variances that start at 1 and train down to 1e-3: in an
    img2text run at 0.999 the averaged first variance was still 16 times the trained one after 4,400 steps
    (21 epochs), and the averaged model read no digit image right. Integer buffers (batch-norm step counts)
    take the current value.
    """
    return _averaging(model, lambda n: 1.0 - min(decay, (1.0 + n) / (10.0 + n)))


def uniform_average(model: torch.nn.Module) -> AveragedModel:
    """A uniform running mean of ``model``'s parameters and floating buffers, for
    ``AveragedModel.update_parameters`` once per epoch (``average_last``): after ``n`` updates it holds the mean
    of the ``n`` states given; integer buffers take the current value, as in :func:`averaged_model`."""
    return _averaging(model, lambda n: 1.0 / (n + 1.0))


def _averaging(model: torch.nn.Module, weight: Callable[[float], float]) -> AveragedModel:
    """An ``AveragedModel`` of ``model``'s parameters and buffers whose update moves each floating tensor
    ``weight(n)`` of the way to the current value after ``n`` updates (the first update copies) and copies the
    integer ones."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        w = weight(float(n_averaged))
        floating = torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])
        for a, c in zip(averaged, current):
            if floating:
                a.lerp_(c, w)
            else:
                a.copy_(c)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def save_checkpoint(directory: str | os.PathLike, *, model: torch.nn.Module, optimizer, scheduler, epoch: int,
                    generator: torch.Generator, config: FamilyConfig, history: list[dict[str, Any]],
                    best: dict[str, Any] | None, extra: dict[str, Any] | None = None,
                    ema: AveragedModel | None = None, average: AveragedModel | None = None,
                    averaged: bool = False) -> Path:
    """Write a checkpoint folder: ``state.pt`` (tensors), ``config.json`` (``config.as_dict()``), ``metrics.json``.

    ``state["model"]`` holds the weights the epoch's row was measured on: ``model``'s own, or with ``ema`` (a run
    with ``ema`` > 0) the exponential average's, or with ``averaged`` (the last epoch of a run with
    ``average_last`` whose average won) the average's; when those are not ``model``'s, ``state["train_model"]``
    holds the weights the optimizer steps. ``state["ema"]`` is the exponential average's own state and
    ``state["average"]`` the running average of the last epochs' weights (with its ``n_averaged``), for a run
    inside its ``average_last`` epochs: what resuming needs.

    Filled in a temporary sibling and swapped in (:func:`~mathtune.trainables.atomic.atomic_folder`): a crash
    never leaves half a checkpoint, and at every moment the previous or the new one is complete, where a
    resumed run (:func:`train`) and readers find it.
    """
    measured = average.module if averaged and average is not None else model if ema is None else ema.module
    state = {"model": measured.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "generator": generator.get_state()}
    if measured is not model:
        state["train_model"] = model.state_dict()
    if ema is not None:
        state["ema"] = ema.state_dict()
    if average is not None:
        state["average"] = average.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    with atomic_folder(directory) as tmp:
        torch.save(state, tmp / CHECKPOINT_FILE)
        (tmp / "config.json").write_text(json.dumps(config.as_dict(), indent=1, sort_keys=True))
        (tmp / "metrics.json").write_text(json.dumps({"epoch": epoch, "history": history, "best": best,
                                                      **(extra or {})}, indent=1))
    return Path(directory)


def load_state_file(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's tensors (``state.pt``), loaded on the CPU with ``weights_only=True``: the one place
    mathtune reads a checkpoint file. Pickled objects other than tensors and plain containers are refused,
    never executed; a damaged file raises :class:`CheckpointError` (one line naming it)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a tensor checkpoint (damaged, or holding pickled objects that "
                              f"weights_only=True refuses to load)") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        raise CheckpointError(f"{path}: not a readable checkpoint, damaged or truncated ({detail})") from None


def load_checkpoint(directory: str | os.PathLike, *, need_metrics: bool = True
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(state, config, metrics) from a checkpoint folder; tensors loaded with ``weights_only=True``.

    A missing, damaged or foreign file raises :class:`CheckpointError` (one line naming it); pickled
    objects other than tensors and plain containers are refused, never executed. ``need_metrics=False``
    accepts a folder without ``metrics.json`` (a model alone: ``state.pt`` and ``config.json``; metrics ``{}``).
    """
    directory = Path(directory)
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a mathtune checkpoint (no {CHECKPOINT_FILE})")
    state = load_state_file(path)
    files: dict[str, Any] = {}
    for name in ("config.json", "metrics.json"):
        if not (directory / name).is_file():
            if name == "metrics.json" and not need_metrics:
                files[name] = {}
                continue
            raise CheckpointError(f"{directory}: not a complete mathtune checkpoint (no {name})")
        try:
            files[name] = json.loads((directory / name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{directory / name}: not valid JSON ({exc})") from None
        if not isinstance(files[name], dict):
            raise CheckpointError(f"{directory / name}: expected a JSON object, got {type(files[name]).__name__}")
    return state, files["config.json"], files["metrics.json"]


def train(family: Family, config: FamilyConfig, *, data: Any = None, checkpoint_dir: str | os.PathLike | None = None,
          resume_from: str | os.PathLike | None = None, report: Reporter | None = None,
          progress: Callable[[str], None] | None = print, cpus: float | None = None) -> dict[str, Any]:
    """Train ``family`` on ``config`` (its typed config, from ``family.make_config``) and return ``{"history",
    "best", "last", "config", ...}``.

    * ``data``: a prebuilt dataset (as from ``family.build_data``); built here when None.
    * ``checkpoint_dir``: write ``last/`` and ``best/`` checkpoints there each epoch; when it already
      holds ``last/``, training resumes from it (unless ``resume_from`` is given).
    * ``resume_from``: a checkpoint folder to continue from.
    * ``report(metrics, checkpoint_path)``: called after each epoch (the Tune wrapper reports to Tune).
    * ``progress``: called with one line per epoch (None for silence).

    The selection metric is ``family.metric`` on validation data; test metrics are recorded for
    reporting only.

    With ``average_last`` K > 0, the weights evaluated at the end of each of the last K epochs (the exponential
    average's with ``ema``) are averaged uniformly, and after the last epoch the average is evaluated as an epoch
    is (``final=True``). The last epoch's row holds the average's figures, ``averaged_last`` K, and its checkpoint
    the average's weights when the average's validation metric beats the last epoch's own weights'; otherwise
    the epoch's own figures and weights with ``averaged_last`` 0. Either way the row carries both evaluations as
    ``averaged_*`` and ``unaveraged_*``. So every epoch is one row and one report (Tune, ASHA, the searcher's
    intermediate values and every reader of ``epoch`` see the epochs they always saw), and the run's best is the
    average exactly when it beats every epoch on validation. The running average is in every checkpoint of the
    last K epochs, so a run stopped among them resumes to the same result.
    """
    if not isinstance(config, family.config_type()):
        raise TypeError(f"train: config must be {family.name}'s config record (family.make_config(...)), not "
                        f"{type(config).__name__}")
    threads = set_threads(config, cpus)
    device = resolve_device(config)
    provenance = [collect_provenance(threads=threads, device=str(device))]
    if data is None:
        data = family.build_data(config)
    torch.manual_seed(config.seed)
    model = family.build_model(config, data).to(device)
    optimizer = family.optimizer(model, config)
    scheduler = family.scheduler(optimizer, config)
    generator = torch.Generator().manual_seed(config.seed)
    ema = averaged_model(model, config.ema) if config.ema else None
    average: AveragedModel | None = None  # the running mean of the last average_last epochs' weights, from their first
    first_averaged = config.epochs - config.average_last + 1 if config.average_last else config.epochs + 1
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch = 0

    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint_dir is not None:  # a swap of last/ or best/ cut short by a kill: its complete folder back in place
        for name in ("last", "best"):
            recover_folder(checkpoint_dir / name)
    if resume_from is None and checkpoint_dir is not None and (checkpoint_dir / "last" / CHECKPOINT_FILE).is_file():
        resume_from = checkpoint_dir / "last"
    if resume_from is not None:
        state, _, saved = load_checkpoint(resume_from)
        model.load_state_dict(state.get("train_model", state["model"]))
        if ema is not None:
            if "ema" not in state:
                raise CheckpointError(f"{resume_from}: written without ema, so it cannot resume with "
                                      f"ema={config.ema} (resume with ema=0 or start a new --out)")
            ema.load_state_dict(state["ema"])
        start_epoch = int(state["epoch"])
        if first_averaged <= start_epoch <= config.epochs:  # among the epochs averaged: their mean so far
            done = start_epoch - first_averaged + 1
            if "average" in state and int(state["average"]["n_averaged"]) == done:
                average = uniform_average(ema.module if ema is not None else model)
                average.load_state_dict(state["average"])
            elif start_epoch < config.epochs:
                raise CheckpointError(f"{resume_from}: holds no average of epochs {first_averaged}-{start_epoch}, so "
                                      f"it cannot resume with average_last={config.average_last} and epochs="
                                      f"{config.epochs} (resume with the settings it was written with, or start a "
                                      f"new --out)")
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        history, best = saved.get("history", []), saved.get("best")
        provenance = list(saved.get("provenance") or []) + provenance  # earlier sessions first
        if progress:
            progress(f"[{family.name}] resumed from {resume_from} after epoch {start_epoch}")
    if resume_from is None:
        line = family.warm_start(model, config)
        if progress and line:
            progress(f"[{family.name}] {line}")
    num_params = sum(p.numel() for p in model.parameters())
    if progress and start_epoch == 0:
        progress(f"[{family.name}] {family.describe_data(data)}; {num_params:,} parameters on {device}")

    metric, mode = family.metric, family.mode
    per_epoch, warm_steps = warmup_steps(family, data, config)
    # a finished run read back: its last row's model is the average when that row says so
    averaged = bool(average is not None and start_epoch == config.epochs and history and
                    history[-1].get("averaged_last"))
    for epoch in range(start_epoch + 1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, n_batches, n_samples = 0.0, 0, 0
        for batch in family.batches(data, config, generator, device):
            optimizer.zero_grad(set_to_none=True)
            loss = family.loss(model, batch, config, generator)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            step = (epoch - 1) * per_epoch + n_batches  # steps before this one (a resumed run counts from its epoch)
            if step < warm_steps:
                warmed_step(optimizer, (step + 1) / warm_steps)
            else:
                optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            total += float(loss.detach())
            n_batches += 1
            n_samples += _batch_len(batch)
        train_time = time.perf_counter() - t0
        train_loss = total / max(1, n_batches)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{family.name}: training loss became {train_loss} in epoch {epoch} "
                                     f"(lr {config.lr}); the trial stops here")
        if scheduler is not None:
            scheduler.step()
        evaluated = ema.module if ema is not None else model
        evaluated.eval()
        final = epoch == config.epochs
        metrics = family.evaluate(evaluated, data, config, device, final=final)
        averaged, averaging = False, {}
        if epoch >= first_averaged:
            if average is None:
                average = uniform_average(evaluated)
            average.update_parameters(evaluated)
            if final:
                average.module.eval()
                of_average = family.evaluate(average.module, data, config, device, final=True)
                averaged = is_better(of_average.get(metric), metrics.get(metric), mode)
                averaging = {"averaged_last": config.average_last if averaged else 0,
                             **{f"averaged_{k}": v for k, v in of_average.items()},
                             **{f"unaveraged_{k}": v for k, v in metrics.items()}}
                if averaged:
                    metrics = of_average
        metrics = {"epoch": epoch, "train_loss": train_loss, **metrics,
                   "train_samples_per_s": n_samples / train_time if train_time > 0 else 0.0,
                   "epoch_time_s": time.perf_counter() - t0, "num_params": num_params, **averaging,
                   "timestamp": int(time.time())}  # when the epoch ended, as Tune stamps a result
        improved = metric in metrics and is_better(metrics[metric], best.get(metric) if best else None, mode)
        if improved:
            best = dict(metrics)
        history.append(metrics)
        metrics = {**metrics, f"best_{metric}": best.get(metric) if best else float("nan"),
                   "best_epoch": best["epoch"] if best else 0}
        ckpt_path = _write_checkpoints(checkpoint_dir, model, optimizer, scheduler, epoch, generator, config,
                                       history, best, improved, ema, extra={"provenance": provenance},
                                       average=average, averaged=averaged)
        if progress:
            progress(_progress_line(family, epoch, config.epochs, metrics, history, config.average_last))
        if report is not None:
            if ckpt_path is None:
                with tempfile.TemporaryDirectory(prefix="mathtune-ckpt-") as tmp:
                    save_checkpoint(Path(tmp) / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler,
                                    epoch=epoch, generator=generator, config=config, history=history, best=best,
                                    ema=ema, extra={"provenance": provenance}, average=average,
                                    averaged=averaged)
                    report(metrics, str(Path(tmp) / "ckpt"))
            else:
                report(metrics, str(ckpt_path))
    measured = average.module if averaged else ema.module if ema is not None else model
    return {"history": history, "best": best, "last": history[-1] if history else None, "config": config,
            "model": measured, "data": data, "resumed_after": start_epoch, "provenance": provenance}


def warmup_steps(family: Family, data: Any, config: FamilyConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, warm-up steps) of a run: ``warmup`` x ``epochs`` x steps per epoch, rounded,
    at least one step when ``warmup`` > 0; (0, 0) without warm-up (the family is not asked)."""
    if not config.warmup:
        return 0, 0
    per_epoch = int(family.steps_per_epoch(data, config))
    return per_epoch, max(1, round(config.warmup * config.epochs * per_epoch))


def warmed_step(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """One ``optimizer.step()`` at ``factor`` times every parameter group's lr, the groups' lrs put back after
    it: the scheduler's lrs and the checkpointed optimizer state are those of a run without warm-up, so the
    schedule (chained or not) goes on unchanged and a resumed run recomputes the factor from its step count."""
    lrs = [group["lr"] for group in optimizer.param_groups]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr * factor
    try:
        optimizer.step()
    finally:
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr


def _write_checkpoints(checkpoint_dir, model, optimizer, scheduler, epoch, generator, config, history, best,
                       improved, ema=None, extra=None, average=None, averaged=False) -> Path | None:
    if checkpoint_dir is None:
        return None
    last = save_checkpoint(checkpoint_dir / "last", model=model, optimizer=optimizer, scheduler=scheduler,
                           epoch=epoch, generator=generator, config=config, history=history, best=best, ema=ema,
                           extra=extra, average=average, averaged=averaged)
    if improved:
        save_checkpoint(checkpoint_dir / "best", model=model, optimizer=optimizer, scheduler=scheduler,
                        epoch=epoch, generator=generator, config=config, history=history, best=best, ema=ema,
                        extra=extra, average=average, averaged=averaged)
    return last


def _batch_len(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return int(first.shape[0]) if hasattr(first, "shape") else 1


def eta_seconds(history: list[dict[str, Any]], epochs: int, *, recent: int = 3) -> float:
    """Seconds left in a run: epochs still to go x the mean time of the last ``recent`` epochs (0 when done)."""
    if not history:
        return float("nan")
    left = max(0, epochs - int(history[-1]["epoch"]))
    times = [float(h["epoch_time_s"]) for h in history[-recent:] if "epoch_time_s" in h]
    return left * (sum(times) / len(times)) if times else float("nan")


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _progress_line(family: Family, epoch: int, epochs: int, m: dict[str, Any],
                   history: list[dict[str, Any]] | None = None, average_last: int = 0) -> str:
    parts = [f"[{family.name}] epoch {epoch}/{epochs}", f"train_loss {m['train_loss']:.4f}"]
    for key in (family.metric, test_metric_for(family.metric), "val_char_acc", "test_char_acc"):
        if key in m and isinstance(m[key], (int, float)):
            parts.append(f"{key} {m[key]:.4f}")
    if "averaged_last" in m:
        own, mean = m.get(f"unaveraged_{family.metric}"), m.get(f"averaged_{family.metric}")
        figures = f"{mean:.4f} against the epoch's own {own:.4f}" if isinstance(mean, (int, float)) and \
            isinstance(own, (int, float)) else "no figure"
        parts.append(f"average of the last {average_last} epochs: {figures}, "
                     f"{'taken' if m['averaged_last'] else 'not taken'}")
    if m.get("best_epoch"):
        parts.append(f"best {m[f'best_{family.metric}']:.4f} (epoch {m['best_epoch']})")
    parts.append(f"{m['train_samples_per_s']:.0f} samples/s, {m['epoch_time_s']:.1f} s")
    if history and epoch < epochs:
        left = eta_seconds(history, epochs)
        finish = time.strftime("%H:%M", time.localtime(time.time() + left)) if math.isfinite(left) else "?"
        parts.append(f"ETA {format_duration(left)} (about {finish})")
    return " | ".join(parts)
