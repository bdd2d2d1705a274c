"""The search engine: space + options -> Ray Tune Tuner with an Optuna searcher; resume; CLI."""

from .engine import SearchError, SearchOptions, SearchOutcome, resume_search, run_search

__all__ = ["SearchError", "SearchOptions", "SearchOutcome", "run_search", "resume_search"]
