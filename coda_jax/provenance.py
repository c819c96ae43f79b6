"""What produced a result: package versions, the git commit, the device, the start time and the command line.

:func:`provenance` is written into every ``results.json`` (``Results.provenance``) next to
:data:`RESULTS_SCHEMA_VERSION`, so a figure in a paper can be traced to the code and machine that made it.
Files written before the schema version existed read as version 1 (``coda-sim combine`` and ``report`` need
neither field).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path

from coda_jax.version import __version__

RESULTS_SCHEMA_VERSION = 2
"""Version of the ``results.json`` layout: 2 added ``schema_version`` and ``provenance``; files without a
``schema_version`` are version 1."""

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "scann")
"""Distributions whose installed versions are recorded (None where one is not installed)."""

_ROOT = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str | None]:
    """``{"coda-jax": version, "jax": ..., ...}`` of :data:`PACKAGES`, read from installed metadata (no import)."""
    out: dict[str, str | None] = {"coda-jax": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: Path = _ROOT) -> dict[str, str | bool | None]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout holding the code (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def device_info() -> dict:
    """The JAX backend a run used: ``{"platform", "kind", "count", "process_count"}``."""
    import jax  # noqa: PLC0415 - starting the backend is the caller's choice

    devices = jax.devices()
    return {"platform": devices[0].platform, "kind": devices[0].device_kind, "count": len(devices),
            "process_count": jax.process_count()}


def utc_now() -> str:
    """The current time, ISO 8601 in UTC (seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(started_at: str | None = None, argv: list[str] | None = None) -> dict:
    """What produced a result: ``{"versions", "git", "device", "started_at", "finished_at", "command_line",
    "python"}``; ``started_at`` defaults to now, ``argv`` to ``sys.argv`` (the command line as one shell-quoted
    string)."""
    return {"versions": package_versions(), "git": git_state(), "device": device_info(),
            "started_at": started_at or utc_now(), "finished_at": utc_now(),
            "command_line": shlex.join(sys.argv if argv is None else argv), "python": sys.version.split()[0]}
