"""The report of one ``mathtune train`` run: its curves, its best and last epochs, its configuration.

A ``mathtune train ... --out DIR`` folder holds ``last/`` and ``best/`` checkpoints (``config.json`` and
``metrics.json`` with every epoch's figures beside the weights) and, once the run has ended,
``result.json``. The report reads only those files, so it also works while the run is still training.
Selection is the run's own: the best epoch on the family's validation metric; test figures are reported
only.

Example::

    >>> write_run_report("runs/lstm")                                  # doctest: +SKIP
    PosixPath('runs/lstm/report.md')
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from matplotlib.figure import Figure

from mathtune.trainables.atomic import readable_folder
from mathtune.trainables.metrics import best_of
from mathtune.trainables.records import RUN_FILE, RunRecord
from mathtune.trainables.registry import family_names, get_family

from .plots import GREY, PALETTE, save_figure
from .report import FILES_DIR, Report, Section, _write_text, render_html, render_latex, render_markdown
from .store import ExperimentError
from .tables import Table, metric_label
from .tidy import test_metric_for

__all__ = ["is_train_run", "load_run", "write_run_report"]

CHECKPOINT_FILES = ("config.json", "metrics.json")


def _last(folder: str | Path) -> Path | None:
    """The run's ``last/`` checkpoint with its config and metrics (where a complete one is)."""
    last = readable_folder(Path(folder) / "last")
    return last if last is not None and all((last / name).is_file() for name in CHECKPOINT_FILES) else None


def is_train_run(folder: str | Path) -> bool:
    """True for a ``mathtune train`` folder (a ``last/`` checkpoint with its config and metrics)."""
    return _last(folder) is not None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{path}: unreadable ({exc})") from None


def load_run(folder: str | Path) -> dict[str, Any]:
    """Config, per-epoch history, family, wall time, whether the run has ended and its record (``result``, a
    :class:`~mathtune.trainables.records.RunRecord`, None while it trains)."""
    folder = Path(folder)
    last = _last(folder)
    if last is None:
        raise ExperimentError(f"{folder}: not a mathtune train folder (no last/config.json and last/metrics.json)")
    config = _read_json(last / "config.json")
    metrics = _read_json(last / "metrics.json")
    result = RunRecord.read(folder, error=ExperimentError) if (folder / RUN_FILE).is_file() else None
    history = metrics.get("history") if isinstance(metrics, dict) else None
    if not isinstance(config, dict) or not isinstance(history, list):
        raise ExperimentError(f"{last}: unreadable checkpoint metadata (no config or epoch history)")
    family = (result.family if result else None) or _infer_family(config)
    return {"folder": folder, "config": config, "history": history, "family": family, "result": result,
            "wall_time_s": (result.wall_time_s if result else None) or sum(float(h.get("epoch_time_s") or 0)
                                                                           for h in history),
            "finished": result is not None}


def _infer_family(config: dict[str, Any]) -> str | None:
    """The family whose parameters are exactly the checkpoint's config keys (a run that has not ended yet has
    no result.json naming it); else, for a run written before parameters were added, the one family whose
    parameters hold every key with the fewest added."""
    keys = set(config)
    params = {n: set(get_family(n).all_params()) for n in family_names()}
    matches = [n for n, p in params.items() if p == keys]
    if not matches:
        wider = {n: len(p - keys) for n, p in params.items() if p > keys}
        matches = [n for n, extra in wider.items() if extra == min(wider.values())] if wider else []
    return matches[0] if len(matches) == 1 else None


def _family_metric(family: str | None, history: list[dict]) -> tuple[str, str]:
    try:
        fam = get_family(family)
        return fam.metric, getattr(fam, "mode", "max")
    except Exception:  # noqa: BLE001 - an unknown family (a plugin not installed here): guess from the figures
        keys = [k for k in (history[-1] if history else {}) if k.startswith("val_") and k != "val_loss"]
        return (keys[0] if keys else "val_loss"), ("max" if keys else "min")


def _decode_params(family: str | None) -> tuple[str, ...]:
    """The family's decode-time settings (a run records the one each epoch decoded at, e.g. ``val_<setting>``);
    none for a family not installed here."""
    try:
        return tuple(get_family(family).decode_params)
    except Exception:  # noqa: BLE001 - an unknown family: no setting to tell apart from its figures
        return ()


