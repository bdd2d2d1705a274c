"""Shipping runs: finished runs become a shipped configuration, and a text-to-program run its model too.

What ``mathtune ship NAME RUN...`` runs; :mod:`.shipped` and ``mathtune reference`` read what it writes.

A shipped configuration (``trainables/configs/NAME.json``) is a ``mathtune train FAMILY --config FILE`` input
that carries the figure its run measured, selected on validation, the data it was measured on, the wall time,
where the runs trained and the command that produced them. Two kinds of run ship:

* :func:`ship_config`: one or more ``mathtune train`` folders of the same configuration (several training
  seeds). The figure is the best epoch's ``val_*`` and ``test_*`` metrics, the mean over the runs with
  ``figure.seeds`` holding each run's value, plus ``train_char_acc`` and ``train_exact_match``: each run's
  selected checkpoint (``best/``) scored on its own training queries in eval mode, the reference reports'
  "train" rows. :func:`add_train_figures` adds just these to a file already shipped from the same runs.
* :func:`ship_text2program`: one text-to-program run (a ``mathtune train`` folder, a checkpoint or a Tune trial
  folder). The figure is its best epoch's greedy dev figures and dev execution accuracy and exact match at
  each beam width, decoded from its best checkpoint; with ``weights=NAME`` the model itself ships inside the
  package as ``pretrained:NAME`` (:mod:`mathtune.trainables.t2m.shipped`), measured again from the file being
  shipped.

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
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from mathtune.trainables.atomic import atomic_folder, read_json, write_text
from mathtune.trainables.checkpoints import load_trained, run_checkpoint
from mathtune.trainables.errors import CheckpointError, MathtuneError
from mathtune.trainables.files import CHECKPOINT_FILE
from mathtune.trainables.loop import load_checkpoint, load_state_file, set_threads
from mathtune.trainables.provenance import EXECUTION_KEYS, describe
from mathtune.trainables.registry import get_family

from .shipped import CONFIGS_DIR

__all__ = ["ShipError", "DEFAULT_WIDTHS", "ship", "ship_config", "add_train_figures",
           "ship_text2program", "configuration_of"]

ROOT = Path(__file__).resolve().parents[1]
RESULT_FILE = "result.json"
DEFAULT_WIDTHS = (1, 5, 10)
FIRST = 200  # a shipped model is also measured on the first FIRST dev problems: the figure its test checks
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NO_PROVENANCE = "not recorded (the runs trained before runs recorded their machine)"

Log = Callable[[str], None]


class ShipError(MathtuneError, ValueError):
    """Runs that cannot ship as asked (a missing folder or checkpoint, differing runs, an unknown name)."""


def _say(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)


def _check_name(name: str, what: str) -> str:
    if not NAME.match(name or "") or name.endswith(".json"):
        raise ShipError(f"{what} {name!r}: expected a plain name of letters, digits, '.', '_' or '-' "
                        f"(e.g. arith-text2text-mul-60), not a path")
    return name


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _write(path: Path, payload: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(payload, indent=1, default=str) + "\n")


def configuration_of(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration without how it was executed (:data:`EXECUTION_KEYS`): what a shipped file pins."""
    return {k: v for k, v in config.items() if k not in EXECUTION_KEYS}


