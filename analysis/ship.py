"""Shipping runs: finished runs become a shipped configuration, and a family that ships its model ships it too.

What ``mathtune ship NAME RUN...`` runs; :mod:`.shipped` and ``mathtune reference`` read what it writes.

A shipped configuration (``trainables/configs/NAME.json``) is a ``mathtune train FAMILY --config FILE`` input
that carries the figure its run measured, selected on validation, the data it was measured on, the wall time,
where the runs trained and the command that produced them. Two kinds of run ship:

* :func:`ship_config`: one or more finished runs of the same configuration (several training seeds):
  ``mathtune train`` folders, or Tune trial folders of a search or of its confirmation (``EXP/confirm/trial_*``,
  the confirmed winner's new-seed runs). The figure is the best epoch's ``val_*`` and ``test_*`` metrics, the mean over the runs with
  ``figure.seeds`` holding each run's value, plus the family's train figures (e.g. ``train_exact_match``): each run's
  selected checkpoint (``best/``) scored on its own training queries in eval mode, the reference reports'
  "train" rows. :func:`add_train_figures` adds just these to a file already shipped from the same runs.
* one run of a family that ships its trained model (``Family.ships_model``; a ``mathtune train`` folder, a
  checkpoint or a Tune trial folder, whose model names its family): the family measures the figure on its
  best checkpoint at the decode ``widths`` asked for and, with ``weights=NAME``, ships the model itself inside
  the package, measured again from the file being shipped (``Family.ship_model``). Several such runs with
  ``weights=NAME`` ship as one ensemble model ``pretrained:NAME``, the members decoding as one, measured from
  the shipped files (``Family.ship_ensemble``; no configuration is written for an ensemble).

How a run was executed (torch threads, device) is provenance, not configuration: it stays out of the shipped
``config`` (so ``mathtune train --config FILE`` uses the machine it runs on) and is kept in the file's
``provenance``, each run's records from its start and resumes (:mod:`mathtune.trainables.provenance`).

Every file is written atomically (:mod:`mathtune.trainables.atomic`). Bad input raises :class:`ShipError`
(one line).

Example::

    from mathtune.analysis.ship import ship
    ship("arith-text2text-mul-60", ["runs/mul60-s0", "runs/mul60-s1", "runs/mul60-s2"],
         produced_by="mathtune train arith-text2text --config ... --set seed=N --out runs/mul60-sN", log=print)
    ship("t2m-lstm", ["runs/lstm-ls30"], weights="t2m",
         produced_by="mathtune train t2m-lstm --set ... --out runs/lstm-ls30", log=print)
    ship("t2m-ens", ["runs/lstm-ls30", "runs/frozen30"], weights="t2m-ens",
         produced_by="mathtune train t2m-lstm ... ; mathtune train t2m-bert-frozen ...", log=print)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from mathtune.trainables.base import ConfigError, Family
from mathtune.trainables.checkpoints import best_checkpoint, load_trained, run_checkpoint, state_meta
from mathtune.trainables.errors import MathtuneError, ShipError
from mathtune.trainables.files import CHECKPOINT_FILE
from mathtune.trainables.loop import load_state_file
from mathtune.trainables.provenance import configuration_of, machine_of, provenance_of, shown_path
from mathtune.trainables.records import CONFIGS_DIR, RUN_FILE, RunRecord, ShippedRecord
from mathtune.trainables.registry import family_names, get_family

from .store import EXPERIMENT_FILE, ExperimentError, load_trials, read_budget, read_experiment

__all__ = ["ShipError", "ship", "ship_config", "add_train_figures", "configuration_of"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# what Tune adds to every epoch line of a trial, not the run's figures
TUNE_KEYS = frozenset({"config", "date", "done", "hostname", "node_ip", "pid", "should_checkpoint", "timestamp",
                       "trial_id", "checkpoint_dir_name", "iterations_since_restore", "time_since_restore",
                       "time_this_iter_s", "training_iteration"})

Log = Callable[[str], None]


def _say(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)


def _check_name(name: str, what: str) -> str:
    if not NAME.match(name or "") or name.endswith(".json"):
        raise ShipError(f"{what} {name!r}: expected a plain name of letters, digits, '.', '_' or '-' "
                        f"(e.g. arith-text2text-mul-60), not a path")
    return name


# -- `mathtune train` runs -> a shipped configuration -----------------------------------------------------------


def _is_trial(folder: Path) -> bool:
    """A Tune trial folder of a search or of its confirmation (``params.json`` beside its epoch lines)."""
    return (folder / "params.json").is_file()


def _trial_experiment(folder: Path) -> Path:
    """The experiment a trial folder belongs to: its parent, or for a confirmation run (``EXP/confirm/trial_*``)
    its parent's parent."""
    for exp in (folder.parent, folder.parent.parent):
        if (exp / EXPERIMENT_FILE).is_file():
            return exp
    raise ShipError(f"{folder}: a Tune trial folder outside a mathtune experiment (no {EXPERIMENT_FILE} above it)")