def _curves(history: pd.DataFrame, metric: str, best_epoch: int | None, title: str, path: Path) -> Path | None:
    if "epoch" not in history or history.empty:
        return None
    loss = [k for k in ("train_loss", "val_loss") if k in history and history[k].notna().any()]
    scores = [k for k in (metric, test_metric_for(metric)) if k in history and history[k].notna().any()]
    panels = [p for p in (("loss", loss), (metric_label(metric), scores)) if p[1]]
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, keys) in zip(axes, panels):
        for i, key in enumerate(keys):
            ax.plot(history["epoch"], history[key], "--" if key.startswith(("train", "test")) else "-",
                    color=PALETTE[i % len(PALETTE)], marker="o", ms=3, label=metric_label(key))
        if best_epoch is not None:
            ax.axvline(best_epoch, color=GREY, lw=0.8, ls=":", label=f"selected epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def build_run_report(folder: str | Path, out: Path):
    """The run's :class:`~mathtune.analysis.report.Report` (figures written under ``out/report_files``)."""
    run = load_run(folder)
    history = pd.DataFrame(run["history"])
    metric, mode = _family_metric(run["family"], run["history"])
    test_metric = test_metric_for(metric)
    config = run["config"]
    epochs_cap = config.get("epochs")
    last = run["history"][-1] if run["history"] else {}
    best_row = None
    if metric in history:  # the first best epoch, as the run selected it
        index = best_of(history.index, mode, key=lambda i: history.at[i, metric])
        best_row = history.loc[index] if index is not None else None
    head = Section(f"Run {run['folder'].name}", level=2)
    state = (f"finished after {last.get('epoch', '-')} epochs" if run["finished"] else
             f"still training or interrupted: epoch {last.get('epoch', '-')} of {epochs_cap or '-'} written "
             f"(`mathtune train {run['family']} ... --out {run['folder']}` continues it)")
    head.paragraphs.append(f"Family `{run['family']}`, folder `{run['folder']}`: {state}; "
                           f"{run['wall_time_s'] / 60:.1f} min of training.")
    tested = test_metric in history and history[test_metric].notna().any()
    head.paragraphs.append(f"Selected: the epoch with the best `{metric}` ({mode}) on the validation data"
                           + (f"; `{test_metric}` is the same epoch on the test data, reported only." if tested else
                              "; no test figures are recorded during training (the test data is held apart)."))
    shown = [k for k in history.columns if k.startswith(("val_", "test_")) or k in ("train_loss",)]
    rows = []
    if best_row is not None:
        rows.append({"epoch": f"selected ({int(best_row['epoch'])})", **{k: best_row.get(k) for k in shown}})
    rows.append({"epoch": f"last ({last.get('epoch', '-')})", **{k: last.get(k) for k in shown}})
    percent = {k for k in shown if not k.endswith(("loss", *_decode_params(run["family"])))}  # settings: as is
    head.tables.append(Table("run-figures", "Selected and last epoch", pd.DataFrame(rows), percent=percent))
    files = out / FILES_DIR
    curve = _curves(history, metric, int(best_row["epoch"]) if best_row is not None else None,
                    f"{run['family']}: {run['folder'].name}", files / f"{run['folder'].name}-curves.png")
    if curve:
        head.figures.append((curve, f"Loss and {metric_label(metric)} per epoch (test dashed, reported only); the "
                                    f"dotted line marks the selected epoch."))
    cfg = Section("Configuration", level=3)
    cfg.tables.append(Table("run-config", "Configuration (every parameter, defaults included)",
                            pd.DataFrame([{"parameter": k, "value": ("auto" if k == "threads" and v == 0 else
                                                                     json.dumps(v) if isinstance(v, (dict, list))
                                                                     else v)} for k, v in sorted(config.items())])))
    cfg.paragraphs.append(f"Reproduce: `mathtune train {run['family']} --config {run['folder'] / 'last' / 'config.json'}"
                          f" --out NEW_DIR`.")
    per_epoch = Section("Every epoch", level=3)
    per_epoch.tables.append(Table("run-epochs", "Figures per epoch", history[["epoch", *[k for k in shown
                                                                                     if k in history]]],
                                  percent=percent))
    return Report(f"mathtune report: {run['folder'].name}", [head, cfg, per_epoch], None,
                  time.strftime("%Y-%m-%d %H:%M"))


def write_run_report(folder: str | Path, out: str | Path | None = None, *,
                     formats: Sequence[str] = ("md", "html", "tex")) -> Path:
    """Write the run's report (``report.md``, ``report.html``, ``tables.tex``) into ``out`` (default: the run's
    folder); returns the Markdown path, or the first format written."""
    out = Path(out) if out else Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    report = build_run_report(folder, out)
    written = {}
    if "md" in formats:
        written["md"] = _write_text(out / "report.md", render_markdown(report, out))
    if "html" in formats:
        written["html"] = _write_text(out / "report.html", render_html(report))
    if "tex" in formats:
        written["tex"] = _write_text(out / "tables.tex", render_latex(report))
    return written.get("md") or next(iter(written.values()))
