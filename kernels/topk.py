"""Exact brute-force maximum-inner-product top-k in JAX, sharded over devices.

The database is split into blocks of ``block_size`` rows (padded with rows that score ``-inf`` and are never
returned).  The blocks are spread over the devices (each device holds ``ceil(blocks / devices)`` of them);
on every device a ``jax.lax.scan`` walks its blocks keeping a running top-k per query, merging it with each
block's top-k via ``jax.lax.top_k`` on the concatenation; the devices' top-k lists are then merged the same
way.  Queries are processed in host-side chunks of ``query_block`` rows, so peak memory per device is about
``query_block * block_size`` floats rather than ``Q * N``.

Results are sorted by descending inner product; equal scores are ordered by ascending database index.  Every
block is scored by the same ``[query_block, D] x [D, block_size]`` product whatever the device count, and
merging is exact, so any number of devices returns what one device returns.

Shapes: ``Q`` queries, ``N`` database rows, ``D`` embedding dimension.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kernels.sharding import shard_map

__all__ = ["TopK", "exact_topk"]

_AXIS = "db"


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _block_topk(q, blk, start, k, n_valid):
    """Top-min(k, B) of one database block.

    q: float32 [Qb, D]; blk: float32 [B, D]; start: int32 scalar, global index of the block's first row.
    Returns (scores [Qb, kb], global ids int32 [Qb, kb]); rows >= n_valid score -inf.
    """
    b = blk.shape[0]
    s = jnp.dot(q, blk.T, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    gid = start + jnp.arange(b, dtype=jnp.int32)
    s = jnp.where((gid < n_valid)[None, :], s, -jnp.inf)
    vals, pos = jax.lax.top_k(s, min(k, b))
    return vals, (start + pos).astype(jnp.int32)


def _merge(run_s, run_i, new_s, new_i, k):
    """Top-k of two ``[Qb, *]`` lists; the running list comes first, so it wins ties (lower indices)."""
    cat_s = jnp.concatenate([run_s, new_s], axis=1)
    cat_i = jnp.concatenate([run_i, new_i], axis=1)
    s, p = jax.lax.top_k(cat_s, k)
    return s, jnp.take_along_axis(cat_i, p, axis=1)


def _scan_blocks(q, blocks, starts, k, n_valid):
    """Running top-k over ``blocks`` float32 [nb, B, D] whose first rows have global ids ``starts`` int32 [nb].

    Returns (scores float32 [Qb, k], ids int32 [Qb, k]).  Starts from ``-inf`` entries with id ``n_valid``
    (past every real row), which any real row beats and which lose every tie to real rows' ids.
    """
    init = (jnp.full((q.shape[0], k), -jnp.inf, jnp.float32), jnp.full((q.shape[0], k), n_valid, jnp.int32))

    def step(carry, xs):
        blk, start = xs
        bs, bi = _block_topk(q, blk, start, k, n_valid)
        return _merge(*carry, bs, bi, k), None

    (s, i), _ = jax.lax.scan(step, init, (blocks, starts))
    return s, i


@partial(jax.jit, static_argnames=("k", "n_valid", "mesh"))
def _topk_sharded(q, blocks, starts, k: int, n_valid: int, mesh: Mesh):
    """q: float32 [Qb, D] (replicated); blocks: float32 [nb, B, D] and starts int32 [nb], split over ``mesh``.

    Returns (scores float32 [Qb, k], indices int32 [Qb, k]).
    """
    def local(q, blocks, starts):
        s, i = _scan_blocks(q, blocks, starts, k, n_valid)
        return s[None], i[None]

    specs = (PartitionSpec(), PartitionSpec(_AXIS), PartitionSpec(_AXIS))
    per_s, per_i = shard_map(local, mesh, specs, PartitionSpec(_AXIS))(q, blocks, starts)   # [devices, Qb, k] each
    s, i = per_s[0], per_i[0]
    for d in range(1, per_s.shape[0]):                              # device d holds higher ids than d - 1
        s, i = _merge(s, i, per_s[d], per_i[d], k)
    return s, i


class TopK:
    """An exact top-k index: the database split into blocks, placed once over ``devices``.

    Args:
      database: float [N, D].
      devices: the devices to spread the database over (default: every device JAX sees).
      block_size: database rows scored per scan step (lowered to N rounded up to a multiple of 8 when N is
        smaller); :meth:`search` raises it to at least k.
    """

    def __init__(self, database, devices=None, block_size: int = 4096):
        database = np.asarray(database, np.float32)
        if database.ndim != 2:
            raise ValueError(f"database must be 2-D, got {database.shape}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.n, self.d = database.shape
        self.devices = list(jax.local_devices() if devices is None else devices)
        self.mesh = Mesh(np.asarray(self.devices), (_AXIS,))
        self._database = database
        self._block_size = int(block_size)
        self._placed: dict[int, tuple] = {}                          # block size -> (blocks, starts)

    def _blocks(self, k: int):
        b = min(max(self._block_size, k), _round_up(max(self.n, 1), 8))
        if b not in self._placed:
            nb = _round_up(-(-self.n // b), len(self.devices))      # whole blocks, an equal share per device
            padded = np.zeros((nb * b, self.d), np.float32)
            padded[:self.n] = self._database
            sharding = NamedSharding(self.mesh, PartitionSpec(_AXIS))
            self._placed = {b: (jax.device_put(padded.reshape(nb, b, self.d), sharding),
                                jax.device_put(np.arange(nb, dtype=np.int32) * b, sharding))}
        return self._placed[b]

    def search(self, queries, k: int, query_block: int = 8192):
        """Exact top-``k`` of every query: ``(scores float32 [Q, k] descending, indices int32 [Q, k])``.

        ``queries`` float [Q, D]; 1 <= k <= N; ``query_block`` queries per device call.
        """
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.d:
            raise ValueError(f"queries must be [Q, {self.d}], got {queries.shape}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > self.n:
            raise ValueError(f"k={k} exceeds the number of database rows N={self.n}")
        if query_block < 1:
            raise ValueError(f"query_block must be >= 1, got {query_block}")
        if queries.shape[0] == 0:
            return jnp.zeros((0, k), jnp.float32), jnp.zeros((0, k), jnp.int32)
        blocks, starts = self._blocks(k)
        out = [_topk_sharded(queries[s0:s0 + query_block], blocks, starts, k=k, n_valid=self.n, mesh=self.mesh)
               for s0 in range(0, queries.shape[0], int(query_block))]
        if len(out) == 1:
            return out[0]
        return jnp.concatenate([s for s, _ in out]), jnp.concatenate([i for _, i in out])


def exact_topk(queries, database, k: int, block_size: int = 4096, query_block: int = 8192, devices=None):
    """Exact maximum-inner-product top-k by blocked brute force (one-off :class:`TopK`).

    Args:
      queries: float [Q, D].
      database: float [N, D].
      k: number of neighbours, 1 <= k <= N.
      block_size: database rows scored per scan step (raised to at least k, lowered to N rounded up to a
        multiple of 8 when N is smaller).
      query_block: queries processed per device call (host-side loop).
      devices: devices the database is split over (default: this process's, ``jax.local_devices()``).

    Returns:
      scores: float32 [Q, k], dot products sorted descending.
      indices: int32 [Q, k], database row indices (ties: ascending index).

    Raises:
      ValueError: if k < 1, k > N, shapes are inconsistent, or block sizes < 1.
    """
    queries = np.asarray(queries, np.float32)
    database = np.asarray(database, np.float32)
    if queries.ndim != 2 or database.ndim != 2:
        raise ValueError(f"queries and database must be 2-D, got {queries.shape} and {database.shape}")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"dimension mismatch: queries D={queries.shape[1]}, database D={database.shape[1]}")
    return TopK(database, devices, block_size).search(queries, k, query_block)
