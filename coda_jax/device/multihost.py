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

import dataclasses

import numpy as np

USER_AXIS = {"auc": -1, "aug_rows": -1, "nonfinite": -1, "kept_mask": 2, "valid": 0, "vocab_size": 0,
             "user_rows": 0, "aug_own": -1, "classifier_auc": -1}
"""The user axis of each per-user array of the device stage's output (the rest are per-run figures)."""


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Start JAX's distributed runtime before any other JAX call: with no arguments JAX detects the cluster
    (Slurm, Open MPI, Cloud TPU, ...); on CPUs the processes' collectives go over gloo."""
    import jax  # noqa: PLC0415

    jax.config.update("jax_cpu_collectives_implementation", "gloo")     # read by the CPU backend only
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def gather_users(dev, counts: list[int]):
    """Concatenate every process's per-user device arrays in process order (each process's share is the
    next contiguous block of users), padding each share to the largest so every process sends one shape.

    Args:
      dev: this process's :class:`~coda_jax.device.output.DeviceOutput` (its share of ``S_i`` users);
        counts: ``S_i`` of every process, in process order.

    Returns the :class:`~coda_jax.device.output.DeviceOutput` over all ``sum(S_i)`` users (its compile
    report: compiles, cache hits and compile seconds summed over processes).
    """
    from jax.experimental import multihost_utils  # noqa: PLC0415

    width = max(counts)
    arrays = {}
    for key, axis in USER_AXIS.items():
        x = np.asarray(getattr(dev, key))
        axis = axis % x.ndim
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, width - x.shape[axis])
        fill = np.nan if np.issubdtype(x.dtype, np.floating) else 0
        every = np.asarray(multihost_utils.process_allgather(np.pad(x, pad, constant_values=fill), tiled=False))
        arrays[key] = np.concatenate([np.take(every[i], np.arange(n), axis=axis) for i, n in enumerate(counts)],
                                     axis=axis)
    c = dev.compile
    total = np.asarray(multihost_utils.process_allgather(np.array([c.compiles, c.cache_hits, c.seconds],
                                                                  np.float64))).sum(axis=0)
    report = dataclasses.replace(c, compiles=int(total[0]), cache_hits=int(total[1]), seconds=float(total[2]))
    return dev.replace(**arrays, compile=report)


def run_device_stage_processes(cfgs, data, cloud, show_progress: bool = True, compiler=None):
    """:func:`~coda_jax.device.engine.run_device_stage` over every process of a ``jax.distributed`` run: this
    process's share of the users on its local devices, then :func:`gather_users`. With one process it is
    ``run_device_stage`` itself. Returns a :class:`~coda_jax.device.output.DeviceOutput` over every user."""
    import jax  # noqa: PLC0415

    from coda_jax.device.engine import run_device_stage, share_of_users  # noqa: PLC0415

    n, me = jax.process_count(), jax.process_index()
    if n == 1:
        return run_device_stage(cfgs, data, cloud, show_progress, compiler)
    bounds = np.linspace(0, len(data.users), n + 1).round().astype(np.int64)
    counts = [int(b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    data_i, rows_i = share_of_users(data, cloud.rows, me, n)
    dev = run_device_stage(cfgs, data_i, dataclasses.replace(cloud, rows=rows_i), show_progress, compiler,
                           devices=jax.local_devices())
    return gather_users(dev, counts)
