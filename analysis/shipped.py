"""Every reference row beside the shipped configuration that answers it (``mathtune reference``).

The shipped configurations (``trainables/configs/*.json``, each a ``mathtune train --config`` input with the
figure its run measured) are mathtune's standing answer to the seed reports. For every row of
``reference.yaml`` this module finds the shipped configurations of the row's family whose settings match the
row's ``match`` keys, keeps the one with the best validation figure (never test), and shows its test figure on
the reference's own metric, its whole-answer exact match, its file and how it was selected. A row that no
shipped configuration answers says "not run". A figure that is a mean over training seeds carries its spread
(``figure.seeds``: ``{metric: [values...]}``), and a configuration that uses supervision the reference's model
did not have (what its family's ``Family.extra_supervision`` names, e.g. an auxiliary head) names it and, when
one is shipped, shows the best end-to-end figure without it beside it.

Example::

    table = shipped_versus_reference()
    print(table.to_markdown())
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mathtune.trainables.loop import format_duration
from mathtune.trainables.metrics import best_of
from mathtune.trainables.records import CONFIGS_DIR, ShippedRecord
from mathtune.trainables.registry import get_family

from .reference import _same, load_reference, reference_notes
from .tables import Table, metric_label

__all__ = ["CONFIGS_DIR", "ShippedConfig", "load_shipped", "shipped_versus_reference", "NOT_RUN"]

NOT_RUN = "not run"


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped configuration file (its :class:`ShippedRecord`) as the reference table compares it: its
    family, recorded figure and configuration, how it was found and selected."""

    path: Path
    record: ShippedRecord

    @property
    def family(self) -> str:
        return self.record.family

    @property
    def figure(self) -> dict[str, Any]:
        return self.record.figure

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def search(self) -> dict[str, Any] | None:
        """The search that found it (experiment, command, budget_s), None for a hand run."""
        return self.record.search

    @property
    def found_by(self) -> str:
        """``search EXP (budget 8 h 00 min)`` for a configuration a search found, else ``hand run``."""
        if not self.search:
            return "hand run (mathtune train)"
        budget = self.search.get("budget_s")
        return f"search {self.search.get('experiment', '?')}" + \
            (f" (budget {format_duration(float(budget))})" if budget else "")

    @property
    def selection(self) -> tuple[str, float]:
        """(validation metric, value) this configuration was selected on: its family's metric."""
        metric = get_family(self.family).metric
        return metric, self.value(metric)

    @property
    def extra_supervision(self) -> str | None:
        """What this configuration trains with that the reference's model did not have (its family says), or None."""
        family = get_family(self.family)
        return family.extra_supervision(family.read_config(self.config, where=str(self.path)))

    def value(self, metric: str) -> float:
        v = self.figure.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    def spread(self, metric: str) -> str:
        """"mean ± sd over N seeds" when the figure records per-seed values of ``metric``, else "one run"."""
        values = (self.figure.get("seeds") or {}).get(metric)
        if isinstance(values, list) and len(values) > 1:
            return f"± {100 * statistics.stdev(values):.2f} over {len(values)} seeds"
        return "one run"


def load_shipped(folder: str | Path | None = None) -> list[ShippedConfig]:
    """The shipped configurations in ``folder`` (default: the package's ``trainables/configs``), each read
    through :class:`ShippedRecord` (a file it cannot read: a one-line :class:`RecordError`)."""
    paths = sorted(Path(folder or CONFIGS_DIR).glob("*.json"))
    return [ShippedConfig(path, ShippedRecord.read(path)) for path in paths]


def _matches(cfg: ShippedConfig, family: str, match: dict[str, Any]) -> bool:
    return cfg.family == family and all(k in cfg.config and _same(cfg.config[k], v) for k, v in match.items())


def _best(configs: list[ShippedConfig]) -> ShippedConfig | None:
    """The configuration with the best validation figure (the first file on ties), None when none has one."""
    return best_of(configs, get_family(configs[0].family).mode, key=lambda c: c.selection[1]) if configs else None


def shipped_versus_reference(shipped: list[ShippedConfig] | None = None, *, families: set[str] | None = None,
                             path: str | Path | None = None) -> Table:
    """One row per reference figure (of ``families``, default all): ours beside it, or "not run"."""
    shipped = load_shipped() if shipped is None else shipped
    rows: list[dict[str, Any]] = []
    for ref in load_reference(path):
        family = ref["family"]
        if families is not None and family not in families:
            continue
        candidates = [c for c in shipped if _matches(c, family, ref.get("match") or {})]
        best = _best(candidates)
        extra = best.extra_supervision if best is not None else None
        plain = _best([c for c in candidates if c.extra_supervision is None]) if extra else None
        for metric, ref_value in ref["figures"].items():
            row = {"family": family, "reference setting": ref["setting"], "metric": metric_label(metric),
                   "reference": float(ref_value), "ours": NOT_RUN, "difference": math.nan,
                   "ours, test exact match": math.nan, "configuration": "-", "found by": "-", "selected": "-",
                   "seeds": "-", "notes": ref.get("context", "")}
            if best is not None:
                ours = best.value(metric)
                sel_metric, sel_value = best.selection
                notes = []
                if extra:
                    without = (f"; without it: {100 * plain.value(metric):.2f}%, test exact match "
                               f"{100 * plain.value('test_exact_match'):.2f}% ({plain.path.name})"
                               if plain is not None and not math.isnan(plain.value(metric)) else "; none shipped without it")
                    notes.append(f"uses {extra} the reference's model did not have{without}")
                if ref.get("context"):
                    notes.append(ref["context"])
                row.update({
                    "ours": ours if not math.isnan(ours) else "not measured",
                    "difference": ours - float(ref_value) if not math.isnan(ours) else math.nan,
                    "ours, test exact match": best.value("test_exact_match"),
                    "configuration": best.path.name, "found by": best.found_by,
                    "selected": f"on validation ({metric_label(sel_metric)} {100 * sel_value:.2f}%)",
                    "seeds": best.spread(metric), "notes": "; ".join(notes)})
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["family", "reference setting", "metric", "reference", "ours", "difference",
                                        "ours, test exact match", "configuration", "found by", "selected", "seeds",
                                        "notes"])
    note = ("Every row of the seed reports (analysis/reference.yaml) beside the shipped configuration "
            "(trainables/configs) that answers it: among the files that match the row's settings (its match: the "
            "task's settings, and an architecture setting where the row is about it), the one with the best "
            "validation figure; its architecture can differ from the reference's. 'not run' where none is shipped. "
            "The seed reports picked their configurations on the test set; ours are picked on validation and "
            "measured on our test split of the same task. difference = ours - reference in percentage points. "
            + reference_notes(path)).strip()
    return Table("shipped-versus-reference", "Shipped configurations versus the reference reports", frame,
                 note=note, percent={"reference", "ours", "ours, test exact match"}, signed={"difference"})
