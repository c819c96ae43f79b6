"""Fine-tuning minibatches: shuffled epochs without replacement, drawn in blocks of steps.

A device fine-tunes on ``S`` steps of ``B`` rows. Draw ``p`` of a stratum is a pure function of the key, the
valid rows and ``p`` alone, so the draws of any block of steps can be made on their own: :func:`batch_plan`
holds what every block shares, :func:`draw_steps` draws the indices and loss weights of ``count`` steps from
step ``first``, and :func:`epoch_batches` draws all ``S`` at once (the same numbers). The fine-tuning scan
(:func:`coda_jax.device.train.finetune`) draws one block at a time inside the scan, so its memory does not
grow with the number of steps.

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


def _epoch_rows(valid: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(rows int [N], n1 uint32)``: the valid rows in row order (rank -> row) and ``max(valid rows, 1)``."""
    n = jnp.sum(valid, dtype=jnp.int32)
    return jnp.nonzero(valid, size=valid.shape[0], fill_value=0)[0], jnp.maximum(n, 1).astype(jnp.uint32)


def _epoch_draws(base: jnp.ndarray, rows: jnp.ndarray, n1: jnp.ndarray, p: jnp.ndarray) -> jnp.ndarray:
    """Rows of draws ``p`` (uint32 [...]): the valid row of rank ``perm_e(p % n1)`` of epoch ``p // n1``,
    ``perm_e`` keyed by ``base`` (uint32 [4]) and ``e``. int32 [...]."""
    epoch, rank = p // n1, p % n1
    round_keys = _mix(base ^ _mix(epoch[..., None] * jnp.uint32(0x9E3779B9) + jnp.arange(4, dtype=jnp.uint32)))
    return rows[random_bijection(rank, n1, round_keys)].astype(jnp.int32)


def epoch_order(key: jax.Array, valid: jnp.ndarray, total: int, first: int | jnp.ndarray = 0) -> jnp.ndarray:
    """``total`` row indices running through shuffled epochs of the ``valid`` rows: draws ``first`` to
    ``first + total - 1`` of the key's sequence.

    Args:
      key: PRNG key.
      valid: bool [N], the rows to visit (padding and zero-weight rows False).
      total: number of draws (static).
      first: the position of the first draw (may be traced): the draws of ``epoch_order(k, v, a + b)`` are
        those of ``epoch_order(k, v, a)`` followed by ``epoch_order(k, v, b, first=a)``.

    Returns:
      int32 [total]: draw ``p`` is the valid row of rank ``perm_e(p % n)`` (in row order) of epoch
      ``e = p // n`` (``n`` = valid rows), ``perm_e`` a keyed random permutation (:func:`random_bijection`),
      so each valid row appears once per epoch and a row outside ``valid`` never does (if no row is valid,
      every draw is row 0; the caller gives it zero weight). The draws depend on the key and the valid rows
      only, not on how much padding ``valid`` has: a user's result does not change with its chunk's shapes.
      Positions are uint32: ``first + total`` must stay below 2^32 (the config check bounds the step count).
    """
    rows, n1 = _epoch_rows(valid)
    base = jax.random.bits(key, (4,), jnp.uint32)
    p = jnp.asarray(first, jnp.uint32) + jnp.arange(total, dtype=jnp.uint32)
    return _epoch_draws(base, rows, n1, p)


def batch_plan(key: jax.Array, local_weights: jnp.ndarray, aug_weights: jnp.ndarray | None, cfg) -> tuple:
    """What every block of fine-tuning steps shares: per stratum ``(base bits uint32 [4], rows int [N], n1,
    weights float [N], offset, b, scale)``; a tuple of such tuples, for :func:`draw_steps`.

    Arguments as :func:`epoch_batches` (``cfg.steps`` is not read)."""
    batch_size, aug_batch_size, sampling = cfg.batch_size, cfg.aug_batch_size, cfg.sampling
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
    plan = []
    for w, offset, b, k in strata:
        valid = w > 0
        rows, n1 = _epoch_rows(valid)
        n = jnp.sum(valid, dtype=jnp.float32)
        plan.append((jax.random.bits(k, (4,), jnp.uint32), rows, n1, w, offset, b, n / (b * total_weight)))
    return tuple(plan)


def draw_steps(plan: tuple, first: int | jnp.ndarray, count: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The row indices and loss weights of steps ``first .. first + count - 1`` (``first`` may be traced,
    ``count`` static) of a :func:`batch_plan`: ``(idx int32 [count, B_total], weight float32 [count, B_total])``,
    the same numbers as those rows of :func:`epoch_batches`."""
    idx, weight = [], []
    for base, rows, n1, w, offset, b, scale in plan:
        p = jnp.asarray(first, jnp.uint32) * jnp.uint32(b) + jnp.arange(count * b, dtype=jnp.uint32)
        order = _epoch_draws(base, rows, n1, p).reshape(count, b)
        idx.append(order + offset)
        weight.append(w[order] * scale)
    return jnp.concatenate(idx, axis=1), jnp.concatenate(weight, axis=1)


def epoch_batches(key: jax.Array, local_weights: jnp.ndarray, aug_weights: jnp.ndarray | None, cfg):
    """Every fine-tuning step's row indices and loss weights, all at once (``[S, B_total]``: memory grows with
    ``S``; :func:`coda_jax.device.train.finetune` draws blocks of steps with :func:`draw_steps` instead).

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
    return draw_steps(batch_plan(key, local_weights, aug_weights, cfg), 0, cfg.steps)
