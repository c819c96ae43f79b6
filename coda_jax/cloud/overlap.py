"""Item-overlap matching through sparse item sets: each user's nearest users by the cosine of their item sets.

The cosine of two users' item sets ``A`` and ``B`` is ``|A & B| / sqrt(|A| |B|)``. The overlaps ``|A & B|`` of a
block of query users with every user are one sparse product (the block's user-item CSR times the item-user
CSC, integer counts); each block keeps its users' ``count`` best, so memory is bounded by the block, never a
dense users x items or users x users matrix.

Cost: the product does ``sum_i q_i * n_i`` multiply-adds, ``n_i`` the users holding item ``i`` and ``q_i`` the
query users among them: about ``sum_i n_i^2`` when every user queries, which grows with the square of the
population on heavy-tailed data (a blockbuster held by half the users pairs every two of them). A budget of
:data:`ITEM_OVERLAP_WORK_PER_USER` multiply-adds per query user bounds it: when the exact product would cost
more, the most popular items are left out of the item sets (the overlap then is over items held by at most
``max_item_users`` users, like an IDF weighting that gives blockbusters weight 0) until it fits. On data under the
budget (every small run) the match is exact. See :func:`item_overlap_cap`.

Tie rule: equal cosines (float64, ``|A & B| / sqrt(|A| |B|)``) go to the lower user index, as the exact
searcher orders ties. Only users sharing at least one item are matched (``-1`` pads the rest).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from coda_jax.data.split import user_offsets

ITEM_OVERLAP_WORK_PER_USER = 2_000_000
"""Multiply-adds of the sparse overlap product allowed per query user before popular items are left out."""

ITEM_OVERLAP_BLOCK_CELLS = 1 << 22
"""Upper bound on ``block users x num_users`` of one block's overlap matrix (its non-zeros are at most this)."""


def item_sets(item: np.ndarray, pool: tuple[np.ndarray, np.ndarray], num_items: int) -> sp.csr_matrix:
    """Each user's set of pool items: a 0/1 CSR matrix int32 [num_users, num_items + 1] (sorted columns)."""
    offsets, rows = pool
    num_users = offsets.shape[0] - 1
    owner = np.repeat(np.arange(num_users), np.diff(offsets))
    key = np.unique(owner.astype(np.int64) * (num_items + 1) + item[rows])          # distinct (user, item)
    user, col = np.divmod(key, num_items + 1)
    indptr = np.searchsorted(user, np.arange(num_users + 1)).astype(np.int64)
    return sp.csr_matrix((np.ones(len(col), np.int32), col.astype(np.int32), indptr),
                         shape=(num_users, num_items + 1))


def item_overlap_cap(sets: sp.csr_matrix, query_users: np.ndarray,
                     work_per_user: float = ITEM_OVERLAP_WORK_PER_USER) -> int | None:
    """The largest item popularity ``max_item_users`` whose items keep the overlap product within
    ``work_per_user * len(query_users)`` multiply-adds, or None when every item fits (the exact match).

    Args:
      sets: int32 [num_users, I] user-item sets (:func:`item_sets`).
      query_users: int [S] the query users.
    """
    holders = np.diff(sets.tocsc().indptr).astype(np.int64)                         # n_i [I]
    queried = np.bincount(sets[np.asarray(query_users)].indices, minlength=sets.shape[1]).astype(np.int64)
    work = holders * queried                                                         # the product's cost per item
    budget = work_per_user * max(len(query_users), 1)
    if work.sum() <= budget:
        return None
    pops = np.unique(holders)                                                      # ascending popularities
    cum = np.cumsum(np.bincount(np.searchsorted(pops, holders), weights=work, minlength=len(pops)))
    fits = np.flatnonzero(cum <= budget)
    return int(pops[fits[-1]]) if len(fits) else 0


def restrict_items(sets: sp.csr_matrix, max_item_users: int | None) -> sp.csr_matrix:
    """``sets`` without the items held by more than ``max_item_users`` users (None: unchanged)."""
    if max_item_users is None:
        return sets
    holders = np.diff(sets.tocsc().indptr)
    keep = (holders <= max_item_users).astype(np.int32)
    out = (sets @ sp.diags(keep, dtype=np.int32)).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def item_overlap_users(sets: sp.csr_matrix, query_users: np.ndarray, count: int, sizes: np.ndarray | None = None,
                       block_cells: int = ITEM_OVERLAP_BLOCK_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """Each query user's ``count`` other users with the highest item-set cosine (exact over ``sets``).

    Args:
      sets: 0/1 int32 [num_users, I] user-item sets (:func:`item_sets`, possibly :func:`restrict_items`).
      query_users: int [S] global user index of each query.
      count: matched users per query.
      sizes: float [num_users] set sizes in the cosine's denominator (default: the row sizes of ``sets``; the
        unrestricted sizes when ``sets`` leaves popular items out).
      block_cells: query users per block = ``block_cells // num_users`` (at least 1).

    Returns:
      ``(users int64 [S, count], scores float32 [S, count])``: best first (ties: lower user index), only users
      sharing an item with the query; ``-1`` / ``-inf`` pad.
    """
    query_users = np.asarray(query_users, np.int64)
    num_users = sets.shape[0]
    sizes = np.diff(sets.indptr).astype(np.float64) if sizes is None else np.asarray(sizes, np.float64)
    by_item = sets.T.tocsr()                                                         # [I, num_users]
    users = np.full((len(query_users), count), -1, np.int64)
    scores = np.full((len(query_users), count), -np.inf, np.float32)
    block = max(1, int(block_cells) // max(num_users, 1))
    for s0 in range(0, len(query_users), block):
        q = query_users[s0:s0 + block]
        overlap = (sets[q] @ by_item).tocsr()                                        # [b, num_users] |A & B|
        r, c, cos = _best(overlap, q, sizes, count)
        rank, _ = user_offsets(r)                                                    # position within the query
        keep = rank < count
        users[s0 + r[keep], rank[keep]] = c[keep]
        scores[s0 + r[keep], rank[keep]] = cos[keep]
    return users, scores


def _best(overlap: sp.csr_matrix, q: np.ndarray, sizes: np.ndarray, count: int):
    """The entries of a block that can be among its rows' ``count`` best: ``(row, user, cosine)`` sorted by row,
    best first (ties: lower user). Rows of a dense block are cut at their ``count``-th best value first
    (a partition, linear in the row); sparse blocks are sorted whole."""
    b, n = overlap.shape
    if overlap.nnz * 4 > b * n and n > count:                                       # dense: partition each row
        dense = np.full((b, n), -np.inf)
        rr = np.repeat(np.arange(b), np.diff(overlap.indptr))
        dense[rr, overlap.indices] = overlap.data / np.sqrt(sizes[q[rr]] * sizes[overlap.indices])
        dense[np.arange(b), q] = -np.inf                                             # never the user itself
        kth = -np.partition(-dense, count - 1, axis=1)[:, count - 1]                 # each row's count-th best
        r, c = np.nonzero((dense >= kth[:, None]) & (dense > -np.inf))
        cos = dense[r, c]
    else:
        coo = overlap.tocoo()
        r, c = coo.row.astype(np.int64), coo.col.astype(np.int64)
        ok = (c != q[r]) & (coo.data > 0)
        r, c = r[ok], c[ok]
        cos = coo.data[ok] / np.sqrt(sizes[q[r]] * sizes[c])
    order = np.lexsort((c, -cos, r))                                                 # by query, best first
    return r[order].astype(np.int64), c[order].astype(np.int64), cos[order]
