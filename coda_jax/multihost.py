"""Several processes (and hosts) on JAX's own distributed runtime (``jax.distributed``).

Every process runs the data and cloud stages itself (deterministic given the config's seed, so each holds
the same cloud model, vectors and candidates), takes its contiguous share of the simulated users
(:func:`coda_jax.device.engine.share_of_users`), runs the device stage on its own devices, and the per-user
arrays are gathered over processes (``multihost_utils.process_allgather``), so every process ends with the
whole population's device output and process 0 writes ``results.json``. A user's result never depends on
which process ran it: its keys come from its global user index.

  coda-sim run --coordinator HOST:PORT --num-processes N --process-id I ...     (or --distributed: detect)
"""

from __future__ import annotations

import numpy as np

USER_AXIS = {"auc": -1, "aug_rows": -1, "nonfinite": -1, "kept": -1, "auc_mean": -1, "kept_mask": 2,
             "valid": 0, "vocab_size": 0, "user_rows": 0}
"""The user axis of each per-user array of the device stage's output (the rest are per-run figures)."""


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Start JAX's distributed runtime before any other JAX call: with no arguments JAX detects the cluster
    (Slurm, Open MPI, Cloud TPU, ...); on CPUs the processes' collectives go over gloo."""
    import jax  # noqa: PLC0415

    jax.config.update("jax_cpu_collectives_implementation", "gloo")     # read by the CPU backend only
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def gather_users(dev: dict, counts: list[int]) -> dict:
    """Concatenate every process's per-user device arrays in process order (each process's share is the
    next contiguous block of users), padding each share to the largest so every process sends one shape.

    Args:
      dev: this process's output of :func:`coda_jax.device.engine.run_device_stage` (its share of ``S_i``
        users); counts: ``S_i`` of every process, in process order.

    Returns the output over all ``sum(S_i)`` users (per-run figures: compiles and compile time summed over
    processes, the rest this process's).
    """
    from jax.experimental import multihost_utils  # noqa: PLC0415

    width = max(counts)
    out = dict(dev)
    for key, axis in USER_AXIS.items():
        if key not in dev:
            continue
        x = np.asarray(dev[key])
        axis = axis % x.ndim
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, width - x.shape[axis])
        fill = np.nan if np.issubdtype(x.dtype, np.floating) else 0
        every = np.asarray(multihost_utils.process_allgather(np.pad(x, pad, constant_values=fill), tiled=False))
        out[key] = np.concatenate([np.take(every[i], np.arange(n), axis=axis) for i, n in enumerate(counts)],
                                  axis=axis)
    for key in ("compiles", "cache_hits", "compile_seconds"):
        if key in dev:
            out[key] = float(np.sum(multihost_utils.process_allgather(np.float64(dev[key]))))
            out[key] = int(out[key]) if key != "compile_seconds" else out[key]
    return out


def run_device_stage_processes(cfgs, data, model, params, vectors, rows, show_progress: bool = True,
                               compiler=None) -> dict:
    """:func:`~coda_jax.device.engine.run_device_stage` over every process of a ``jax.distributed`` run: this
    process's share of the users on its local devices, then :func:`gather_users`. With one process it is
    ``run_device_stage`` itself."""
    import jax  # noqa: PLC0415

    from coda_jax.device.engine import run_device_stage, share_of_users  # noqa: PLC0415

    n, me = jax.process_count(), jax.process_index()
    if n == 1:
        return run_device_stage(cfgs, data, model, params, vectors, rows, show_progress, compiler)
    bounds = np.linspace(0, len(data.users), n + 1).round().astype(np.int64)
    counts = [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    data_i, rows_i = share_of_users(data, rows, me, n)
    dev = run_device_stage(cfgs, data_i, model, params, vectors, rows_i, show_progress, compiler,
                           devices=jax.local_devices())
    return gather_users(dev, counts)
