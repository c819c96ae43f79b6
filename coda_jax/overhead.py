"""What a real device would pay for CoDA: bytes down and up, storage, and on-device FLOPs (estimates)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.config import Config
from coda_jax.data.dataset import Dataset
from coda_jax.device.costs import CostInputs, finetune_flops
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


def classifier_forward_flops(classifier, dim: int) -> float:
    """FLOPs of one sample classifier forward pass on one vector of width ``dim``: two per weight of its
    matrices (``kernel`` leaves of two or more axes), from its parameter shapes."""
    shapes = jax.eval_shape(lambda: classifier.init(jax.random.PRNGKey(0), jnp.zeros((1, dim), jnp.float32)))
    return float(sum(2 * np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes) if len(leaf.shape) >= 2))


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
    cls_fwd = classifier_forward_flops(dev.classifier, vectors.shape[1])
    flops_cls = cfg.classifier.steps * 3.0 * cls_fwd * (n_local + n_neg)
    flops_ft = None if fwd is None else float(finetune_flops(cfg, n_local, fwd).mean())
    out = {
        "bytes_down": float(down.mean()), "bytes_up": float((n_local * vec_bytes).mean()),
        "storage_bytes": float(((n_local + kept) * row_bytes + model_bytes).mean()),
        "model_copy_bytes": float(model_bytes.mean()), "row_bytes": row_bytes, "vector_bytes": vec_bytes,
        "flops_classifier": float(flops_cls.mean()), "flops_finetune": flops_ft,
        "forward_flops_per_sample": fwd,
    }
    costs = CostInputs(cfg, rows, model_bytes, row_bytes, n_local, fwd)
    for method in dev.methods:             # a method's own costs beyond the model copy (mpda: its matched rows)
        extra = None if method.overhead is None else method.overhead(costs)
        if extra is not None:
            out[method.name] = extra
    return out
