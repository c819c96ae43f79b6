"""What a device pays for a method beyond the shared model copy (host estimates): the inputs every method's
cost function sees (:class:`CostInputs`), fine-tuning FLOPs, and the ``mpda`` method's own costs."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CostInputs:
    """What a method's cost function (``Method.overhead``) sees, over ``S`` simulated users.

    Attributes:
      cfg: the run config; rows: the simulated users' :class:`~coda_jax.cloud.output.UserRows`.
      model_bytes: float [S] each device's model copy; row_bytes: bytes of one sample row.
      n_local: float [S] local rows per device; fwd: FLOPs of one forward pass on one sample (None where the
        backend cannot say).
    """

    cfg: object
    rows: object
    model_bytes: np.ndarray
    row_bytes: int
    n_local: np.ndarray
    fwd: float | None


def finetune_flops(cfg, n_local: np.ndarray, fwd: float) -> np.ndarray:
    """On-device FLOPs of one fine-tuning run per user: float [S] from local row counts [S] and the forward
    FLOPs of one sample. A training step costs ~3 forward passes per minibatch row."""
    ft = cfg.finetune
    return np.full(n_local.shape, ft.steps * ft.batch_size * 3.0 * fwd)


def mpda_costs(x: CostInputs) -> dict | None:
    """Per-device means for the ``mpda`` method: bytes down (model copy + every matched user's rows), the
    matched rows, and FLOPs (a trial fine-tune per matched user, a pass over the local rows to check it, the
    final local fine-tune). None when the run matched no users."""
    cfg, rows, fwd = x.cfg, x.rows, x.fwd
    if rows.matched_users is None:
        return None
    offsets = rows.pool[0]
    matched = rows.matched_users
    sizes = np.where(matched >= 0, offsets[np.maximum(matched, 0) + 1] - offsets[np.maximum(matched, 0)], 0)
    n_rows = np.minimum(sizes, cfg.mpda.rows_per_user).sum(axis=1).astype(np.float64)
    n_users = (matched >= 0).sum(axis=1).astype(np.float64)
    flops = None
    if fwd is not None:
        per_trial = cfg.mpda.steps * cfg.finetune.batch_size * 3.0 * fwd
        flops = n_users * per_trial + (n_users + 1) * x.n_local * fwd + finetune_flops(cfg, x.n_local, fwd)
        flops = float(flops.mean())
    return {"bytes_down": float((x.model_bytes + n_rows * x.row_bytes).mean()), "matched_rows": float(n_rows.mean()),
            "flops": flops}
