"""Pad ragged per-user row lists into fixed, bucketed shapes (so a run compiles a handful of times)."""

from __future__ import annotations

import numpy as np


def bucket_size(n: int, min_bucket: int) -> int:
    """The padded size for ``n`` items: the smallest power of two >= max(n, min_bucket)."""
    n = max(int(n), int(min_bucket), 1)
    return 1 << (n - 1).bit_length()


def pad_rows(offsets: np.ndarray, rows: np.ndarray, owners: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad a CSR list of rows for selected owners into a dense matrix.

    Args:
      offsets: int [num_owners + 1] CSR offsets; owner ``o`` has ``rows[offsets[o]:offsets[o+1]]``.
      rows: int [total] row ids.
      owners: int [U] owners to pack; ``-1`` makes an all-padding line.
      width: columns; owners with more rows than ``width`` keep their first ``width``.

    Returns:
      ``(index, mask)``: int64 [U, width] row ids (0 where padded) and bool [U, width].
    """
    owners = np.asarray(owners)
    real = owners >= 0
    o = np.where(real, owners, 0)
    start = offsets[o]
    count = np.where(real, offsets[o + 1] - start, 0)
    col = np.arange(width)[None, :]
    mask = col < np.minimum(count, width)[:, None]
    if rows.size == 0:
        return np.zeros(mask.shape, dtype=np.int64), mask
    flat = np.where(mask, start[:, None] + col, 0)
    return np.where(mask, rows[flat], 0).astype(np.int64), mask


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    """CSR offsets of groups of the given sizes: counts int [G] -> int64 [G + 1], starting at 0."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def csr_from_owner(owner: np.ndarray, rows: np.ndarray, num_owners: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ``rows`` (int [n]) by ``owner`` (int [n], ``0..num_owners-1``) keeping their order within an owner.

    Returns ``(offsets int64 [num_owners + 1], rows int64 [n])``.
    """
    order = np.argsort(owner, kind="stable")
    offsets = offsets_from_counts(np.bincount(owner, minlength=num_owners))
    return offsets, np.asarray(rows)[order].astype(np.int64)
