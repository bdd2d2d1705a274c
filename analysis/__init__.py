"""Experiment folder -> tables and reports."""

from .report import best_per_factor, markdown_report, write_report
from .store import TrialRecord, load_experiment_meta, load_trials

__all__ = ["TrialRecord", "load_trials", "load_experiment_meta", "best_per_factor", "markdown_report",
           "write_report"]
