"""Shipping a text-to-program run: its configuration with dev figures per beam width, and its model too.

What ``mathtune ship NAME RUN`` does with a run of a text-to-program family (their ``Family.ship_model``;
:mod:`mathtune.analysis.ship` is the command, and ships other families' runs as configurations with train
figures). The run is one ``mathtune train`` folder, a checkpoint or a Tune trial folder. The configuration's
figure is its best epoch's greedy dev figures and dev execution accuracy and exact match at each beam width,
decoded from its best checkpoint; with ``weights=NAME`` the model itself ships inside the package as
``pretrained:NAME`` (:mod:`.shipped`), measured again from the file being shipped.

Several runs ship as one ensemble model (:func:`ship_ensemble`, ``mathtune ship NAME RUN1 RUN2 ... --weights
WNAME``): each run's best checkpoint in float16 as a member of ``pretrained:WNAME`` (``members/0/``,
``members/1/``, ... in the runs' order, :mod:`.shipped`), the members decoding as one as ``mathtune evaluate
--ensemble`` does, measured from the written files at each beam width. The members must share the program
vocabulary (their training file) and take at most :data:`.shipped.MAX_ENSEMBLE_BYTES` in all; an ensemble is
no ``mathtune train`` input, so no configuration NAME.json is written for it: each member's ``config.json``
trains it again.

Members can be chosen rather than listed (:func:`select_members`, ``mathtune ship NAME RUN... --weights WNAME
--select K``): among many runs (a search's trial folders and its confirmation's), greedy forward selection on
dev adds, one at a time, the run that raises the ensemble's dev execution accuracy most, and stops when none
does, at K members or at the size limit.

Every file is written atomically (:mod:`mathtune.trainables.atomic`). Bad input raises
:class:`~mathtune.trainables.errors.ShipError` (one line).

Example::

    ship_text2program("t2m-lstm", "runs/lstm-ls30", out=Path("trainables/configs/t2m-lstm.json"),
                      weights="t2m", produced_by="mathtune train t2m-lstm --set ... --out runs/lstm-ls30", log=print)
    ship_ensemble(["runs/lstm-ls30", "runs/frozen30"], weights="t2m-ens", log=print,
                  produced_by="mathtune train t2m-lstm ... --out runs/lstm-ls30; mathtune train t2m-bert-frozen ...")
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..atomic import atomic_folder, read_json, write_text
from ..checkpoints import load_trained
from ..errors import CheckpointError, ShipError
from ..files import CHECKPOINT_FILE
from ..loop import load_checkpoint, load_state_file, set_threads
from ..provenance import configuration_of, machine_of, provenance_of, shown_path
from ..records import ShippedRecord
from . import shipped
from .data import DataError, load_split
from .dataset import encode_part, resolve_file
from .ensemble import same_programs
from .evaluation import evaluate_file, find_checkpoint, vocabularies_of
from .models import meta_of_state

__all__ = ["DEFAULT_WIDTHS", "FIRST", "SELECT_POOL", "ship_text2program", "ship_ensemble", "select_members",
           "program_checkpoint", "measure"]

DEFAULT_WIDTHS = (1, 5, 10)
DEFAULT_THREADS = 2  # torch threads while decoding, unless asked otherwise
SELECT_POOL = 8  # members are chosen among this many runs, those with the best recorded dev figures
FIRST = 200  # a shipped model is also measured on the first FIRST dev problems: the figure its test checks
RESULT_FILE = "result.json"

Log = Callable[[str], None]


def _say(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)


def _write(path: Path, payload: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(payload, indent=1, default=str) + "\n")


def measure(family, config, model, dev: Path, widths: Sequence[int], *, limit: int = 0, label: str = "dev",
            ensemble: Sequence[tuple[Any, Any]] = (), votes: Sequence[int] | None = None,
            log: Log | None = None) -> dict[str, dict[str, Any]]:
    """Execution accuracy and exact match (percent) and the problem count of ``model`` (with the models of
    ``ensemble`` decoding beside it as one, :func:`.evaluation.evaluate_file`) on ``dev`` (its first ``limit``
    problems when > 0) at each beam width, keyed by the width as text; one line per width to ``log``."""
    t0 = time.perf_counter()
    out = evaluate_file(family, config, model, dev, widths=widths, limit=limit, ensemble=ensemble, votes=votes)
    wall = time.perf_counter() - t0
    for w, r in out.scores.items():
        _say(log, f"[mathtune] {label:14s} beam {w:3d}: execution {r.execution_accuracy:6.2f}%  exact match "
                  f"{r.exact_match:6.2f}%  ({r.n} problems)")
    _say(log, f"[mathtune] {label:14s} decoded in {wall:.1f} s")
    return {str(w): {"exec_acc": round(r.execution_accuracy, 2), "exact_match": round(r.exact_match, 2),
                     "problems": r.n} for w, r in out.scores.items()}


def program_checkpoint(run: Path) -> Path:
    """The checkpoint to ship of a text-to-program run; a one-line ShipError for anything else."""
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


def ship_text2program(name: str, run: str | Path, *, out: Path, produced_by: str, note: str = "",
                      searched: dict[str, Any] | None = None, weights: str | None = None,
                      widths: Sequence[int] | None = None, threads: int | None = None,
                      log: Log | None = None) -> Path:
    """Write the configuration ``out`` (shipped as NAME) from a text-to-program run: its configuration, its best
    epoch's greedy dev figures and dev execution accuracy and exact match at each of ``widths`` (default
    :data:`DEFAULT_WIDTHS`) decoded from its best checkpoint (``threads`` torch threads on the CPU, default 2),
    the data, wall time and ``produced_by``; ``note`` says how the run was chosen (recorded as ``selected``),
    ``searched`` what the search that found it recorded.

    With ``weights=WNAME`` the best checkpoint also ships in float16 as ``pretrained:WNAME``
    (``trainables/weights/WNAME/``), loaded back the way ``mathtune evaluate pretrained:WNAME`` loads it and
    scored on dev at ``widths`` (all problems, and the first 200); the figures, the dev file's md5, the command
    and the wall time go into its ``model.json``. Returns ``out``."""
    widths = list(dict.fromkeys(int(w) for w in (widths or DEFAULT_WIDTHS)))
    threads = threads or DEFAULT_THREADS
    if not widths or min(widths) < 1:
        raise ShipError(f"--widths {' '.join(map(str, widths))}: beam widths are whole numbers of at least 1")
    ckpt = program_checkpoint(Path(run))
    before = torch.get_num_threads()
    try:
        _, run_config, metrics = load_checkpoint(ckpt)
        history = metrics.get("history") or []
        best = metrics.get("best") or {}
        measuring = {"threads": threads, "device": "cpu"}
        family, config, model, _ = load_trained(ckpt, data=vocabularies_of, overrides=measuring)
        set_threads(config)
        train_file = resolve_file(config.train_file, "train_file", "train.json")
        dev = resolve_file(config.dev_file, "dev_file", "dev.json")
        wall = round(sum(float(h.get("epoch_time_s", 0.0)) for h in history), 1)
        provenance = provenance_of(metrics.get("provenance"), run_config)  # recorded at its start and resumes
        machine = f"trained on {machine_of([provenance])}; measured with {threads} torch thread(s)"
        selected = note or ("the epoch with the best greedy dev execution accuracy of a full-data run (dev is "
                            "validation); the COL775 test split was not used")
        by_width = measure(family, config, model, dev, widths, log=log)
        train_command = f"mathtune train {family.name} --config trainables/configs/{name}.json"
        ShippedRecord(
            family=family.name,
            figure={"val_exec_acc": best.get("val_exec_acc"), "val_exact_match": best.get("val_exact_match"),
                    "epoch": best.get("epoch"), "dev_percent_by_beam_width": by_width},
            measured_on=(f"a seeded subset of {config.limit_train}" if config.limit_train else
                         f"all {len(read_json(train_file))}") + f" training problems of {train_file}; all "
                        f"{by_width[str(widths[0])]['problems']} problems of {dev} (md5 {shipped.file_md5(dev)}) "
                        f"as validation: selection and figures; the COL775 test split held apart",
            wall_time_s=wall,
            machine=machine,
            provenance=provenance,
            date=dt.date.today().isoformat(),
            selected=selected,
            train_command=train_command,
            produced_by=produced_by,
            search=searched or None,
            config=configuration_of(run_config),
        ).write(out)
        _say(log, f"[mathtune] configuration written: {shown_path(out)}")
        if not weights:
            return out

        dest = shipped.WEIGHTS_DIR / weights
        record = {"name": weights, "family": family.name, "source_checkpoint": str(ckpt),
                  "train_command": train_command, "produced_by": produced_by, "train_wall_time_s": wall,
                  "epochs_trained": len(history), "date": dt.date.today().isoformat(), "machine": machine,
                  "provenance": provenance, "selected": selected}
        with atomic_folder(dest) as tmp:  # measured from the files being shipped, then swapped in
            shipped.export_model(ckpt, tmp, record=record)
            family, config, model, _ = load_trained(tmp, data=vocabularies_of, overrides=measuring)
            set_threads(config)
            figures = {"dev": measure(family, config, model, dev, widths, label="shipped dev", log=log),
                       f"dev_first_{FIRST}": measure(family, config, model, dev, widths, limit=FIRST,
                                                     label=f"shipped dev[:{FIRST}]", log=log)}
            record.update({"figures": figures, "measured_on": {"file": dev.name, "md5": shipped.file_md5(dev),
                                                               "threads": threads},
                           "size_bytes": sum(f.stat().st_size for f in tmp.iterdir())})
            _write(tmp / shipped.MODEL_FILE, {**read_json(tmp / shipped.MODEL_FILE), **record})
        _say(log, f"[mathtune] pretrained:{weights} written to {shown_path(dest)} "
                  f"({record['size_bytes'] / 1e6:.1f} MB)")
        return out
    finally:
        torch.set_num_threads(before)


SELECTED_MEMBER = "the epoch with the best greedy dev execution accuracy of its run (dev is validation)"
SELECTED_ENSEMBLE = ("members chosen on dev only, each at the epoch with the best greedy dev execution accuracy of "
                     "its run; the COL775 test split was not used")


def _member(index: int, run: Path, ckpt: Path, weights: str) -> dict[str, Any]:
    """What an ensemble records of member ``index``: where it sits, the run and checkpoint it came from, how to
    train it again, its run's provenance and the greedy dev figures its run selected it by."""
    _, run_config, metrics = load_checkpoint(ckpt)
    history = metrics.get("history") or []
    best = metrics.get("best") or {}
    provenance = provenance_of(metrics.get("provenance"), run_config)
    family = meta_of_state(load_state_file(ckpt / CHECKPOINT_FILE)["model"])["family"]
    path = f"{shipped.MEMBERS_DIR}/{index}"
    return {"path": path, "family": family, "run": str(run), "source_checkpoint": str(ckpt),
            "train_command": f"mathtune train {family} --config trainables/weights/{weights}/{path}/config.json",
            "train_wall_time_s": round(sum(float(h.get("epoch_time_s", 0.0)) for h in history), 1),
            "epochs_trained": len(history), "machine": f"trained on {machine_of([provenance])}",
            "provenance": provenance, "selected": SELECTED_MEMBER,
            "run_figure": {"val_exec_acc": best.get("val_exec_acc"), "val_exact_match": best.get("val_exact_match"),
                           "epoch": best.get("epoch")}}