def _trial_run(folder: Path) -> RunRecord:
    """A finished trial of a search (or a confirmation's seed run) read as a run: its selected epoch by the
    experiment's validation metric, its configuration, wall time and the provenance its checkpoint kept."""
    exp = _trial_experiment(folder)
    try:
        meta = read_experiment(exp)
        trial = next((t for t in load_trials(folder.parent) if t.path.resolve() == folder.resolve()), None)
    except ExperimentError as exc:
        raise ShipError(str(exc)) from None
    if trial is None or not trial.history:
        raise ShipError(f"{folder}: the trial reported no epoch")
    if not trial.finished:
        raise ShipError(f"{folder}: the trial stopped after epoch {trial.epochs_run} of {trial.epochs_planned} "
                        f"({trial.status}); only a trial that ran all its epochs ships")
    best = trial.best(meta.metric, meta.mode, decoded=False)
    checkpoint, epoch = best_checkpoint(folder, meta.metric, meta.mode, history=trial.history)
    if best is None or checkpoint is None or epoch != int(best.get("epoch", -1)):
        raise ShipError(f"{folder}: no kept checkpoint of its selected epoch "
                        f"({best.get('epoch') if best else 'none'}; kept: {epoch})")
    family = get_family(meta.family)
    config = family.make_config(trial.config, where=str(folder / "params.json"))
    kept = json.loads((checkpoint / "metrics.json").read_text()) if (checkpoint / "metrics.json").is_file() else {}
    last = trial.history[-1]
    return RunRecord(family=family.name, config=config.as_dict(),
                     best={k: v for k, v in best.items() if k not in TUNE_KEYS},
                     last={k: v for k, v in last.items() if k not in TUNE_KEYS},
                     wall_time_s=float(last.get("time_total_s") or 0.0),
                     data=family.describe_data(family.build_data(config)), provenance=kept.get("provenance"))


def read_run(folder: Path) -> RunRecord:
    """The record of a finished run that selected an epoch: a ``mathtune train`` folder's ``result.json``, or a
    Tune trial folder of a search or of its confirmation (read from its epoch lines and kept checkpoints)."""
    record = _trial_run(folder) if _is_trial(folder) else RunRecord.read(folder, error=ShipError)
    if "epoch" not in record.best:
        raise ShipError(f"{folder / RUN_FILE}: the run selected no epoch (its best is empty)")
    return record


def _best_checkpoint(folder: Path) -> Path | None:
    """The selected epoch's checkpoint: ``best/`` of a ``mathtune train`` folder, or a trial's kept checkpoint
    with the best validation value."""
    if not _is_trial(folder):
        return run_checkpoint(folder, "best")
    meta = read_experiment(_trial_experiment(folder))
    checkpoint, _ = best_checkpoint(folder, meta.metric, meta.mode)
    return checkpoint


def _has_checkpoint(folder: Path) -> bool:
    return _best_checkpoint(folder) is not None


def figure_of(results: Sequence[RunRecord]) -> dict[str, Any]:
    """The best epochs' validation and test figures: the run's, or the mean over runs with each run's value."""
    keys = [k for k, v in results[0].best.items()
            if (k.startswith(("val_", "test_")) or k == "classifier_acc") and isinstance(v, (int, float))]
    if len(results) == 1:
        return {**{k: results[0].best[k] for k in keys}, "epoch": int(results[0].best["epoch"])}
    figure: dict[str, Any] = {k: statistics.fmean(r.best[k] for r in results) for k in keys}
    figure["epoch"] = int(results[0].best["epoch"])
    figure["seeds"] = {k: [r.best[k] for r in results] for k in keys}
    figure["seed_values"] = [r.config.get("seed") for r in results]
    figure["epochs_selected"] = [int(r.best["epoch"]) for r in results]
    return figure


