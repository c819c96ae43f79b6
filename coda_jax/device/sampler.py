"""Fine-tuning minibatches drawn before the training scan: shuffled epochs without replacement.

A device fine-tunes on ``S`` steps of ``B`` rows. Every index and loss weight of every step is drawn up
front (:func:`epoch_batches`), so the step inside ``lax.scan`` is only gather, forward, backward, update.

Rows come in strata: the local rows, and the augmented rows (``stratified``), or their union (``pooled``).
Within a stratum the rows with a positive weight are visited as shuffled epochs: each epoch is a random
permutation of those rows, and the stratum's ``S * B_s`` draws run through consecutive epochs. A row's
weight enters the loss, not its chance of being drawn: a drawn row ``i`` of stratum ``s`` carries

    w_i * n_s / (B_s * W),     n_s = rows of s with w > 0,  W = the total weight of every stratum,

so over one epoch of each stratum the weighted per-row losses add up to the weighted mean loss
``sum_i w_i loss_i / W`` over all rows (an unbiased step estimate of the fine-tuning objective).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _mix(x: jnp.ndarray) -> jnp.ndarray:
    """A uint32 avalanche (MurmurHash3's finalizer): every output bit depends on every input bit."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def random_bijection(i: jnp.ndarray, n: jnp.ndarray, round_keys: jnp.ndarray) -> jnp.ndarray:
    """A keyed pseudo-random permutation of ``[0, n)`` applied to ``i`` (uint32 [...] < n): a four-round
    Feistel network over the smallest even number of bits covering ``n``, cycle-walked back into range.

    ``n`` may be traced; ``round_keys`` uint32 [..., 4] (broadcast against ``i``). The value depends only on
    ``(i, n, round_keys)``, never on array shapes, so draws do not change with padding.
    """
    bits = 2 * ((32 - jax.lax.clz(jnp.maximum(n, 2).astype(jnp.uint32) - 1) + 1) // 2)    # even, 2^bits >= n
    half = (bits // 2).astype(jnp.uint32)
    low = (jnp.uint32(1) << half) - jnp.uint32(1)

    def feistel(x):
        left, right = x >> half, x & low
        for k in range(4):
            left, right = right, left ^ (_mix(right ^ round_keys[..., k]) & low)
        return (left << half) | right

    first = feistel(i.astype(jnp.uint32))
    return jax.lax.while_loop(lambda y: jnp.any(y >= n), lambda y: jnp.where(y >= n, feistel(y), y), first)


def epoch_order(key: jax.Array, valid: jnp.ndarray, total: int) -> jnp.ndarray:
    """``total`` row indices running through shuffled epochs of the ``valid`` rows.

    Args:
      key: PRNG key.
      valid: bool [N], the rows to visit (padding and zero-weight rows False).
      total: number of draws (static).

    Returns:
      int32 [total]: draw ``p`` is the valid row of rank ``perm_e(p % n)`` (in row order) of epoch
      ``e = p // n`` (``n`` = valid rows), ``perm_e`` a keyed random permutation (:func:`random_bijection`),
      so each valid row appears once per epoch and a row outside ``valid`` never does (if no row is valid,
      every draw is row 0; the caller gives it zero weight). The draws depend on the key and the valid rows
      only, not on how much padding ``valid`` has: a user's result does not change with its chunk's shapes.
    """
    n = jnp.sum(valid, dtype=jnp.int32)
    n1 = jnp.maximum(n, 1).astype(jnp.uint32)
    rows = jnp.nonzero(valid, size=valid.shape[0], fill_value=0)[0]         # rank -> row
    base = jax.random.bits(key, (4,), jnp.uint32)
    p = jnp.arange(total, dtype=jnp.uint32)
    epoch, rank = p // n1, p % n1
    round_keys = _mix(base[None, :] ^ _mix(epoch[:, None] * jnp.uint32(0x9E3779B9) + jnp.arange(4, dtype=jnp.uint32)))
    return rows[random_bijection(rank, n1, round_keys)].astype(jnp.int32)


def epoch_batches(key: jax.Array, local_weights: jnp.ndarray, aug_weights: jnp.ndarray | None, cfg):
    """Every fine-tuning step's row indices and loss weights.

    Args:
      key: PRNG key of the fine-tuning run.
      local_weights: float [Nl] (0 on padding and rows not to train on).
      aug_weights: float [Na] or None; rows are indexed local first, then augmented (``Nl + j``).
      cfg: the :class:`~coda_jax.config.FinetuneConfig` (its structure is static): ``steps`` and
        ``batch_size`` S and B; ``sampling``: ``"pooled"`` (B rows of the union) or ``"stratified"`` (B local
        + ``aug_batch_size`` augmented rows, 0 = B). Without augmented rows both draw B local rows. The local
        stratum is always drawn with ``split(key)[0]``: runs that share a key see the same local rows
        (common random numbers).

    Returns:
      ``(idx int32 [S, B_total], weight float32 [S, B_total])``; ``sum(weight[s] * loss[idx[s]])`` estimates
      the weighted mean loss (see the module docstring).
    """
    steps, batch_size, aug_batch_size, sampling = cfg.steps, cfg.batch_size, cfg.aug_batch_size, cfg.sampling
    w_local = jnp.maximum(jnp.asarray(local_weights, jnp.float32), 0.0)
    k_local, k_aug = jax.random.split(key)
    if aug_weights is None:
        strata = [(w_local, 0, batch_size, k_local)]
    else:
        w_aug = jnp.maximum(jnp.asarray(aug_weights, jnp.float32), 0.0)
        if sampling == "pooled":
            strata = [(jnp.concatenate([w_local, w_aug]), 0, batch_size, k_local)]
        else:
            strata = [(w_local, 0, batch_size, k_local),
                      (w_aug, w_local.shape[0], aug_batch_size or batch_size, k_aug)]
    total_weight = jnp.maximum(sum(jnp.sum(w) for w, *_ in strata), 1e-12)
    idx, weight = [], []
    for w, offset, b, k in strata:
        valid = w > 0
        order = epoch_order(k, valid, steps * b).reshape(steps, b)
        n = jnp.sum(valid, dtype=jnp.float32)
        idx.append(order + offset)
        weight.append(w[order] * (n / (b * total_weight)))
    return jnp.concatenate(idx, axis=1), jnp.concatenate(weight, axis=1)