def ship_ensemble(runs: Sequence[str | Path], *, weights: str | None, produced_by: str, note: str = "",
                  searched: dict[str, Any] | None = None, widths: Sequence[int] | None = None,
                  threads: int | None = None, votes: Sequence[int] | None = None, log: Log | None = None) -> Path:
    """Ship text-to-program ``runs`` (two or more) as one ensemble model ``pretrained:WEIGHTS``: each run's best
    checkpoint in float16 as ``trainables/weights/WEIGHTS/members/I/`` (in the runs' order; the first member's
    decoding settings apply), loaded back the way ``mathtune evaluate pretrained:WEIGHTS`` loads them and scored
    as one on the first member's dev file at ``widths`` (all problems, and the first 200) with ``threads`` torch
    threads. ``model.json`` records the figures, the dev file's md5, ``produced_by``, ``note`` (how the members
    were chosen, as ``selected``), ``searched`` and each member's provenance and ``votes`` (default one each: a
    member with two counts twice in the mean of probabilities). Members trained on another program
    vocabulary than the first run's, a run given twice, or members over :data:`.shipped.MAX_ENSEMBLE_BYTES` in
    all: a one-line ShipError, nothing written. Returns the weights folder."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise ShipError(f"an ensemble ships two runs or more; got {len(runs)}")
    if not weights:
        raise ShipError(f"{len(runs)} text-to-program runs ship as one ensemble model: --weights WNAME names it "
                        f"(an ensemble is no `mathtune train` configuration, so it ships no NAME.json)")
    widths = list(dict.fromkeys(int(w) for w in (widths or DEFAULT_WIDTHS)))
    threads = threads or DEFAULT_THREADS
    if not widths or min(widths) < 1:
        raise ShipError(f"--widths {' '.join(map(str, widths))}: beam widths are whole numbers of at least 1")
    ckpts = [program_checkpoint(r) for r in runs]
    metas = [meta_of_state(load_state_file(c / CHECKPOINT_FILE)["model"]) for c in ckpts]
    for i, (run, ckpt, meta) in enumerate(zip(runs, ckpts, metas)):
        twice = next((r for r, c in zip(runs[:i], ckpts[:i]) if c.resolve() == ckpt.resolve()), None)
        if twice is not None:
            raise ShipError(f"{run}: the same checkpoint as {twice} ({ckpt}); an ensemble's members are "
                            f"different runs")
        if not same_programs(meta, metas[0]):
            raise ShipError(f"{run}: {meta['family']} trained on another program vocabulary than {runs[0]} "
                            f"(ensemble members must share their training file)")
    votes = [int(v) for v in votes] if votes is not None else [1] * len(runs)
    if len(votes) != len(runs) or min(votes) < 1:
        raise ShipError(f"votes {votes}: one whole number of at least 1 for each of the {len(runs)} runs")
    members = [{**_member(i, r, c, weights), "votes": v} for i, (r, c, v) in enumerate(zip(runs, ckpts, votes))]
    measuring = {"threads": threads, "device": "cpu"}
    before = torch.get_num_threads()
    dest = shipped.WEIGHTS_DIR / weights
    try:
        with atomic_folder(dest) as tmp:  # measured from the files being shipped, then swapped in
            for member, ckpt in zip(members, ckpts):
                shipped.export_model(ckpt, tmp / member["path"], record={"name": weights, **member})
                member.update({k: v for k, v in read_json(tmp / member["path"] / shipped.MODEL_FILE).items()
                               if k in ("epoch", "dtype")})
                member["size_bytes"] = shipped.folder_bytes(tmp / member["path"])
            size, limit = sum(m["size_bytes"] for m in members), shipped.MAX_ENSEMBLE_BYTES
            if size > limit:
                raise ShipError(f"pretrained:{weights}: {len(members)} members take {size / 1e6:.1f} MB in float16, "
                                f"over the {limit / 1e6:g} MB a shipped ensemble may take (ship fewer or smaller "
                                f"members)")
            loaded = [load_trained(tmp / m["path"], data=vocabularies_of, overrides=measuring) for m in members]
            family, config, model, _ = loaded[0]
            set_threads(config)
            dev = resolve_file(config.dev_file, "dev_file", "dev.json")
            others = [(t.model, t.config) for t in loaded[1:]]
            _say(log, f"[mathtune] pretrained:{weights}: {len(members)} members decoding as one ("
                      + ", ".join(f"{m['family']} from {m['source_checkpoint']}"
                                  + (f" ({m['votes']} votes)" if m["votes"] != 1 else "") for m in members) + ")")
            figures = {"dev": measure(family, config, model, dev, widths, label="shipped dev", ensemble=others,
                                      votes=votes, log=log),
                       f"dev_first_{FIRST}": measure(family, config, model, dev, widths, limit=FIRST, ensemble=others,
                                                     votes=votes, label=f"shipped dev[:{FIRST}]", log=log)}
            record = {"name": weights, "family": " + ".join(dict.fromkeys(m["family"] for m in members)),
                      "members": members, "produced_by": produced_by, "date": dt.date.today().isoformat(),
                      "machine": f"measured with {threads} torch thread(s); the members trained on "
                                 + machine_of([m["provenance"] for m in members]),
                      "selected": note or SELECTED_ENSEMBLE, **({"search": searched} if searched else {}),
                      "dtype": "float16", "figures": figures,
                      "measured_on": {"file": dev.name, "md5": shipped.file_md5(dev), "threads": threads}}
            _write(tmp / shipped.MODEL_FILE, record)
            record["size_bytes"] = shipped.folder_bytes(tmp)
            _write(tmp / shipped.MODEL_FILE, record)
        _say(log, f"[mathtune] pretrained:{weights} written to {shown_path(dest)}: an ensemble of {len(members)} "
                  f"models ({record['size_bytes'] / 1e6:.1f} MB); an ensemble ships no configuration (each "
                  f"member's config.json trains it again)")
        return dest
    finally:
        torch.set_num_threads(before)


def _float16_bytes(model: torch.nn.Module) -> int:
    """About what ``model``'s state takes shipped (floating tensors in float16, the rest as they are)."""
    return sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in model.state_dict().values())