def search_of(exp: Path) -> dict[str, Any]:
    """What a shipped file records of the search that found it: experiment, space, options, budget spent."""
    try:
        record = read_experiment(exp, need=())
    except ExperimentError as exc:
        raise ShipError(f"--search {exc}") from None
    budget = read_budget(exp) or {}
    opts = record.options
    sets = " ".join(f"--set {k}={v}" for k, v in (opts.get("overrides") or {}).items())
    return {"experiment": record.name or exp.name, "space": record.space_name,
            "command": f"mathtune search {record.space_name} {sets}".strip(),
            "budget_s": opts.get("budget"), "spent_s": budget.get("spent_s"), "created": record.created}


def _comparable(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """What runs of one configuration share: ``config`` as the family reads it (a parameter added since the run
    trained takes its default, so an older run and a newer one of the same settings compare equal), without
    the seed and how the run was executed. A configuration the family no longer reads is compared as written."""
    values = {k: v for k, v in config.items() if k != "seed"}
    try:
        values = get_family(family).make_config(values).as_dict()
    except MathtuneError:
        pass
    return {k: v for k, v in configuration_of(values).items() if k != "seed"}


def train_figures(folders: Sequence[Path], family_name: str, *, threads: int = 1) -> list[dict[str, float]]:
    """Each run's selected checkpoint (``best/``) scored on its own training data, the family's ``train_*``
    figures (:meth:`Family.train_figures <mathtune.trainables.base.Family.train_figures>`; ``threads`` torch CPU
    threads while scoring)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for folder in folders:
            family, config, model, data = load_trained(_best_checkpoint(folder), family=family_name,
                                                       device="cpu")
            model.eval()
            out.append(dict(family.train_figures(model, data, config, torch.device("cpu"))))
        return out
    finally:
        torch.set_num_threads(before)


def with_train_figures(figure: dict[str, Any], scored: Sequence[dict[str, float]]) -> dict[str, Any]:
    """``figure`` with the train metrics of ``scored`` (one entry per seed run, in the figure's seed order)."""
    figure = dict(figure)
    for key in (scored[0] if scored else {}):
        values = [s[key] for s in scored]
        figure[key] = statistics.fmean(values)
        if "seeds" in figure:
            figure["seeds"] = {**figure["seeds"], key: values}
    return figure


def _runs_with_checkpoints(runs: Sequence[str | Path]) -> tuple[list[Path], list[RunRecord]]:
    folders = [Path(r) for r in runs]
    results = [read_run(f) for f in folders]
    for folder in folders:
        if not _has_checkpoint(folder):
            raise ShipError(f"{folder}: no best/ checkpoint (the selected epoch's weights, which the train "
                            f"figures are measured with)")
    return folders, results


def ship_config(name: str, runs: Sequence[str | Path], *, produced_by: str, note: str = "",
                search: str | Path | None = None, configs_dir: str | Path | None = None, threads: int = 1,
                log: Log | None = None) -> Path:
    """Write ``configs_dir/NAME.json`` (default ``trainables/configs``) from finished ``mathtune train``
    folders of one configuration (only ``seed``, and how they were executed, may differ); the configuration
    is the first run's (its seed is the one ``mathtune train --config FILE`` retrains). Returns the path."""
    _check_name(name, "NAME")
    if not produced_by:
        raise ShipError("--produced-by is required (the command(s) that trained the runs)")
    if not runs:
        raise ShipError("no run to ship")
    folders, results = _runs_with_checkpoints(runs)
    family = results[0].family
    if any(r.family != family for r in results):
        raise ShipError("the runs belong to different families: "
                        + ", ".join(f"{f} is {r.family}" for f, r in zip(folders, results)))
    base = _comparable(family, results[0].config)
    for r, folder in zip(results[1:], folders[1:]):
        other = _comparable(family, r.config)
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            raise ShipError(f"{folder} differs from {folders[0]} in {', '.join(diff)} (only seed may differ)")
    searched = search_of(Path(search)) if search else None
    provenance = [provenance_of(r.provenance, r.config) for r in results]
    out = Path(configs_dir or CONFIGS_DIR) / f"{name}.json"
    _say(log, f"[mathtune] measuring the train figures of {len(folders)} run(s) ({family})")
    record = ShippedRecord(
        family=family,
        figure=with_train_figures(figure_of(results), train_figures(folders, family, threads=threads)),
        measured_on=results[0].data,
        selected="the epoch with the best validation metric of each run (test reported only)"
                 + (f"; figure = mean over {len(results)} training seeds" if len(results) > 1 else ""),
        wall_time_s=round(statistics.fmean(float(r.wall_time_s or 0.0) for r in results), 1),
        machine=machine_of(provenance),
        provenance=provenance,
        date=dt.date.today().isoformat(),
        produced_by=produced_by,
        train_command=f"mathtune train {family} --config trainables/configs/{name}.json",
        note=note or None,
        search=searched or None,
        config=configuration_of(results[0].config),
    )
    record.write(out)
    _say(log, f"[mathtune] wrote {shown_path(out)}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in record.figure.items() if isinstance(v, float) and k.startswith("test_")))
    return out


def add_train_figures(name: str, runs: Sequence[str | Path], *, configs_dir: str | Path | None = None,
                      threads: int = 1, log: Log | None = None) -> Path:
    """Add the family's train figures (e.g. ``train_exact_match``) to the already shipped ``NAME.json`` from the runs that
    produced it (each run's configuration and selected epoch must be the file's), leaving the rest of the
    file as it is. Returns the path."""
    _check_name(name, "NAME")
    out = Path(configs_dir or CONFIGS_DIR) / f"{name}.json"
    if not out.is_file():
        raise ShipError(f"{name}: no shipped configuration {shown_path(out)} to add train figures to")
    record = ShippedRecord.read(out, error=ShipError)
    figure, family = record.figure, record.family
    epochs = figure.get("epochs_selected", [figure.get("epoch")])
    if not isinstance(epochs, list) or not all(isinstance(e, int) for e in epochs):
        raise ShipError(f"{out}: unreadable shipped configuration (its figure names no selected epoch)")
    folders, results = _runs_with_checkpoints(runs)
    got = {r.family for r in results}
    if got != {family} or len(epochs) != len(results):
        raise ShipError(f"{out} is {family} from {len(epochs)} run(s); got {len(results)} "
                        f"{'/'.join(sorted(got))} run(s)")
    shipped = _comparable(family, record.config)
    for r, folder, epoch in zip(results, folders, epochs):
        cfg = _comparable(family, r.config)
        if cfg != shipped or int(r.best["epoch"]) != int(epoch):
            diff = sorted(k for k in cfg.keys() | shipped.keys() if cfg.get(k) != shipped.get(k))
            raise ShipError(f"{folder} did not produce {out.name} (config differs in {diff or 'nothing'}; "
                            f"selected epoch {r.best['epoch']}, the file's {epoch})")
    scored = train_figures(folders, family, threads=threads)
    if not any(scored):
        raise ShipError(f"{family} records no train figures (Family.train_figures): nothing to add to {out}")
    record = dataclasses.replace(record, figure=with_train_figures(figure, scored))
    record.write(out)
    _say(log, f"[mathtune] {shown_path(out)}: " + ", ".join(f"{k} {record.figure[k]:.4f}" for k in scored[0]))
    return out


# -- one entry point for both --------------------------------------------------------------------------------------


def _model_kinds() -> str:
    """What the families that ship their models call such a run ("text-to-program"), for messages."""
    kinds = []
    for name in family_names():
        try:
            kind = get_family(name).ships_model
        except MathtuneError:  # a registered family that cannot be imported here ships nothing here
            continue
        if kind and kind not in kinds:
            kinds.append(kind)
    return " or ".join(kinds) or "model-shipping"


def _checkpoint_family(run: Path) -> Family | None:
    """The family a checkpoint in ``run`` names in its model state (the folder itself, its ``best/``, or a Tune
    trial folder's latest ``checkpoint_*``), None when there is none or its model names none installed here; a
    damaged checkpoint is a one-line CheckpointError."""
    if (run / CHECKPOINT_FILE).is_file():
        ckpt: Path | None = run
    else:
        trial = sorted(d for d in run.glob("checkpoint_*") if (d / CHECKPOINT_FILE).is_file())
        ckpt = run_checkpoint(run, "best") or (trial[-1] if trial else None)
    if ckpt is None:
        return None
    meta = state_meta(load_state_file(ckpt / CHECKPOINT_FILE).get("model") or {}) or {}
    if not isinstance(meta.get("family"), str):
        return None
    try:
        return get_family(meta["family"])
    except ConfigError:  # a family not installed here ships nothing here
        return None


def _model_family(run: Path) -> Family | None:
    """The family of ``run`` when it ships with its model (``Family.ships_model``), None when it ships as a
    configuration. A folder without ``result.json`` (a checkpoint or a Tune trial folder) ships only the first
    way, by the family its model names."""
    if not run.is_dir():
        raise ShipError(f"{run}: no such run folder")
    if (run / RUN_FILE).is_file():
        family = get_family(read_run(run).family)
        return family if family.ships_model else None
    family = _checkpoint_family(run)
    if family is None or not family.ships_model:
        raise ShipError(f"{run}: not a finished `mathtune train` run (no result.json) nor a {_model_kinds()} "
                        f"checkpoint or trial folder")
    return family


def _selectable_family(run: Path) -> Any:
    """The family of ``run`` when it ships its model, else None (a run ``--select`` leaves out)."""
    try:
        return _model_family(run)
    except ShipError:
        return None


def ship(name: str, runs: Sequence[str | Path], *, produced_by: str | None = None, note: str = "",
         search: str | Path | None = None, configs_dir: str | Path | None = None, train_only: bool = False,
         weights: str | None = None, widths: Sequence[int] | None = None, threads: int | None = None,
         select: int | None = None, select_width: int = 1, select_pool: int = 8, log: Log | None = None) -> Path:
    """``mathtune ship``: the family's ``ship_model`` for a run of a family that ships its model (``widths`` and
    ``threads`` default to the family's), its ``ship_ensemble`` for several such runs (one ensemble model
    ``pretrained:WEIGHTS``), :func:`add_train_figures` with ``train_only`` and :func:`ship_config` otherwise
    (``threads`` default 1). With ``select=K`` the family's ``select_members`` first chooses at most K of the runs
    on validation (at beam ``select_width``, among the ``select_pool`` best recorded), and how is recorded with
    ``note``. Returns the shipped configuration's path (an ensemble's: its weights folder)."""
    _check_name(name, "NAME")
    runs = [Path(r) for r in runs]
    votes: list[int] | None = None  # an ensemble's members' votes, from --select
    if not runs:
        raise ShipError("no run to ship")
    if threads is not None and threads < 1:
        raise ShipError(f"--threads {threads}: at least 1")
    if select is not None:
        if weights is None:
            raise ShipError("--select chooses the members of one shipped model: --weights WNAME names it")
        family = next((f for f in map(_selectable_family, runs) if f is not None), None)
        if family is None:
            raise ShipError(f"--select: none of the {len(runs)} runs is a {_model_kinds()} run, checkpoint or "
                            f"trial folder")
        if not produced_by:
            raise ShipError("--produced-by is required (the command that trained the runs, as a user would type it)")
        runs, votes, how = family.select_members(runs, size=select, width=select_width, pool=select_pool,
                                                 threads=threads, log=log)
        note = f"{note}; {how}" if note else how
    family = _model_family(runs[0])
    if family is not None:
        if train_only:
            raise ShipError(f"--train-only: {runs[0]} is a {family.ships_model} run, which has no train figures")
        if weights is not None:
            _check_name(weights, "--weights")
        if not produced_by:
            raise ShipError("--produced-by is required (the command that trained the run, as a user would type it)")
        searched = search_of(Path(search)) if search else None
        if len(runs) > 1:  # one ensemble model of runs whose models decode as one
            for run in runs[1:]:
                if _model_family(run) is None:
                    raise ShipError(f"{run}: a {read_run(run).family} run, which ships as a configuration; only "
                                    f"{family.ships_model} runs ship together, as one ensemble model")
            return family.ship_ensemble(runs, name=name, produced_by=produced_by, note=note, searched=searched,
                                        weights=weights, widths=widths, threads=threads, votes=votes, log=log)
        return family.ship_model(runs[0], name=name, out=Path(configs_dir or CONFIGS_DIR) / f"{name}.json",
                                 produced_by=produced_by, note=note, searched=searched, weights=weights,
                                 widths=widths, threads=threads, log=log)
    for given, option in ((weights, f"--weights {weights}"), (widths, "--widths")):
        if given:
            raise ShipError(f"{option}: only a run of a family that ships its model ({_model_kinds()}) is measured "
                            f"at decode widths and ships its model; {runs[0]} is {read_run(runs[0]).family}, whose "
                            f"runs ship as a configuration")
    if train_only:
        return add_train_figures(name, runs, configs_dir=configs_dir, threads=threads or 1, log=log)
    return ship_config(name, runs, produced_by=produced_by or "", note=note, search=search,
                       configs_dir=configs_dir, threads=threads or 1, log=log)
