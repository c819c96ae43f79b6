"""What a real device would pay for CoDA: bytes down and up, storage, and on-device FLOPs (estimates)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.cloud.output import UserRows
from coda_jax.config import Config
from coda_jax.data.dataset import Dataset
from coda_jax.models.features import param_group

FLOAT_BYTES = 4
INT_BYTES = 4


def forward_flops_per_sample(model, params, features_one: dict) -> float | None:
    """FLOPs of one forward pass on one sample, from XLA's cost analysis (None where unavailable)."""
    try:
        fn = jax.jit(lambda p, f: model.apply({"params": p}, f))
        cost = fn.lower(params, features_one).compile().cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0]
        return float(cost["flops"])
    except Exception:  # noqa: BLE001 - cost analysis is best-effort across jax versions and backends
        return None


def finetune_flops(cfg: Config, n_local: np.ndarray, fwd: float) -> np.ndarray:
    """On-device FLOPs of one fine-tuning run per user: float [S] from local row counts [S] and the forward
    FLOPs of one sample. A training step costs ~3 forward passes per minibatch row."""
    ft = cfg.finetune
    return np.full(n_local.shape, ft.steps * ft.batch_size * 3.0 * fwd)


def estimate(cfg: Config, data: Dataset, cloud, dev) -> dict:
    """Per-device overhead of the ``coda`` method, averaged over simulated users.

    Args:
      cloud: the run's :class:`~coda_jax.cloud.output.CloudOutput` (model, parameters, vectors, rows).
      dev: one sweep point's :class:`~coda_jax.device.output.DeviceOutput`: the candidates each device kept
        (mean over repeats) and the item and user rows of each device's model copy.

    Returns a dict of means: ``bytes_down`` (model copy + candidates with their vectors, + random negatives
    if the classifier uses them), ``bytes_up`` (local sample vectors sent for matching), ``storage_bytes``
    (local + kept rows + model copy), ``flops_classifier``, ``flops_finetune``, and the per-item pieces.
    """
    model, params, vectors, rows = cloud.model, cloud.params, cloud.vectors, cloud.rows
    kept, vocab_size, users_held = dev.kept[0].mean(axis=0), dev.vocab_size, dev.user_rows
    table = data.table
    row_bytes = INT_BYTES * (2 + table.genres.shape[1] + 2 * table.history_len) + FLOAT_BYTES  # ids + label
    vec_bytes = FLOAT_BYTES * vectors.shape[1]
    per_user = sum(int(np.prod(t.shape[1:])) for k, v in params.items() if param_group(k) == "user"
                   for t in jax.tree_util.tree_leaves(v)) * FLOAT_BYTES
    per_item = sum(int(np.prod(t.shape[1:])) for k, v in params.items() if param_group(k) == "item"
                   for t in jax.tree_util.tree_leaves(v)) * FLOAT_BYTES
    fixed = sum(int(np.prod(t.shape)) for k, v in params.items() if param_group(k) not in ("item", "user")
                for t in jax.tree_util.tree_leaves(v)) * FLOAT_BYTES
    model_bytes = fixed + per_item * vocab_size.astype(np.float64) + per_user * users_held.astype(np.float64)
    n_local = rows.counts("local").astype(np.float64)
    n_cand = rows.counts("candidates").astype(np.float64)
    n_neg = n_cand if cfg.classifier.negatives == "candidates" else rows.counts("random").astype(np.float64)
    down = model_bytes + n_cand * (row_bytes + vec_bytes)
    if cfg.classifier.negatives == "random":
        down = down + n_neg * vec_bytes
    one = jax.tree_util.tree_map(lambda x: jnp.asarray(x[:1]), table.features(np.arange(1)))
    fwd = forward_flops_per_sample(model, params, one)
    d = vectors.shape[1]
    cls_fwd = 2 * d if cfg.classifier.kind == "logreg" else 2 * (d * cfg.classifier.hidden + cfg.classifier.hidden)
    flops_cls = cfg.classifier.steps * 3.0 * cls_fwd * (n_local + n_neg)
    flops_ft = None if fwd is None else float(finetune_flops(cfg, n_local, fwd).mean())
    out = {
        "bytes_down": float(down.mean()), "bytes_up": float((n_local * vec_bytes).mean()),
        "storage_bytes": float(((n_local + kept) * row_bytes + model_bytes).mean()),
        "model_copy_bytes": float(model_bytes.mean()), "row_bytes": row_bytes, "vector_bytes": vec_bytes,
        "flops_classifier": float(flops_cls.mean()), "flops_finetune": flops_ft,
        "forward_flops_per_sample": fwd,
    }
    if "mpda" in cfg.methods and rows.matched_users is not None:
        out["mpda"] = mpda_overhead(cfg, rows, model_bytes, row_bytes, n_local, fwd)
    return out


def mpda_overhead(cfg: Config, rows: UserRows, model_bytes: np.ndarray, row_bytes: int, n_local: np.ndarray,
                  fwd: float | None) -> dict:
    """Per-device means for the ``mpda`` method: bytes down (model copy + every matched user's rows), the
    matched rows, and FLOPs (a trial fine-tune per matched user, a pass over the local rows to check it, the
    final local fine-tune)."""
    offsets = rows.pool[0]
    matched = rows.matched_users
    sizes = np.where(matched >= 0, offsets[np.maximum(matched, 0) + 1] - offsets[np.maximum(matched, 0)], 0)
    n_rows = np.minimum(sizes, cfg.mpda.rows_per_user).sum(axis=1).astype(np.float64)
    n_users = (matched >= 0).sum(axis=1).astype(np.float64)
    flops = None
    if fwd is not None:
        per_trial = cfg.mpda.steps * cfg.finetune.batch_size * 3.0 * fwd
        flops = n_users * per_trial + (n_users + 1) * n_local * fwd + finetune_flops(cfg, n_local, fwd)
        flops = float(flops.mean())
    return {"bytes_down": float((model_bytes + n_rows * row_bytes).mean()), "matched_rows": float(n_rows.mean()),
            "flops": flops}
