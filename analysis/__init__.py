"""Experiment folder -> tidy tables (Parquet) -> comparison tables, plots, importance, family views, report.

Example::

    from mathtune.analysis import load_tables, write_report, best_config
    tables = load_tables(["runs/exp-a", "runs/exp-b"])        # readable while a search runs
    tables.write_parquet("out/tables")
    write_report(["runs/exp-a", "runs/exp-b"], "out", formats=("md", "html"))
    best = best_config("runs/exp-a", where={"split": 0.5})    # for `mathtune train --config`
    ship("my-config", ["runs/train-s0", "runs/train-s1"], produced_by="mathtune train ...")  # trainables/configs
"""

from .best import BestError, best_config, write_best
from .importance import Importance, StudyInfo, load_studies, param_importances
from .plots import importance_plot, learning_curves, metric_vs_params, optimisation_history
from .reference import load_reference, versus_reference
from .report import FORMATS, Report, Section, build_report, markdown_report, write_report
from .ship import ShipError, ship
from .store import (STATUSES, ExperimentRecord, TrialRecord, load_experiment_meta, load_trials, read_experiment,
                    searched_params, tune_trial_states)
from .tables import Table, best_per_factor, family_summary, per_param_value, top_k, trial_overview
from .tidy import Tables, load_tables, test_metric_for
from .views import View, family_views

__all__ = [
    # store and tidy tables
    "ExperimentRecord", "read_experiment", "TrialRecord", "load_trials", "load_experiment_meta", "searched_params",
    "tune_trial_states", "STATUSES",
    "Tables", "load_tables", "test_metric_for",
    # comparison tables
    "Table", "best_per_factor", "per_param_value", "top_k", "family_summary", "trial_overview",
    "load_reference", "versus_reference",
    # plots, studies, family views
    "learning_curves", "metric_vs_params", "optimisation_history", "importance_plot",
    "StudyInfo", "Importance", "load_studies", "param_importances",
    "View", "family_views",
    # report and best config
    "Report", "Section", "build_report", "write_report", "markdown_report", "FORMATS",
    "best_config", "write_best", "BestError",
    # shipping runs as configurations (and a text-to-program model)
    "ship", "ShipError",
]
