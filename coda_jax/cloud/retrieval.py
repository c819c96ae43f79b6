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
              limit: int, rank: np.ndarray | None = None) -> Candidates:
    """Dedupe (owner, row) pairs keeping the best one, then keep each owner's best ``limit`` rows.

    Args:
      owner: int [P] index ``0..num_owners-1`` of the user each pair belongs to.
      row: int [P] candidate row id.
      score: float [P] similarity.
      rank: optional int [P], compared before the score (lower first): with each pair's neighbour rank
        (0 = a local sample's nearest), every local sample's nearest neighbours come before anyone's
        second-nearest, and so on. None: by score alone.

    Returns:
      :class:`Candidates` over ``num_owners`` users.
    """
    rank = np.zeros(owner.shape[0], dtype=np.int64) if rank is None else np.asarray(rank)
    order = np.lexsort((-score, rank, row, owner))     # by owner, then row, best (rank, score) first
    owner, row, score, rank = owner[order], row[order], score[order], rank[order]
    first = np.ones(owner.shape[0], dtype=bool)
    first[1:] = (owner[1:] != owner[:-1]) | (row[1:] != row[:-1])
    owner, row, score, rank = owner[first], row[first], score[first], rank[first]
    order = np.lexsort((row, -score, rank, owner))     # by owner, best (rank, score) first (row breaks ties)
    owner, row, score = owner[order], row[order], score[order]
    keep = user_offsets(owner)[0] < limit              # position within each owner's (sorted) block
    owner, row, score = owner[keep], row[keep], score[keep]
    return Candidates(offsets=offsets_from_counts(np.bincount(owner, minlength=num_owners)),
                      rows=row.astype(np.int64), scores=score.astype(np.float32))


def coarse_match(searcher, vectors: np.ndarray, pool_rows: np.ndarray, row_user: np.ndarray,
                 query_rows: np.ndarray, query_owner: np.ndarray, num_owners: int,
                 cfg: RetrievalConfig, row_item: np.ndarray | None = None) -> Candidates:
    """Coarse-grained sample matching for many users at once.

    Args:
      searcher: a searcher built over ``vectors[pool_rows]``.
      vectors: float32 [N, D] sample vectors of every table row.
      pool_rows: int [P] table rows in the pool (the searcher's database, in this order).
      row_user: int [N] user index of every table row.
      query_rows: int [Q] table rows used as queries (the simulated users' local training rows).
      query_owner: int [Q] index ``0..num_owners-1`` of the simulated user that owns each query.
      num_owners: number of simulated users.
      row_item: int [N] item id of every table row; needed with ``cfg.exclude_seen_items`` (drop candidates
        about an item the owner's queries already hold).

    Returns:
      :class:`Candidates` (table row ids) per simulated user, at most ``cfg.max_candidates`` each, none of
      them the user's own rows; ``cfg.candidate_order`` "score": the most similar to any local sample;
      "rank": every local sample's nearest first, then every one's second-nearest, ... (spread over all
      local samples, similarity breaking ties).
    """
    k = min(cfg.neighbors, len(pool_rows))
    idx, scores = searcher.search(vectors[query_rows], k)            # [Q, k] pool positions
    valid = (idx >= 0) & (idx < len(pool_rows))
    nbr = pool_rows[np.clip(idx, 0, len(pool_rows) - 1)]             # table rows
    owner = np.broadcast_to(query_owner[:, None], idx.shape)
    own = row_user[nbr] == row_user[query_rows][:, None]
    keep = valid & ~own
    if cfg.exclude_seen_items:
        if row_item is None:
            raise ValueError("coarse_match: retrieval.exclude_seen_items needs row_item")
        stride = int(row_item.max()) + 1
        seen = np.unique(query_owner.astype(np.int64) * stride + row_item[query_rows])
        keep &= ~np.isin(owner.astype(np.int64) * stride + row_item[nbr], seen)
    rank = np.broadcast_to(np.arange(k)[None, :], idx.shape)[keep] if cfg.candidate_order == "rank" else None
    return group_top(owner[keep], nbr[keep], scores[keep], num_owners, cfg.max_candidates, rank)
