"""Exact brute-force maximum-inner-product top-k in JAX.

The database is split into blocks of ``block_size`` rows (padded with rows
that score ``-inf`` and are never returned); a ``jax.lax.scan`` walks the
blocks keeping a running top-k per query, merging it with each block's top-k
via ``jax.lax.top_k`` on the concatenation.  Queries are processed in host-side
chunks of ``query_block`` rows, so peak memory is about
``query_block * block_size`` floats rather than ``Q * N``.

Results are sorted by descending inner product; equal scores are ordered by
ascending database index.

Shapes: ``Q`` queries, ``N`` database rows, ``D`` embedding dimension.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["exact_topk"]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _block_topk(q, blk, start, k, n_valid):
    """Top-min(k, B) of one database block.

    q: float32 [Qb, D]; blk: float32 [B, D]; start: int32 scalar, global index
    of the block's first row.  Returns (scores [Qb, kb], global ids int32 [Qb, kb]).
    """
    b = blk.shape[0]
    s = jnp.dot(q, blk.T, precision=jax.lax.Precision.HIGHEST,
                preferred_element_type=jnp.float32)
    gid = start + jnp.arange(b, dtype=jnp.int32)
    s = jnp.where((gid < n_valid)[None, :], s, -jnp.inf)
    vals, pos = jax.lax.top_k(s, min(k, b))
    return vals, (start + pos).astype(jnp.int32)


@partial(jax.jit, static_argnames=("k", "n_valid"))
def _topk_blocks(q, db_blocks, k: int, n_valid: int):
    """q: float32 [Qb, D]; db_blocks: float32 [nb, B, D] (rows >= n_valid are padding).

    Returns (scores float32 [Qb, k], indices int32 [Qb, k]).
    Requires B >= k and n_valid >= k so the first block alone fills the
    running top-k with real rows.
    """
    nb, b, _ = db_blocks.shape
    # Initialise from the first block: padding sits at the end of the block
    # and lax.top_k prefers lower indices on ties, so only real rows enter.
    init = _block_topk(q, db_blocks[0], jnp.int32(0), k, n_valid)
    if nb == 1:
        return init

    def step(carry, xs):
        run_s, run_i = carry
        blk, start = xs
        bs, bi = _block_topk(q, blk, start, k, n_valid)
        # Running entries come first: on ties they (lower indices) win, so
        # padded (-inf) rows can never displace a real row.
        cat_s = jnp.concatenate([run_s, bs], axis=1)
        cat_i = jnp.concatenate([run_i, bi], axis=1)
        new_s, p = jax.lax.top_k(cat_s, k)
        new_i = jnp.take_along_axis(cat_i, p, axis=1)
        return (new_s, new_i), None

    starts = jnp.arange(1, nb, dtype=jnp.int32) * b
    (s, i), _ = jax.lax.scan(step, init, (db_blocks[1:], starts))
    return s, i


def exact_topk(queries, database, k: int, block_size: int = 4096,
               query_block: int = 8192):
    """Exact maximum-inner-product top-k by blocked brute force.

    Args:
      queries: float [Q, D].
      database: float [N, D].
      k: number of neighbours, 1 <= k <= N.
      block_size: database rows scored per scan step (raised to at least k,
        lowered to N rounded up to a multiple of 8 when N is smaller).
      query_block: queries processed per device call (host-side loop).

    Returns:
      scores: float32 [Q, k], dot products sorted descending.
      indices: int32 [Q, k], database row indices (ties: ascending index).

    Raises:
      ValueError: if k < 1, k > N, shapes are inconsistent, or block sizes < 1.
    """
    queries = jnp.asarray(queries, jnp.float32)
    database = jnp.asarray(database, jnp.float32)
    if queries.ndim != 2 or database.ndim != 2:
        raise ValueError(
            f"queries and database must be 2-D, got {queries.shape} and {database.shape}")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(
            f"dimension mismatch: queries D={queries.shape[1]}, database D={database.shape[1]}")
    k = int(k)
    n, d = database.shape
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of database rows N={n}")
    if block_size < 1 or query_block < 1:
        raise ValueError(
            f"block_size and query_block must be >= 1, got {block_size}, {query_block}")

    b = min(max(int(block_size), k), _round_up(n, 8))
    n_pad = _round_up(n, b)
    if n_pad != n:
        database = jnp.pad(database, ((0, n_pad - n), (0, 0)))
    db_blocks = database.reshape(n_pad // b, b, d)

    nq = queries.shape[0]
    if nq == 0:
        return jnp.zeros((0, k), jnp.float32), jnp.zeros((0, k), jnp.int32)
    out_s, out_i = [], []
    for s0 in range(0, nq, int(query_block)):
        s, i = _topk_blocks(queries[s0:s0 + int(query_block)], db_blocks, k=k, n_valid=n)
        out_s.append(s)
        out_i.append(i)
    if len(out_s) == 1:
        return out_s[0], out_i[0]
    return jnp.concatenate(out_s, axis=0), jnp.concatenate(out_i, axis=0)
