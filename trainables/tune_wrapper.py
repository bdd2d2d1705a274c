"""The Tune trainable: the shared loop with reporting to Tune and resume from Tune checkpoints.

Datasets arrive through Ray's object store: ``tune.with_parameters`` carries a dict of object refs keyed by
``Family.data_key(config)``, one dataset each, and a trial fetches only its own; a trial whose key is missing
(a data parameter searched over a range, or more choices than the search builds up front) builds its own.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import ray
from ray import tune

from .loop import train
from .registry import get_family

__all__ = ["run_trial", "make_trainable", "quiet_swallowed_exits"]


def _drop_swallowed_exit(unraisable: Any, _default=sys.__unraisablehook__) -> None:
    if isinstance(unraisable.exc_value, SystemExit):
        return
    _default(unraisable)


def quiet_swallowed_exits() -> None:
    """Keep a worker's SIGTERM from printing a traceback when it lands inside a callback.

    Ray's workers turn SIGTERM (sent when a job's driver exits, or a node is drained) into ``SystemExit``.
    When the signal arrives while Python runs a weakref callback or a ``__del__``, that exception cannot
    propagate: Python drops it and prints "Exception ignored in ..." with a traceback into the job's log,
    and the raylet ends the process with SIGKILL shortly after. Only that swallowed ``SystemExit`` goes
    unprinted; every other unraisable exception is still reported by Python's own hook.
    """
    sys.unraisablehook = _drop_swallowed_exit


def run_trial(config: dict[str, Any], family_name: str, datasets: dict | None = None) -> None:
    """One Tune trial: ``config`` is Tune's plain parameter dict, made the family's typed config here, once."""
    quiet_swallowed_exits()
    # Datasets from the object store are read-only numpy arrays; the loop only reads them, so torch's
    # warning on wrapping them (once per trial process) is noise in every trial's log.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
    family = get_family(family_name)
    config = family.make_config(config)
    data = (datasets or {}).get(family.data_key(config))
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    resources = tune.get_context().get_trial_resources()
    cpus = resources.required_resources.get("CPU") if resources is not None else None

    def report(metrics: dict[str, Any], checkpoint_path: str) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_path))

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            train(family, config, data=data, resume_from=ckpt_dir, report=report, cpus=cpus)
    else:
        train(family, config, data=data, report=report, cpus=cpus)


def make_trainable(family_name: str, datasets: dict | None = None):
    """``run_trial`` bound to a family and to the search's datasets (object refs, or the datasets themselves)."""
    return tune.with_parameters(run_trial, family_name=family_name, datasets=datasets or {})
