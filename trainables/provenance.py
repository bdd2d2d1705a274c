"""Where and with what a run trained: git commit, CPU model and vector units, torch, Ray and Python versions.

Float results, hence learning curves and the epoch a run selects, differ between CPUs (AVX2, AVX-512 and
AVX512-BF16 units round differently) and between library versions, so every run records them when it starts
(and again at every resume: a run resumed on another machine records both). The training loop keeps the
list in each checkpoint's ``metrics.json`` under ``provenance``; ``mathtune train`` copies it into
``result.json``, searches write theirs (the driver's) into ``EXP/provenance.json``, and a shipped
configuration carries its runs' lists, not the machine that shipped it.

Example::

    from mathtune.trainables.provenance import collect
    print(collect()["cpu"])     # 'AMD EPYC 9R14 (x86_64, AVX512-BF16)'
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

__all__ = ["collect", "cpu_name", "git_commit", "describe", "EXECUTION_KEYS", "configuration_of", "provenance_of",
           "machine_of", "shown_path"]

# Config keys that say how a run was executed, not what it trains: each record here carries their values, and
# what ships (a configuration, a model's config.json) leaves them out, so it runs as the machine at hand allows.
EXECUTION_KEYS = ("threads", "device")

_SOURCE = Path(__file__).resolve().parents[1]  # the checkout in an editable install
NO_PROVENANCE = "not recorded (the runs trained before runs recorded their machine)"


def cpu_name() -> str:
    """The CPU's model name and its widest vector units, e.g. ``AMD EPYC 9R14 (x86_64, AVX512-BF16)``."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    units = "AVX512-BF16" if "avx512_bf16" in flags else "AVX512" if "avx512f" in flags else \
        "AVX2" if "avx2" in flags else "no AVX2"
    if "amx_tile" in flags:
        units += ", AMX"
    return f"{name} ({platform.machine()}, {units})"


@functools.lru_cache(maxsize=1)
def git_commit() -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout mathtune runs from, None when it is not one (an
    installed wheel) or git is missing."""
    try:
        sha = subprocess.run(["git", "-C", str(_SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(_SOURCE), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import torch

    git = git_commit()
    return {"git_commit": git["commit"] if git else None, "git_dirty": git["dirty"] if git else None,
            "cpu": cpu_name(), "cpu_count": __import__("os").cpu_count(),
            "torch": torch.__version__, "ray": _version("ray"), "optuna": _version("optuna"),
            "mathtune": _version("mathtune"), "python": platform.python_version(),
            "platform": f"{sys.platform}-{platform.machine()}"}


def collect(**extra: Any) -> dict[str, Any]:
    """This process's provenance now: the static facts above plus the start time and ``extra`` (e.g. the
    torch threads and device a run trains with)."""
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), **_static(), **extra}


def describe(entry: dict[str, Any]) -> str:
    """One line: ``AMD EPYC 9R14 (x86_64, AVX512-BF16), 1 torch thread(s), torch 2.13.0+cpu, Ray 2.60.0,
    commit 2ac9d50``."""
    parts = [str(entry.get("cpu", "?"))]
    if entry.get("threads") is not None:
        parts.append(f"{entry['threads']} torch thread(s)")
    if entry.get("device") and entry["device"] != "cpu":
        parts.append(f"on {entry['device']}")
    parts.append(f"torch {entry.get('torch', '?')}")
    if entry.get("ray"):
        parts.append(f"Ray {entry['ray']}")
    if entry.get("git_commit"):
        parts.append(f"commit {entry['git_commit'][:7]}" + (" with local changes" if entry.get("git_dirty") else ""))
    return ", ".join(parts)


# -- what a shipped file records of its runs (analysis/ship.py, and a family that ships its model) --------------


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


def shown_path(path: str | Path) -> str:
    """``path`` as a message shows it: relative to the checkout when inside it (``trainables/configs/x.json``)."""
    path = Path(path).resolve()
    return str(path.relative_to(_SOURCE)) if path.is_relative_to(_SOURCE) else str(path)
