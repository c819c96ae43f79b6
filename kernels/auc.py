"""Per-user AUC as one jitted, vmapped, masked rank statistic.

For each row (user) the AUC is the Mann-Whitney U statistic over the *valid*
(unmasked) entries only::

    AUC = sum_{valid positives p} (#neg < s_p + 0.5 * #neg == s_p) / (P * N)

where ``#neg`` counts valid negatives, ``P`` / ``N`` are the numbers of valid
positives / negatives.  This equals the average-rank (tie-corrected) rank-sum
form and matches :func:`sklearn.metrics.roc_auc_score` on the unmasked entries.

Per row the counts come from one sort of the negative scores plus two
``searchsorted`` calls, i.e. O(T log T) time and O(T) memory; rows are handled
by ``jax.vmap`` and the whole computation is compiled once per input
shape/dtype by ``jax.jit``.

Shapes: ``U`` = number of rows (users), ``T`` = padded row length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["masked_auc", "auc_1d"]

# Incremented each time the jitted body is traced (i.e. compiled for a new
# shape/dtype signature).  Used by tests as a retrace guard.
_TRACE_COUNT = {"masked_auc": 0}


def _auc_row(scores: jax.Array, is_pos: jax.Array, is_neg: jax.Array, finite: jax.Array):
    """AUC of one row.

    Args:
      scores: float32 [T]; entries that are neither valid positives nor valid
        negatives must already be finite (they are ignored).
      is_pos: bool [T], valid positive entries.
      is_neg: bool [T], valid negative entries.
      finite: bool scalar, whether every valid entry's score is finite.

    Returns:
      (auc float32 scalar, NaN if invalid; valid bool scalar).
    """
    n_pos = jnp.sum(is_pos, dtype=jnp.int32)
    n_neg = jnp.sum(is_neg, dtype=jnp.int32)
    # Sorted negative scores; non-negatives pushed to the end as +inf.  Any
    # lookup result is clipped to n_neg so the sentinels are never counted
    # (this also stays correct if a valid negative itself scores +inf).
    neg_sorted = jnp.sort(jnp.where(is_neg, scores, jnp.inf))
    lt = jnp.minimum(jnp.searchsorted(neg_sorted, scores, side="left"), n_neg)
    le = jnp.minimum(jnp.searchsorted(neg_sorted, scores, side="right"), n_neg)
    # Per positive: (#neg < s + 0.5 * #neg == s) / N = (lt + le) / (2N).
    # Averaging these normalised float32 terms (instead of summing raw counts,
    # which reach P*N) cannot overflow for any T; error is ~1e-7 relative.
    valid = (n_pos > 0) & (n_neg > 0) & finite
    inv_2n = 1.0 / (2.0 * jnp.maximum(n_neg, 1).astype(jnp.float32))
    frac = (lt + le).astype(jnp.float32) * inv_2n
    total = jnp.sum(jnp.where(is_pos, frac, 0.0))
    auc = jnp.where(valid, total / jnp.maximum(n_pos, 1).astype(jnp.float32), jnp.nan)
    return auc.astype(jnp.float32), valid


@jax.jit
def masked_auc(scores: jax.Array, labels: jax.Array, mask: jax.Array):
    """Per-row AUC over the unmasked entries of each row.

    Args:
      scores: float [U, T] prediction scores (higher = more likely positive).
        Values at masked positions are ignored, even if NaN/inf.
      labels: float or int [U, T]; 1 = positive, 0 = negative (an entry is
        treated as positive iff ``labels > 0.5``).  Ignored where masked.
      mask: bool [U, T]; True = real entry, False = padding.

    Returns:
      auc: float32 [U]; NaN for rows without at least one valid positive and
        one valid negative, and for rows where any unmasked score is NaN or
        +-inf (a diverged model has no AUC: it is never scored as 1.0).  Ties
        between a positive and a negative count 1/2.
      valid: bool [U]; True where ``auc`` is defined.
    """
    _TRACE_COUNT["masked_auc"] += 1
    scores = jnp.asarray(scores, jnp.float32)
    mask = jnp.asarray(mask, jnp.bool_)
    labels = jnp.asarray(labels)
    finite = jnp.all(jnp.isfinite(scores) | ~mask, axis=-1)
    # Neutralise padding (and non-finite scores of rows already marked invalid) before any comparison / sort.
    scores = jnp.where(mask & jnp.isfinite(scores), scores, 0.0)
    is_pos = mask & (labels > 0.5)
    is_neg = mask & ~(labels > 0.5)
    return jax.vmap(_auc_row)(scores, is_pos, is_neg, finite)


def auc_1d(scores: jax.Array, labels: jax.Array, mask: jax.Array | None = None):
    """AUC of a single row.

    Args:
      scores: float [T].
      labels: float or int [T] (1 positive, 0 negative).
      mask: optional bool [T] (False = padding); defaults to all True.

    Returns:
      (auc float32 scalar, NaN if undefined; valid bool scalar).
    """
    scores = jnp.asarray(scores)
    if mask is None:
        mask = jnp.ones(scores.shape, jnp.bool_)
    auc, valid = masked_auc(scores[None], jnp.asarray(labels)[None], jnp.asarray(mask)[None])
    return auc[0], valid[0]
