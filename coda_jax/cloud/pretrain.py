"""Cloud side: pretrain the global CTR model on the pooled training rows, embed samples into vectors."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from coda_jax.config import CloudConfig
from coda_jax.data.schema import SampleTable
from coda_jax.models.losses import bce_loss
from coda_jax.progress import progress_bar


def init_params(model: nn.Module, table: SampleTable, seed: int):
    """Initialise ``model``'s parameters (a nested dict) from one row of ``table``."""
    sample = jax.tree_util.tree_map(lambda x: jnp.asarray(x[:1]), table.features())
    return model.init(jax.random.PRNGKey(seed), sample)["params"]


@functools.partial(jax.jit, static_argnames=("model", "optimizer"))
def _epoch(model, optimizer, state, features, labels, batches):
    """One pass of minibatch updates from ``state`` = ``(params, opt_state)``; ``batches`` int [num_batches, B]
    rows of ``features``."""

    def step(carry, idx):
        params, opt_state = carry
        batch = jax.tree_util.tree_map(lambda x: x[idx], features)
        loss, grads = jax.value_and_grad(lambda p: bce_loss(model, p, batch, labels[idx]))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, state, batches)
    return params, opt_state, losses.mean()


def pretrain(model: nn.Module, table: SampleTable, rows: np.ndarray, cfg: CloudConfig, seed: int,
             show_progress: bool = True):
    """Train the global model on ``table`` rows ``rows`` (int [n], the pooled training rows).

    Each epoch shuffles the rows and runs ``n // batch_size`` Adam steps inside one jitted ``lax.scan``.

    Returns:
      ``(params, losses)``: the trained parameter dict and the mean training loss of each epoch.
    """
    rows = np.asarray(rows)
    if rows.size == 0:
        raise ValueError("cloud pretraining: no training rows in the pool")
    params = init_params(model, table, seed)
    optimizer = optax.adam(cfg.learning_rate)
    opt_state = optimizer.init(params)
    features = jax.device_put(table.features(rows))
    labels = jax.device_put(table.label[rows])
    batch = min(cfg.batch_size, rows.size)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in progress_bar(range(cfg.epochs), desc="cloud pretrain", unit="epoch", disable=not show_progress):
        perm = rng.permutation(rows.size)
        batches = perm[: (rows.size // batch) * batch].reshape(-1, batch)
        params, opt_state, loss = _epoch(model, optimizer, (params, opt_state), features, labels,
                                         jnp.asarray(batches, dtype=jnp.int32))
        losses.append(float(loss))
    return params, losses


@functools.partial(jax.jit, static_argnames=("model",))
def _forward(model, params, features):
    return model.apply({"params": params}, features)


def predict(model: nn.Module, params, features: dict, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a feature dict of n rows in fixed-size batches (the tail is padded).

    Returns:
      ``(logits float32 [n], representations float32 [n, H])`` as numpy arrays.
    """
    n = int(features["item"].shape[0])
    logits = reps = None
    for start in range(0, n, batch_size):
        chunk = {k: np.asarray(v[start:start + batch_size]) for k, v in features.items()}
        size = chunk["item"].shape[0]
        if size < batch_size and n > batch_size:   # keep one compiled shape
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - size, 0)]) for k, v in chunk.items()}
        logit, rep = _forward(model, params, chunk)
        if logits is None:                         # filled in place: no second copy of [n, H]
            logits = np.empty(n, np.float32)
            reps = np.empty((n,) + tuple(rep.shape[1:]), np.float32)
        logits[start:start + size] = np.asarray(logit)[:size]
        reps[start:start + size] = np.asarray(rep)[:size]
    if logits is None:
        raise ValueError("predict: no rows to score")
    return logits, reps


def sample_vectors(model: nn.Module, params, table: SampleTable, center_rows: np.ndarray | None = None) -> np.ndarray:
    """The cloud model's representation of every row, centred and L2-normalised: float32 [N, H].

    The last hidden layer is a ReLU output whose rows share a large common component (raw cosine
    similarities sit near 1 for almost any pair), so the mean over ``center_rows`` (the pool; all rows if
    None) is subtracted before normalising: similarity then reflects how samples differ.
    These vectors are what coarse matching searches over and what the device classifier sees.
    """
    _, reps = predict(model, params, table.features())                  # float32 [N, H]
    rows = np.arange(reps.shape[0]) if center_rows is None else np.asarray(center_rows)
    total = np.zeros(reps.shape[1], np.float64)
    for start in range(0, rows.shape[0], 1 << 20):                      # the mean in float64, 1M rows at a time
        total += reps[rows[start:start + (1 << 20)]].sum(axis=0, dtype=np.float64)
    mean = total / max(rows.shape[0], 1)
    for start in range(0, reps.shape[0], 1 << 20):                      # in place: peak memory is the output
        block = reps[start:start + (1 << 20)].astype(np.float64) - mean
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        reps[start:start + (1 << 20)] = block / np.maximum(norm, 1e-12)
    return reps
