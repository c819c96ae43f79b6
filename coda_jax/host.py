"""The host settings the ``coda-sim`` command makes, for research code too: JAX's persistent compilation cache
(:func:`enable_compile_cache`) and one CPU device per core (:func:`use_host_devices`).

From Python::

    import coda_jax as cj
    cj.use_host_devices()          # before the first JAX computation: the user axis split over every core
    cj.enable_compile_cache()      # a second run of the same structure loads its programs instead of compiling
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

_COUNT_FLAG = "--xla_force_host_platform_device_count"


def compile_cache_dir() -> str:
    """Where compiled programs are kept by default: ``$CODA_JAX_CACHE``, else ``$XDG_CACHE_HOME/coda-jax/xla``
    (``~/.cache/coda-jax/xla``)."""
    if os.environ.get("CODA_JAX_CACHE"):
        return os.environ["CODA_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "coda-jax", "xla")


def enable_compile_cache(path: str | os.PathLike | None = None, min_compile_seconds: float = 1.0) -> str:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`compile_cache_dir`) for the rest
    of the process: programs that took at least ``min_compile_seconds`` to compile are kept on disk, so a second
    run (or sweep) of the same structure compiles its device stage zero times (``Results.timings``:
    ``device_stage_compiles`` 0, ``device_stage_cache_hits`` > 0). Returns the folder. The CLI calls it unless
    ``--no-compile-cache``."""
    import jax  # noqa: PLC0415

    folder = os.fspath(path) if path is not None else compile_cache_dir()
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return folder


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_host_devices(count: int | None = None, environ: MutableMapping[str, str] | None = None) -> int:
    """Give JAX ``count`` CPU devices (``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``), so the
    device stage splits its user axis over every core, as the CLI does (on the 2-core machine two devices ran
    the stage 1.4x faster than one). Accelerators are not affected.

    ``count`` None: a count already in ``XLA_FLAGS`` wins, else ``$CODA_JAX_HOST_DEVICES``, else one device per
    core. An explicit ``count`` replaces any count in ``XLA_FLAGS``. Returns the count in effect (1: nothing set).

    Takes effect only before JAX's backend starts (the first ``jax.devices()`` or array); after that it raises
    ``RuntimeError`` unless the backend already has that many CPU devices. ``environ``: the mapping to edit
    instead of ``os.environ`` (no backend check then).
    """
    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    if count is None and _COUNT_FLAG in flags:
        return int(flags.split(_COUNT_FLAG + "=", 1)[1].split()[0])
    if count is None:
        raw = env.get("CODA_JAX_HOST_DEVICES") or str(_cores())
        count = int(raw) if raw.isdigit() else 1
    if count < 1:
        raise ValueError(f"use_host_devices: count must be >= 1, got {count}")
    if environ is None:
        _check_backend_not_started(count)
    kept = " ".join(f for f in flags.split() if not f.startswith(_COUNT_FLAG))
    if count > 1:
        env["XLA_FLAGS"] = (kept + f" {_COUNT_FLAG}={count}").strip()
    elif _COUNT_FLAG in flags:
        env["XLA_FLAGS"] = kept
    return count


def _check_backend_not_started(count: int) -> None:
    try:
        from jax._src.xla_bridge import backends_are_initialized  # noqa: PLC0415
    except ImportError:                     # pragma: no cover - another jax layout: cannot tell
        return
    if not backends_are_initialized():
        return
    import jax  # noqa: PLC0415

    have = len(jax.devices("cpu"))
    if have != count:
        raise RuntimeError(f"use_host_devices: JAX's backend already started with {have} CPU device(s); call "
                           f"use_host_devices({count}) before the first JAX computation (jax.devices(), an array)")