def provenance_of(entries: Sequence[dict[str, Any]] | None, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's provenance records; a run that trained before runs recorded them gets one record with the
    threads and device its configuration asked for, so a shipped file never loses how its run was executed."""
    if entries:
        return list(entries)
    asked = {k: config[k] for k in EXECUTION_KEYS if k in config}
    return [{**asked, "recorded": "from the run's configuration (it trained before runs recorded their machine; "
                                  "threads 0: as many as the machine had)"}] if asked else []


def machine_of(provenance: Sequence[Sequence[dict[str, Any]]]) -> str:
    """Where the runs trained, from what each recorded when it started (and at each resume), not the machine
    that ships them."""
    lines = list(dict.fromkeys(describe(e) for run in provenance for e in run if "cpu" in e))
    if lines:
        return "; ".join(lines)
    threads = sorted({int(e["threads"]) for run in provenance for e in run if e.get("threads")})
    return NO_PROVENANCE + (f", {'/'.join(map(str, threads))} torch thread(s)" if threads else "")


# -- `mathtune train` runs -> a shipped configuration -----------------------------------------------------------


def read_run(folder: Path) -> dict[str, Any]:
    """``result.json`` of a finished ``mathtune train`` folder."""
    if not folder.is_dir():
        raise ShipError(f"{folder}: no such run folder")
    try:
        result = read_json(folder / RESULT_FILE)
    except (OSError, ValueError) as exc:
        detail = "no result.json" if isinstance(exc, FileNotFoundError) else str(exc).splitlines()[0]
        raise ShipError(f"{folder}: not a finished `mathtune train` run ({detail})") from None
    if not isinstance(result, dict) or not {"family", "config", "best"} <= result.keys():
        raise ShipError(f"{folder / RESULT_FILE}: not a `mathtune train` summary (needs family, config and best)")
    return result


def _has_checkpoint(folder: Path) -> bool:
    return run_checkpoint(folder, "best") is not None


def figure_of(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best epochs' validation and test figures: the run's, or the mean over runs with each run's value."""
    keys = [k for k, v in results[0]["best"].items()
            if (k.startswith(("val_", "test_")) or k == "classifier_acc") and isinstance(v, (int, float))]
    if len(results) == 1:
        return {**{k: results[0]["best"][k] for k in keys}, "epoch": int(results[0]["best"]["epoch"])}
    figure: dict[str, Any] = {k: statistics.fmean(r["best"][k] for r in results) for k in keys}
    figure["epoch"] = int(results[0]["best"]["epoch"])
    figure["seeds"] = {k: [r["best"][k] for r in results] for k in keys}
    figure["seed_values"] = [r["config"].get("seed") for r in results]
    figure["epochs_selected"] = [int(r["best"]["epoch"]) for r in results]
    return figure


def search_of(exp: Path) -> dict[str, Any]:
    """What a shipped file records of the search that found it: experiment, space, options, budget spent."""
    try:
        record = read_json(exp / "mathtune.json")
    except (OSError, ValueError) as exc:
        raise ShipError(f"--search {exp}: not a mathtune experiment ({str(exc).splitlines()[0]})") from None
    try:
        budget = read_json(exp / "budget.json")
    except (OSError, ValueError):
        budget = {}
    opts = record.get("options") or {}
    sets = " ".join(f"--set {k}={v}" for k, v in (opts.get("overrides") or {}).items())
    return {"experiment": record.get("name", exp.name), "space": record.get("space_name"),
            "command": f"mathtune search {record.get('space_name')} {sets}".strip(),
            "budget_s": opts.get("budget"), "spent_s": budget.get("spent_s"), "created": record.get("created")}


def train_figures(folders: Sequence[Path], family_name: str, *, threads: int = 1) -> list[dict[str, float]]:
    """Each run's selected checkpoint (``best/``) scored on its training queries: train_char_acc,
    train_exact_match (``threads`` torch CPU threads while scoring)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for folder in folders:
            family, config, model, data = load_trained(run_checkpoint(folder, "best"), family=family_name,
                                                       device="cpu")
            if not hasattr(family, "part_metrics"):
                raise ShipError(f"{family_name} has no per-part metrics, so its train figures cannot be measured")
            scored = family.part_metrics(model, data, config, "train", torch.device("cpu"))
            out.append({k: scored[k] for k in ("train_char_acc", "train_exact_match")})
        return out
    finally:
        torch.set_num_threads(before)


def with_train_figures(figure: dict[str, Any], scored: Sequence[dict[str, float]]) -> dict[str, Any]:
    """``figure`` with the train metrics of ``scored`` (one entry per seed run, in the figure's seed order)."""
    figure = dict(figure)
    for key in ("train_char_acc", "train_exact_match"):
        values = [s[key] for s in scored]
        figure[key] = statistics.fmean(values)
        if "seeds" in figure:
            figure["seeds"] = {**figure["seeds"], key: values}
    return figure


def _runs_with_checkpoints(runs: Sequence[str | Path]) -> tuple[list[Path], list[dict[str, Any]]]:
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
    family = results[0]["family"]
    if any(r["family"] != family for r in results):
        raise ShipError("the runs belong to different families: "
                        + ", ".join(f"{f} is {r['family']}" for f, r in zip(folders, results)))
    base = configuration_of({k: v for k, v in results[0]["config"].items() if k != "seed"})
    for r, folder in zip(results[1:], folders[1:]):
        other = configuration_of({k: v for k, v in r["config"].items() if k != "seed"})
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            raise ShipError(f"{folder} differs from {folders[0]} in {', '.join(diff)} (only seed may differ)")
    searched = search_of(Path(search)) if search else None
    provenance = [provenance_of(r.get("provenance"), r["config"]) for r in results]
    out = Path(configs_dir or CONFIGS_DIR) / f"{name}.json"
    _say(log, f"[mathtune] measuring the train figures of {len(folders)} run(s) ({family})")
    payload = {
        "family": family,
        "figure": with_train_figures(figure_of(results), train_figures(folders, family, threads=threads)),
        "measured_on": results[0].get("data", ""),
        "selected": "the epoch with the best validation metric of each run (test reported only)"
                    + (f"; figure = mean over {len(results)} training seeds" if len(results) > 1 else ""),
        "wall_time_s": round(statistics.fmean(float(r.get("wall_time_s") or 0.0) for r in results), 1),
        "machine": machine_of(provenance),
        "provenance": provenance,
        "date": dt.date.today().isoformat(),
        "produced_by": produced_by,
        "train_command": f"mathtune train {family} --config trainables/configs/{name}.json",
        **({"note": note} if note else {}),
        **({"search": searched} if searched else {}),
        "config": configuration_of(results[0]["config"]),
    }
    _write(out, payload)
    _say(log, f"[mathtune] wrote {_shown(out)}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in payload["figure"].items() if isinstance(v, float) and k.startswith("test_")))
    return out


def add_train_figures(name: str, runs: Sequence[str | Path], *, configs_dir: str | Path | None = None,
                      threads: int = 1, log: Log | None = None) -> Path:
    """Add ``train_char_acc`` and ``train_exact_match`` to the already shipped ``NAME.json`` from the runs that
    produced it (each run's configuration and selected epoch must be the file's), leaving the rest of the
    file as it is. Returns the path."""
    _check_name(name, "NAME")
    out = Path(configs_dir or CONFIGS_DIR) / f"{name}.json"
    if not out.is_file():
        raise ShipError(f"{name}: no shipped configuration {_shown(out)} to add train figures to")
    try:
        payload = read_json(out)
        figure, family = payload["figure"], payload["family"]
        epochs = figure.get("epochs_selected", [figure["epoch"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ShipError(f"{out}: not a shipped configuration ({type(exc).__name__}: {exc})") from None
    folders, results = _runs_with_checkpoints(runs)
    got = {r["family"] for r in results}
    if got != {family} or len(epochs) != len(results):
        raise ShipError(f"{out} is {family} from {len(epochs)} run(s); got {len(results)} "
                        f"{'/'.join(sorted(got))} run(s)")
    ignored = ("seed", *EXECUTION_KEYS)
    shipped = {k: v for k, v in payload["config"].items() if k not in ignored}
    for r, folder, epoch in zip(results, folders, epochs):
        cfg = {k: v for k, v in r["config"].items() if k not in ignored}
        if cfg != shipped or int(r["best"]["epoch"]) != int(epoch):
            diff = sorted(k for k in cfg.keys() | shipped.keys() if cfg.get(k) != shipped.get(k))
            raise ShipError(f"{folder} did not produce {out.name} (config differs in {diff or 'nothing'}; "
                            f"selected epoch {r['best']['epoch']}, the file's {epoch})")
    payload["figure"] = with_train_figures(figure, train_figures(folders, family, threads=threads))
    _write(out, payload)
    _say(log, f"[mathtune] {_shown(out)}: train_char_acc {payload['figure']['train_char_acc']:.4f}, "
              f"train_exact_match {payload['figure']['train_exact_match']:.4f}")
    return out


# -- a text-to-program run -> a shipped configuration (and the model as pretrained:NAME) --------------------------


def _measure(family, config, model, dev: Path, widths: Sequence[int], *, limit: int = 0, label: str = "dev",
             log: Log | None = None) -> dict[str, dict[str, Any]]:
    from mathtune.trainables.t2m.evaluation import evaluate_file  # a family's own module: imported when used

    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, dev, widths=widths, limit=limit)
    wall = time.perf_counter() - t0
    for w, r in out.scores.items():
        _say(log, f"[mathtune] {label:14s} beam {w:3d}: execution {r.execution_accuracy:6.2f}%  exact match "
                  f"{r.exact_match:6.2f}%  ({r.n} problems)")
    _say(log, f"[mathtune] {label:14s} decoded in {wall:.1f} s")
    return {str(w): {"exec_acc": round(r.execution_accuracy, 2), "exact_match": round(r.exact_match, 2),
                     "problems": r.n} for w, r in out.scores.items()}


def _program_checkpoint(run: Path) -> Path:
    """The checkpoint to ship of a text-to-program run; a one-line ShipError for anything else."""
    from mathtune.trainables.t2m.evaluation import find_checkpoint  # a family's own module: imported when used

    if not run.is_dir():
        raise ShipError(f"{run}: no such run folder")
    try:
        ckpt = find_checkpoint(run)
    except CheckpointError:
        ckpt = None
    if ckpt is None and (run / RESULT_FILE).is_file():
        raise ShipError(f"{run}: no best/ checkpoint to ship (the selected epoch's weights)")
    if ckpt is None or "meta_json" not in (load_state_file(ckpt / CHECKPOINT_FILE).get("model") or {}):
        raise ShipError(f"{run}: not a finished `mathtune train` run (no result.json) nor a text-to-program "
                        f"checkpoint or trial folder")
    return ckpt


def ship_text2program(name: str, run: str | Path, *, produced_by: str, note: str = "",
                      search: str | Path | None = None, weights: str | None = None,
                      widths: Sequence[int] = DEFAULT_WIDTHS, threads: int = 2,
                      configs_dir: str | Path | None = None, log: Log | None = None) -> Path:
    """Write ``configs_dir/NAME.json`` from a text-to-program run: its configuration, its best epoch's greedy
    dev figures and dev execution accuracy and exact match at each of ``widths`` decoded from its best
    checkpoint (``threads`` torch threads on the CPU), the data, wall time and ``produced_by``; ``note`` says how
    the run was chosen (recorded as ``selected``).

    With ``weights=WNAME`` the best checkpoint also ships in float16 as ``pretrained:WNAME``
    (``trainables/weights/WNAME/``), loaded back the way ``mathtune evaluate pretrained:WNAME`` loads it and
    scored on dev at ``widths`` (all problems, and the first 200); the figures, the dev file's md5, the command
    and the wall time go into its ``model.json``. Returns the configuration's path."""
    import torch

    from mathtune.trainables.t2m import shipped  # the family's own modules: imported when used
    from mathtune.trainables.t2m.dataset import resolve_file
    from mathtune.trainables.t2m.evaluation import vocabularies_of

    _check_name(name, "NAME")
    if weights is not None:
        _check_name(weights, "--weights")
    if not produced_by:
        raise ShipError("--produced-by is required (the command that trained the run, as a user would type it)")
    widths = list(dict.fromkeys(int(w) for w in widths))
    if not widths or min(widths) < 1:
        raise ShipError(f"--widths {' '.join(map(str, widths))}: beam widths are whole numbers of at least 1")
    ckpt = _program_checkpoint(Path(run))
    searched = search_of(Path(search)) if search else None
    before = torch.get_num_threads()
    try:
        _, run_config, metrics = load_checkpoint(ckpt)
        history = metrics.get("history") or []
        best = metrics.get("best") or {}
        measuring = {"threads": threads, "device": "cpu"}
        family, config, model, _ = load_trained(ckpt, data=vocabularies_of, overrides=measuring)
        set_threads(config)
        train_file = resolve_file(config["train_file"], "train_file", "train.json")
        dev = resolve_file(config["dev_file"], "dev_file", "dev.json")
        wall = round(sum(float(h.get("epoch_time_s", 0.0)) for h in history), 1)
        provenance = provenance_of(metrics.get("provenance"), run_config)  # recorded at its start and resumes
        machine = f"trained on {machine_of([provenance])}; measured with {threads} torch thread(s)"
        selected = note or ("the epoch with the best greedy dev execution accuracy of a full-data run (dev is "
                            "validation); the COL775 test split was not used")
        by_width = _measure(family, config, model, dev, widths, log=log)
        train_command = f"mathtune train {family.name} --config trainables/configs/{name}.json"
        cfg_path = Path(configs_dir or CONFIGS_DIR) / f"{name}.json"
        payload = {
            "family": family.name,
            "figure": {"val_exec_acc": best.get("val_exec_acc"), "val_exact_match": best.get("val_exact_match"),
                       "epoch": best.get("epoch"), "dev_percent_by_beam_width": by_width},
            "measured_on": (f"a seeded subset of {config['limit_train']}" if config["limit_train"] else
                            f"all {len(read_json(train_file))}") + f" training problems of {train_file}; all "
                           f"{by_width[str(widths[0])]['problems']} problems of {dev} (md5 {shipped.file_md5(dev)}) "
                           f"as validation: selection and figures; the COL775 test split held apart",
            "wall_time_s": wall,
            "machine": machine,
            "provenance": provenance,
            "date": dt.date.today().isoformat(),
            "selected": selected,
            "train_command": train_command,
            "produced_by": produced_by,
            **({"search": searched} if searched else {}),
            "config": configuration_of(run_config),
        }
        _write(cfg_path, payload)
        _say(log, f"[mathtune] configuration written: {_shown(cfg_path)}")
        if not weights:
            return cfg_path

        dest = shipped.WEIGHTS_DIR / weights
        record = {"name": weights, "family": family.name, "source_checkpoint": str(ckpt),
                  "train_command": train_command, "produced_by": produced_by, "train_wall_time_s": wall,
                  "epochs_trained": len(history), "date": dt.date.today().isoformat(), "machine": machine,
                  "provenance": provenance, "selected": selected}
        with atomic_folder(dest) as tmp:  # measured from the files being shipped, then swapped in
            shipped.export_model(ckpt, tmp, record=record)
            family, config, model, _ = load_trained(tmp, data=vocabularies_of, overrides=measuring)
            set_threads(config)
            figures = {"dev": _measure(family, config, model, dev, widths, label="shipped dev", log=log),
                       f"dev_first_{FIRST}": _measure(family, config, model, dev, widths, limit=FIRST,
                                                      label=f"shipped dev[:{FIRST}]", log=log)}
            record.update({"figures": figures, "measured_on": {"file": dev.name, "md5": shipped.file_md5(dev),
                                                               "threads": threads},
                           "size_bytes": sum(f.stat().st_size for f in tmp.iterdir())})
            _write(tmp / shipped.MODEL_FILE, {**read_json(tmp / shipped.MODEL_FILE), **record})
        _say(log, f"[mathtune] pretrained:{weights} written to {_shown(dest)} ({record['size_bytes'] / 1e6:.1f} MB)")
        return cfg_path
    finally:
        torch.set_num_threads(before)


# -- one entry point for both --------------------------------------------------------------------------------------


def _is_text2program(run: Path) -> bool:
    """Whether ``run`` ships as a text-to-program run: its ``result.json`` names such a family, or it has none
    (only a text-to-program checkpoint or trial folder ships without one)."""
    if not run.is_dir():
        raise ShipError(f"{run}: no such run folder")
    if not (run / RESULT_FILE).is_file():
        return True
    from mathtune.trainables.t2m.family import T2MFamily  # a family's own module: imported when used

    return isinstance(get_family(str(read_run(run)["family"])), T2MFamily)


def ship(name: str, runs: Sequence[str | Path], *, produced_by: str | None = None, note: str = "",
         search: str | Path | None = None, configs_dir: str | Path | None = None, train_only: bool = False,
         weights: str | None = None, widths: Sequence[int] | None = None, threads: int | None = None,
         log: Log | None = None) -> Path:
    """``mathtune ship``: :func:`ship_text2program` for a text-to-program run, :func:`add_train_figures` with
    ``train_only``, :func:`ship_config` otherwise. ``threads`` defaults to 2 for a text-to-program run, 1
    otherwise; ``widths`` (text-to-program only) to :data:`DEFAULT_WIDTHS`. Returns the shipped
    configuration's path."""
    _check_name(name, "NAME")
    runs = [Path(r) for r in runs]
    if not runs:
        raise ShipError("no run to ship")
    if threads is not None and threads < 1:
        raise ShipError(f"--threads {threads}: at least 1")
    if _is_text2program(runs[0]):
        if train_only:
            raise ShipError(f"--train-only: {runs[0]} is a text-to-program run, which has no train figures")
        if len(runs) > 1:
            raise ShipError(f"a text-to-program run ships alone; got {len(runs)} runs")
        return ship_text2program(name, runs[0], produced_by=produced_by or "", note=note, search=search,
                                 weights=weights, widths=widths or DEFAULT_WIDTHS, threads=threads or 2,
                                 configs_dir=configs_dir, log=log)
    for given, option in ((weights, f"--weights {weights}"), (widths, "--widths")):
        if given:
            raise ShipError(f"{option}: only a text-to-program run is measured at beam widths and ships its model; "
                            f"{runs[0]} is {read_run(runs[0])['family']}")
    if train_only:
        return add_train_figures(name, runs, configs_dir=configs_dir, threads=threads or 1, log=log)
    return ship_config(name, runs, produced_by=produced_by or "", note=note, search=search,
                       configs_dir=configs_dir, threads=threads or 1, log=log)
