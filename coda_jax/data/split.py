"""Per-user temporal splits of a sample table."""

from __future__ import annotations

import numpy as np

from coda_jax.data.features import block_starts
from coda_jax.data.schema import SampleTable


def user_offsets(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets of each user's contiguous block in a table sorted by user.

    Args:
      user: int [N] sorted user indices.

    Returns:
      ``(rank, count)``: int64 [N] position of each row inside its user's block, and int64 [N] the size of
      that block.
    """
    n = user.shape[0]
    idx = np.arange(n)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    start = block_starts(new_user)
    ends = np.append(np.flatnonzero(new_user)[1:], n)
    sizes = ends - np.flatnonzero(new_user)
    count = np.repeat(sizes, sizes)
    return idx - start, count


def holdout_count(n, fraction: float, xp=np):
    """How many of a user's ``n`` rows a split holds out: ``max(1, round(fraction * n))``, but never all of
    them (0 for ``n < 2``). ``n`` int array of any shape; ``xp`` is ``numpy`` or ``jax.numpy`` (traceable)."""
    return xp.clip(xp.rint(fraction * n), 1, xp.maximum(n - 1, 0)).astype(n.dtype)


def _participating(table: SampleTable, fraction: float, rows: np.ndarray | None) -> np.ndarray:
    """Check a split fraction is in (0, 1); the rows taking part (bool [N]; all rows when ``rows`` is None)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be in (0, 1), got {fraction}")
    return np.ones(len(table), dtype=bool) if rows is None else rows


def temporal_split(table: SampleTable, test_fraction: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Mark each user's latest rows as held out.

    Each user with ``n`` rows holds out its last ``max(1, round(test_fraction * n))`` rows in time order,
    always leaving at least one earlier row (users with a single row hold nothing out).

    Args:
      table: samples sorted by (user, time).
      test_fraction: in (0, 1).
      rows: optional bool [N]; only these rows take part (others are never held out and do not count).

    Returns:
      bool [N], True for held-out rows.
    """
    rows = _participating(table, test_fraction, rows)
    sel = np.flatnonzero(rows)
    rank, count = user_offsets(table.user[sel])
    n_out = holdout_count(count, test_fraction)
    held = np.zeros(len(table), dtype=bool)
    held[sel] = rank >= count - n_out
    return held


def global_time_split(table: SampleTable, fraction: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Hold out every row at or after one global timestamp (the MPDA code's split).

    The cut is the ``1 - fraction`` quantile of the participating rows' timestamps, so about ``fraction`` of
    them are held out (more when many rows share the cut's timestamp). Users whose rows all fall on one side
    end up with training rows only or held-out rows only.

    Args:
      table: samples sorted by (user, time).
      fraction: in (0, 1).
      rows: optional bool [N]; only these rows take part.

    Returns:
      bool [N], True for held-out rows.
    """
    rows = _participating(table, fraction, rows)
    if not rows.any():
        return np.zeros(len(table), dtype=bool)
    cut = np.quantile(table.time[rows], 1.0 - fraction, method="higher")
    return rows & (table.time >= cut)
