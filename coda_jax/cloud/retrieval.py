"""Cloud side: coarse matching over the sample pool (the searchers live in :mod:`coda_jax.cloud.search`).

Coarse-grained sample matching: every local training sample of every simulated user queries the pool for
its top-k neighbours (one batched search for all users); neighbours owned by the querying user are dropped;
each user's neighbours are deduplicated (keeping the best similarity) and the best ``max_candidates`` are
that user's candidates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from coda_jax.cloud.search import (ExactSearcher, ScannSearcher, make_searcher,  # noqa: F401 - re-exported
                                   recall_at_k)
from coda_jax.config import RetrievalConfig
from coda_jax.data.packing import offsets_from_counts
from coda_jax.data.split import user_offsets


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Coarse candidates of a set of users, as a CSR list of pool rows.

    Attributes:
      offsets: int64 [U + 1]; user ``u``'s candidates are ``rows[offsets[u]:offsets[u+1]]``.
      rows: int64 [total] table row ids, each user's sorted by descending similarity.
      scores: float32 [total] the best similarity of each candidate to any of the user's local samples.
    """

    offsets: np.ndarray
    rows: np.ndarray
    scores: np.ndarray

    def counts(self) -> np.ndarray:
        """int64 [U] candidates per user."""
        return np.diff(self.offsets)

    def of(self, u: int) -> np.ndarray:
        """Table rows of user ``u``'s candidates."""
        return self.rows[self.offsets[u]:self.offsets[u + 1]]


def group_top(owner: np.ndarray, row: np.ndarray, score: np.ndarray, num_owners: int,
              limit: int) -> Candidates:
    """Dedupe (owner, row) pairs keeping the best-scored one, then keep each owner's best ``limit`` rows.

    Args:
      owner: int [P] index ``0..num_owners-1`` of the user each pair belongs to.
      row: int [P] candidate row id.
      score: float [P] similarity.

    Returns:
      :class:`Candidates` over ``num_owners`` users.
    """
    order = np.lexsort((-score, row, owner))           # by owner, then row, best score first
    owner, row, score = owner[order], row[order], score[order]
    first = np.ones(owner.shape[0], dtype=bool)
    first[1:] = (owner[1:] != owner[:-1]) | (row[1:] != row[:-1])
    owner, row, score = owner[first], row[first], score[first]
    order = np.lexsort((row, -score, owner))           # by owner, best score first (row breaks ties)
    owner, row, score = owner[order], row[order], score[order]
    keep = user_offsets(owner)[0] < limit              # position within each owner's (sorted) block
    owner, row, score = owner[keep], row[keep], score[keep]
    return Candidates(offsets=offsets_from_counts(np.bincount(owner, minlength=num_owners)),
                      rows=row.astype(np.int64), scores=score.astype(np.float32))


COARSE_BLOCK_QUERIES = 1 << 16
"""Queries :func:`coarse_match` searches at a time (its memory is ``O(block * neighbors)``, not ``O(Q * k)``)."""


@dataclasses.dataclass(frozen=True)
class Queries:
    """The queries of :func:`coarse_match`.

    Attributes:
      rows: int [Q] table rows used as queries (the simulated users' local training rows).
      owner: int [Q] index ``0..num_owners-1`` of the simulated user that owns each query.
      num_owners: number of simulated users.
      block: queries per search call.
    """

    rows: np.ndarray
    owner: np.ndarray
    num_owners: int
    block: int = COARSE_BLOCK_QUERIES


def coarse_match(searcher, vectors: np.ndarray, pool_rows: np.ndarray, row_user: np.ndarray, queries: Queries,
                 cfg: RetrievalConfig) -> Candidates:
    """Coarse-grained sample matching for many users at once, streamed over blocks of queries.

    The queries, grouped by owner, are searched ``queries.block`` at a time; after each block the pairs of
    every owner whose queries are all searched are deduplicated and cut to ``cfg.max_candidates`` (the last,
    unfinished owner's pairs wait for the next block), so memory is bounded by the block, not by ``Q * k``.
    Each owner's result depends only on its own queries: the same as one search over all queries.

    Args:
      searcher: a searcher built over ``vectors[pool_rows]``.
      vectors: float32 [N, D] sample vectors of every table row.
      pool_rows: int [P] table rows in the pool (the searcher's database, in this order).
      row_user: int [N] user index of every table row.
      queries: the query rows, their owners and the block size (:class:`Queries`).

    Returns:
      :class:`Candidates` (table row ids) per simulated user, at most ``cfg.max_candidates`` each, none of
      them the user's own rows: the most similar to any of its local samples.
    """
    query_owner, num_owners, block_queries = np.asarray(queries.owner, np.int64), queries.num_owners, queries.block
    order = np.argsort(query_owner, kind="stable")
    q_rows, q_owner = np.asarray(queries.rows)[order], query_owner[order]
    k = min(cfg.neighbors, len(pool_rows))
    counts = np.zeros(num_owners, np.int64)
    out_rows, out_scores = [], []
    pending = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)]
    lo = 0                                                                   # first owner not yet emitted
    for s0 in range(0, len(q_rows), max(int(block_queries), 1)):
        s1 = min(s0 + max(int(block_queries), 1), len(q_rows))
        pairs = _search_pairs(searcher, vectors, pool_rows, row_user, (q_rows[s0:s1], q_owner[s0:s1]), k)
        pending = [np.concatenate([a, b]) for a, b in zip(pending, pairs)]
        hi = int(q_owner[s1]) if s1 < len(q_rows) else num_owners          # owners below hi are complete
        done = pending[0] < hi
        owner, row, score = (a[done] for a in pending)
        pending = [a[~done] for a in pending]
        c = group_top(owner - lo, row, score, hi - lo, cfg.max_candidates)
        counts[lo:hi] = c.counts()
        out_rows.append(c.rows)
        out_scores.append(c.scores)
        lo = hi
    return Candidates(offsets=offsets_from_counts(counts),
                      rows=np.concatenate(out_rows + [np.zeros(0, np.int64)]).astype(np.int64),
                      scores=np.concatenate(out_scores + [np.zeros(0, np.float32)]).astype(np.float32))


def _search_pairs(searcher, vectors, pool_rows, row_user, block: tuple[np.ndarray, np.ndarray], k):
    """Search one block of queries (``(query rows, their owners)``): the ``(owner, row, score)`` pairs (flat
    arrays) that are real neighbours and not the querying user's own rows."""
    query_rows, query_owner = block
    idx, scores = searcher.search(vectors[query_rows], k)            # [Qb, k] pool positions
    valid = (idx >= 0) & (idx < len(pool_rows))
    nbr = pool_rows[np.clip(idx, 0, len(pool_rows) - 1)]             # table rows
    keep = valid & (row_user[nbr] != row_user[query_rows][:, None])
    owner = np.broadcast_to(query_owner[:, None], idx.shape)[keep]
    return owner.astype(np.int64), nbr[keep].astype(np.int64), scores[keep].astype(np.float32)
