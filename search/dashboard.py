"""``mathtune dashboard``: serve an experiment's Optuna studies with optuna-dashboard on 127.0.0.1.

The studies live in the storage the experiment records in ``mathtune.json`` (the journal file
``optuna.journal`` inside the folder by default, ``optuna.db`` in older experiments, or the ``--optuna-storage`` URL the search was given). The
dashboard only reads them, so it works while the search is still writing and after it has finished.

Example::

    >>> server = open_dashboard("runs/arith-text2text-addsub-20261203-101500", port=0)  # doctest: +SKIP
    >>> server.url, server.study_names                                                   # doctest: +SKIP
    ('http://127.0.0.1:41123/', ['arith-text2text-addsub-...-split=0.5'])
    >>> server.serve_forever()                                                           # doctest: +SKIP
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from mathtune.analysis.store import JOURNAL_PREFIX, open_optuna_storage, read_experiment, study_storage_url

from .engine import EXPERIMENT_FILE, SearchError

__all__ = ["DashboardServer", "open_dashboard", "experiment_storage"]

HOST = "127.0.0.1"


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request would drown the terminal
        pass


@dataclass
class DashboardServer:
    """A bound, not yet serving, optuna-dashboard HTTP server over one experiment's studies."""

    httpd: WSGIServer
    storage: Any  # the optuna storage the dashboard reads
    study_names: list[str]  # one study per study-factor value

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}/"

    def trial_count(self) -> int:
        """Trials in the experiment's studies now (a running search keeps adding them)."""
        import optuna

        return sum(len(optuna.load_study(study_name=name, storage=self.storage).get_trials(deepcopy=False))
                   for name in self.study_names)

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def shutdown(self) -> None:
        self.httpd.shutdown()


def experiment_storage(exp_dir: str | Path) -> str:
    """The Optuna storage URL an experiment folder records (one-line :class:`SearchError` otherwise)."""
    exp_dir = Path(exp_dir).expanduser()
    if not exp_dir.is_dir():
        raise SearchError(f"{exp_dir}: no such experiment folder")
    record = read_experiment(exp_dir, need=("optuna_storage",), error=SearchError, problem="corrupt")
    url = record.optuna_storage
    if not url:
        raise SearchError(f"{exp_dir / EXPERIMENT_FILE}: corrupt experiment file (no 'optuna_storage')")
    local = study_storage_url(exp_dir, url)  # the folder's own file first: a moved folder reads its studies
    if local is None:  # a recorded file that is gone: opening it would create an empty storage
        path = url.split("sqlite:///", 1)[-1] if url.startswith("sqlite:///") else url[len(JOURNAL_PREFIX):]
        raise SearchError(f"{exp_dir}: no Optuna study yet ({path} does not exist)")
    return local


def open_dashboard(exp_dir: str | Path, *, port: int = 8080) -> DashboardServer:
    """Bind optuna-dashboard for the experiment's studies on 127.0.0.1:``port`` (0 = any free port).

    Raises :class:`SearchError` (one line) when the folder has no study or the port is taken."""
    import optuna_dashboard

    if not 0 <= port <= 65535:
        raise SearchError(f"--port {port}: not a port number (0-65535; 0 picks a free one)")
    url = experiment_storage(exp_dir)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        storage = open_optuna_storage(url)
        studies = storage.get_all_studies()
    except Exception as exc:  # noqa: BLE001 - a storage that cannot be read: say which and why, in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchError(f"{exp_dir}: cannot read its Optuna storage {url} ({first})") from None
    if not studies:
        raise SearchError(f"{exp_dir}: its Optuna storage holds no study yet (has the search started a trial?)")
    app = optuna_dashboard.wsgi(storage)
    try:
        httpd = make_server(HOST, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SearchError(f"port {port} on {HOST} is taken; pick another with --port") from None
        raise SearchError(f"cannot listen on {HOST}:{port} ({exc.strerror or exc})") from None
    return DashboardServer(httpd=httpd, storage=storage, study_names=[s.study_name for s in studies])