def select_members(runs: Sequence[str | Path], *, size: int, width: int = 1, pool: int = SELECT_POOL,
                   threads: int | None = None, log: Log | None = None) -> tuple[list[Path], list[int], str]:
    """Choose at most ``size`` members of one ensemble model among text-to-program ``runs`` (``mathtune train``
    folders, checkpoints or Tune trial folders, e.g. a search's ``EXP/trial_*`` and ``EXP/confirm/trial_*``), on
    dev only, by greedy forward selection.

    The first usable run fixes the dev file (its configuration's) and the program vocabulary; a run selected on
    another dev file or trained on another vocabulary is left out. The ``pool`` runs with the best dev
    execution accuracy their runs recorded (the selected epoch's, greedy) are decoded on that dev file at beam
    ``width`` with ``threads`` torch threads, alone; the best alone is the first member, with one vote. Then
    each round tries one more vote for every run of the pool beside the members' votes (each step the mean of
    the members' probabilities, a member counted once per vote: selection with replacement, as in Caruana et
    al. 2004), a run not yet a member only while there are fewer than ``size`` members and it fits within
    :data:`.shipped.MAX_ENSEMBLE_BYTES` in float16. The vote that gives the highest dev execution accuracy
    (exact match breaks ties) is kept if that execution accuracy is higher than without it; selection stops
    when none is, or at ``2 * size`` votes in all. Every run left out (no text-to-program checkpoint, the same
    checkpoint as another, another vocabulary or dev file) gets a line to ``log``.

    Returns the chosen runs (best alone first, then in the order they joined), their votes, and a sentence on
    how they were chosen (what a shipped model records as ``selected``). Bad arguments or no usable run: a
    one-line :class:`ShipError`."""
    if size < 1:
        raise ShipError(f"--select {size}: choose at least 1 member")
    if width < 1:
        raise ShipError(f"--select-width {width}: beam widths start at 1")
    if pool < 1:
        raise ShipError(f"--select-pool {pool}: at least 1 run")
    threads = threads or DEFAULT_THREADS
    found: list[tuple[float, int, Path, Path]] = []
    seen: dict[Path, Path] = {}
    reference: tuple[Path, dict[str, Any], Path] | None = None  # the first usable run, its model's meta, its dev
    for order, run in enumerate(Path(r) for r in runs):
        try:
            ckpt = program_checkpoint(run)
            meta = meta_of_state(load_state_file(ckpt / CHECKPOINT_FILE)["model"])
            dev = resolve_file(str(read_json(ckpt / "config.json").get("dev_file") or ""), "dev_file", "dev.json")
        except (ShipError, CheckpointError, DataError) as exc:
            _say(log, f"[mathtune] select: left out {exc}")
            continue
        if ckpt.resolve() in seen:
            _say(log, f"[mathtune] select: left out {run}: the same checkpoint as {seen[ckpt.resolve()]}")
            continue
        if reference is None:
            reference = (run, meta, dev)
        elif not same_programs(meta, reference[1]):
            _say(log, f"[mathtune] select: left out {run}: trained on another program vocabulary than "
                      f"{reference[0]}")
            continue
        elif dev.resolve() != reference[2].resolve():
            _say(log, f"[mathtune] select: left out {run}: selected on another dev file ({dev}) than "
                      f"{reference[0]} ({reference[2]})")
            continue
        seen[ckpt.resolve()] = run
        metrics = read_json(ckpt / "metrics.json") if (ckpt / "metrics.json").is_file() else {}
        recorded = (metrics.get("best") or {}).get("val_exec_acc")
        found.append((-1.0 if recorded is None else float(recorded), order, run, ckpt))
    if reference is None:
        raise ShipError(f"--select: none of the {len(runs)} runs has a text-to-program checkpoint to ship")
    dev = reference[2]
    found.sort(key=lambda f: (-f[0], f[1]))
    chosen_from = found[:pool]
    _say(log, f"[mathtune] select: at most {size} members among the {len(chosen_from)} of {len(found)} runs with "
              f"the best recorded execution accuracy on {shown_path(dev)}, by greedy forward selection on it at "
              f"beam {width}")
    before = torch.get_num_threads()
    try:
        loaded = []
        for _, _, run, ckpt in chosen_from:
            family, config, model, _ = load_trained(ckpt, data=vocabularies_of,
                                                    overrides={"threads": threads, "device": "cpu"})
            loaded.append((run, family, config, model, _float16_bytes(model)))
        set_threads(loaded[0][2])
        examples = load_split(dev)  # each model reads dev once, however many ensembles it is tried in
        encoded = [encode_part("eval", examples, model.meta, config, source=dev.name, device=torch.device("cpu"))
                   for _, _, config, model, _ in loaded]

        def score(votes: dict[int, int]) -> tuple[float, float]:
            first_, *rest = votes
            _, family, config, model, _ = loaded[first_]
            out = evaluate_file(family, config, model, dev, widths=[width],
                                ensemble=[(loaded[i][3], loaded[i][2]) for i in rest], votes=list(votes.values()),
                                parts=[encoded[i] for i in votes])
            return out.scores[width].execution_accuracy, out.scores[width].exact_match

        alone = []
        for i, (run, *_rest) in enumerate(loaded):
            alone.append(score({i: 1}))
            _say(log, f"[mathtune] select: {shown_path(run)} alone: execution {alone[i][0]:.2f}%, exact match "
                      f"{alone[i][1]:.2f}%")
        first = max(range(len(loaded)), key=lambda i: (alone[i], -i))
        votes, best = {first: 1}, alone[first]  # member -> votes, in the order members joined
        steps = [f"{shown_path(loaded[first][0])} alone {best[0]:.2f}%"]
        ended = f"{2 * size} votes"
        while sum(votes.values()) < 2 * size:
            room = shipped.MAX_ENSEMBLE_BYTES - sum(loaded[m][4] for m in votes)
            fits = [i for i in range(len(loaded))
                    if i in votes or (len(votes) < size and loaded[i][4] <= room)]
            tried = {i: score({**votes, i: votes.get(i, 0) + 1}) for i in fits}
            pick = max(fits, key=lambda i: (tried[i], i in votes, -i))
            again = " again" if pick in votes else ""
            _say(log, f"[mathtune] select: round {sum(votes.values()) + 1}: best vote {shown_path(loaded[pick][0])}"
                      f"{again}: execution {tried[pick][0]:.2f}%, exact match {tried[pick][1]:.2f}% (of {len(fits)} "
                      f"tried; {best[0]:.2f}% without it)")
            if tried[pick][0] <= best[0]:  # execution accuracy must rise; exact match alone adds no vote
                ended = "no vote raised dev execution accuracy"
                break
            votes[pick] = votes.get(pick, 0) + 1
            best = tried[pick]
            steps.append(f"+ {shown_path(loaded[pick][0])}{again} {best[0]:.2f}%")
    finally:
        torch.set_num_threads(before)
    chosen = [loaded[m][0] for m in votes]
    counts = list(votes.values())
    _say(log, f"[mathtune] select: {len(chosen)} member{'s' if len(chosen) != 1 else ''} ({ended}): "
              + ", ".join(shown_path(r) + (f" ({v} votes)" if v != 1 else "") for r, v in zip(chosen, counts)))
    how = (f"greedy forward selection with replacement on dev (beam {width}) among the {len(chosen_from)} of "
           f"{len(found)} runs with the best recorded dev execution accuracy, at most {size} members: "
           + "; ".join(steps) + f" (stopped: {ended}); each member at the epoch with the best greedy dev execution "
           f"accuracy of its run; the COL775 test split was not used")
    return chosen, counts, how
