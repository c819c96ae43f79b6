"""The per-chunk pytree the vmapped device stage consumes: every leaf has a leading user axis ``[U, ...]``."""

from __future__ import annotations

import dataclasses

import flax.struct
import jax.numpy as jnp
import numpy as np

from coda_jax.cloud.output import UserRows
from coda_jax.data.packing import bucket_size, pad_rows
from coda_jax.data.schema import SampleTable
from coda_jax.device.submodel import local_vocab


@flax.struct.dataclass
class Rows:
    """A padded set of samples per user.

    Attributes:
      features: model-input dict, ``user`` [U, N] (always local user 0), ``item`` [U, N], ``genres`` [U, N, G],
        ``hist_pos`` / ``hist_neg`` [U, N, L]; item ids are local-vocabulary indices. Where the data has a profile,
        also ``profile`` [U, N]: the attribute of the row's owner (like its history, it stays the owner's with
        ``row_users='own'``: a row field the sample classifier can read).
      label: float32 [U, N].
      mask: bool [U, N], False on padding.
      vector: float32 [U, N, D] what the sample classifier sees of each row (the cloud's sample vectors, or
        the inputs ``classifier.inputs`` names: :mod:`coda_jax.device.inputs`).
      row: int32 [U, N] table row of each sample (-1 on padding), for bookkeeping on the host.
      own: bool [U, N] the row's user is in the device owner's planted group (known-answer worlds only; False
        elsewhere): what the ``oracle-filter`` reference and the filter diagnostics read, never a method.
      fresh: bool [U, N] the row is at or after the planted world's shift time (False without a shift).
    """

    features: dict
    label: jnp.ndarray
    mask: jnp.ndarray
    vector: jnp.ndarray
    row: jnp.ndarray
    own: jnp.ndarray
    fresh: jnp.ndarray

    @property
    def width(self) -> int:
        return int(self.mask.shape[-1])


@flax.struct.dataclass
class DeviceChunk:
    """Everything a chunk of ``U`` devices holds.

    Attributes:
      user_index: int32 [U] global user index of each device's own user (also its PRNG stream).
      user_mask: bool [U], False for padding devices of the last chunk.
      vocab: int32 [U, V] each device's local item vocabulary (global ids, 0 first).
      user_vocab: int32 [U, Vu] global user index of each local user row (row 0 is a padding slot). With
        ``row_users='own'`` every row is the device's own user (``Vu == 2``); with ``'original'`` augmented
        rows keep the users they came from.
      local: [U, Nl] the device's own training rows.
      candidates: [U, Nc] coarse candidates sent by the cloud, best similarity first.
      random: [U, Nc] random pool rows (the ``local+random`` baseline; classifier negatives if configured).
      test: [U, Nt] the device's held-out evaluation rows.
      matched: [U, M * R] the latest ``R`` pool rows of each of the device's ``M`` matched users, user by user
        (what the ``mpda`` method goes through); width 0 when the run has no mpda method.
    """

    user_index: jnp.ndarray
    user_mask: jnp.ndarray
    vocab: jnp.ndarray
    user_vocab: jnp.ndarray
    local: Rows
    candidates: Rows
    random: Rows
    test: Rows
    matched: Rows


@flax.struct.dataclass
class RowTags:
    """What a known-answer world says of every table row (host side, numpy): ``group`` int [N] the planted
    group of the row's user, ``fresh`` bool [N] the row is at or after the shift, ``user_group`` int
    [num_users] each user's group (by table user index)."""

    group: np.ndarray
    fresh: np.ndarray
    user_group: np.ndarray


def _gather_rows(table: SampleTable, vectors: np.ndarray, index: np.ndarray, mask: np.ndarray,
                 tags: RowTags | None = None, owner_group: np.ndarray | None = None) -> dict:
    feats = table.features(index)       # fancy indexing keeps the [U, N] leading shape
    if tags is None:
        own = fresh = np.zeros(mask.shape, bool)
    else:
        own = mask & (tags.group[index] == owner_group[:, None])
        fresh = mask & tags.fresh[index]
    return {
        "features": {k: np.where(mask.reshape(mask.shape + (1,) * (v.ndim - 2)), v, 0).astype(np.int32)
                     for k, v in feats.items()},
        "label": np.where(mask, table.label[index], 0.0).astype(np.float32),
        "mask": mask,
        "vector": np.where(mask[..., None], vectors[index], 0.0).astype(np.float32),
        "row": np.where(mask, index, -1).astype(np.int32),
        "own": own,
        "fresh": fresh,
    }


DENSE_VOCAB_MAX_CELLS = 1 << 24
"""Largest ``[U, num_ids]`` presence table :func:`chunk_vocab` builds (16 MB of bool plus a 64 MB int32 count);
above it the per-row sort of :func:`~coda_jax.device.submodel.local_vocab` is used."""


def chunk_vocab(ids: np.ndarray, num_ids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~coda_jax.device.submodel.local_vocab` (the same three arrays) for ids in ``0..num_ids-1``,
    through a ``[U, num_ids]`` presence table instead of a sort per row: ``O(U * (M + num_ids))``.

    Args:
      ids: int [U, M] every id a user touches (0 = padding allowed anywhere), all below ``num_ids``.

    Returns:
      ``(vocab int32 [U, W], remapped int32 [U, M], size int64 [U])`` with ``W = max(size)`` (``local_vocab``'s
      vocab is ``W`` columns wider, all 0 padding); falls back to ``local_vocab`` above
      :data:`DENSE_VOCAB_MAX_CELLS`.
    """
    ids = np.asarray(ids)
    u, m = ids.shape
    if u * num_ids > DENSE_VOCAB_MAX_CELLS:
        vocab, remapped, size = local_vocab(ids)
        return vocab[:, :max(int(size.max(initial=1)), 1)], remapped, size.astype(np.int64)
    flat = ids + (np.arange(u, dtype=np.int64) * num_ids)[:, None]           # [U, M] into the flat table
    present = np.zeros((u, num_ids), dtype=bool)
    present[:, 0] = True
    present.ravel()[flat] = True
    local = np.cumsum(present, axis=1, dtype=np.int32) - 1                  # local index of every present id
    size = local[:, -1].astype(np.int64) + 1
    remapped = local.ravel()[flat]
    vocab = np.zeros((u, int(size.max(initial=1))), dtype=np.int32)
    rr, cc = np.nonzero(present)
    vocab[rr, local[rr, cc]] = cc
    return vocab, remapped, size


def candidate_width(num_candidates: int, min_bucket: int) -> int:
    """The run's one candidate (and random-row) width: its cap rounded up to a multiple of ``min_bucket``."""
    return -(-max(int(num_candidates), 1) // min_bucket) * min_bucket


def chunk_shapes(rows: UserRows, owners: np.ndarray, num_candidates: int, min_bucket: int) -> dict[str, int]:
    """Padded widths ``{local, candidates, test}`` for a chunk of owners (``-1`` = padding device): local and
    test rows in power-of-two buckets, candidates (and random rows) at the run's cap rounded up to a
    multiple of ``min_bucket``."""
    real = owners[owners >= 0]

    def widest(field: str) -> int:
        c = rows.counts(field)[real]
        return int(c.max()) if c.size else 1

    return {"local": bucket_size(widest("local"), min_bucket),
            # one width per run (the cap), so a multiple of min_bucket, not a power of two: no padding to spare
            "candidates": candidate_width(num_candidates, min_bucket),
            "test": bucket_size(widest("test"), min_bucket)}


def matched_index(rows: UserRows, owners: np.ndarray, per_user: int) -> tuple[np.ndarray, np.ndarray]:
    """Table rows of each device's matched users: the latest ``per_user`` pool rows of each, user by user.

    Returns ``(index int64 [U, M * per_user], mask bool [U, M * per_user])``; ``-1`` owners and ``-1`` matched
    users give padding.
    """
    offsets, pool_rows = rows.pool
    m = rows.matched_users.shape[1]
    real = owners >= 0
    users = np.where(real[:, None], rows.matched_users[np.where(real, owners, 0)], -1)      # [U, M]
    ok = users >= 0
    u = np.where(ok, users, 0)
    end, count = offsets[u + 1], np.where(ok, offsets[u + 1] - offsets[u], 0)
    col = np.arange(per_user)
    take = np.minimum(count, per_user)[..., None]
    mask = col < take                                                                   # [U, M, R]
    pos = np.where(mask, end[..., None] - take + col, 0)                               # latest rows, in time order
    index = np.where(mask, pool_rows[pos], 0) if len(pool_rows) else np.zeros(mask.shape, np.int64)
    return index.reshape(len(owners), m * per_user), mask.reshape(len(owners), m * per_user)


@dataclasses.dataclass(frozen=True)
class ChunkSpec:
    """How :func:`make_chunk` packs a chunk.

    Attributes:
      num_candidates: the run's candidate cap (fixes the candidate width of every chunk).
      min_bucket: smallest padded width.
      row_users: ``'own'``: every row (augmented ones too) is presented as the device's own user;
        ``'original'``: augmented rows keep their original user (the device copy then holds those users'
        embedding rows too).
      matched_rows: rows per matched user in ``matched`` (0: no matched rows; needs ``rows.matched_users``).
      widths: optional least widths ``{"local", "test", "vocab", "user_vocab"}`` (a missing or 0 entry: the
        chunk's own bucket); a chunk pads up to them, so chunks of one shape class share a compiled program.
      tags: the known answer of every row (:class:`RowTags`), filling ``Rows.own`` / ``Rows.fresh``; None:
        all False.
    """

    num_candidates: int
    min_bucket: int
    row_users: str = "own"
    matched_rows: int = 0
    widths: dict | None = None
    tags: RowTags | None = None

    @staticmethod
    def from_config(cfg, matched_rows: int = 0) -> "ChunkSpec":
        """The packing of a run config (``retrieval.max_candidates``, ``engine.min_bucket``,
        ``finetune.row_users``)."""
        return ChunkSpec(cfg.retrieval.max_candidates, cfg.engine.min_bucket, cfg.finetune.row_users, matched_rows)


def make_chunk(table: SampleTable, vectors: np.ndarray, rows: UserRows, owners: np.ndarray,
               user_index: np.ndarray, spec: ChunkSpec) -> DeviceChunk:
    """Pack a chunk of devices on the host.

    Args:
      table: the sample table.
      rows: the simulated users' row lists.
      owners: int [U] simulated-user index of each device slot, ``-1`` for padding slots.
      user_index: int [num_simulated] global user index of each simulated user.
      vectors: float32 [N, D] what the sample classifier sees of every table row (the sample vectors or the
        ``classifier.inputs``).
      spec: widths, row conventions and the known answer of every row (:class:`ChunkSpec`).

    Returns:
      A :class:`DeviceChunk` of numpy arrays with bucketed widths; the vocabulary width is bucketed too.
    """
    owners = np.asarray(owners)
    num_candidates, min_bucket, row_users, matched_rows = (spec.num_candidates, spec.min_bucket, spec.row_users,
                                                           spec.matched_rows)
    least, tags = spec.widths or {}, spec.tags
    widths = chunk_shapes(rows, owners, num_candidates, min_bucket)
    for field in ("local", "test"):
        widths[field] = max(widths[field], int(least.get(field) or 0))
    real = owners >= 0
    own = np.where(real, user_index[np.where(real, owners, 0)], 0).astype(np.int32)
    owner_group = None if tags is None else np.where(real, tags.user_group[own], -2)
    parts = {}
    for field in ("local", "candidates", "random", "test"):
        offsets, flat = getattr(rows, field)
        width = widths["candidates" if field == "random" else field]
        index, mask = pad_rows(offsets, flat, owners, width)
        parts[field] = _gather_rows(table, vectors, index, mask, tags, owner_group)
    if matched_rows > 0:
        if rows.matched_users is None or rows.pool is None:
            raise ValueError("make_chunk: matched_rows > 0 needs rows.matched_users and rows.pool")
        index, mask = matched_index(rows, owners, matched_rows)
    else:
        index, mask = np.zeros((len(owners), 0), np.int64), np.zeros((len(owners), 0), bool)
    parts["matched"] = _gather_rows(table, vectors, index, mask, tags, owner_group)
    # Local vocabulary over every item id the device touches (padding rows hold 0), then remap ids in place.
    keys = ("item", "hist_pos", "hist_neg")
    ids = np.concatenate([parts[f]["features"][k].reshape(len(owners), -1) for f in parts for k in keys], axis=1)
    vocab, remapped, size = chunk_vocab(ids, table.num_items + 1)
    v_width = min(max(bucket_size(int(size.max()), min_bucket), int(least.get("vocab") or 0)),
                  table.num_items + 1)                                               # never wider than the table
    if vocab.shape[1] < v_width:
        vocab = np.pad(vocab, ((0, 0), (0, v_width - vocab.shape[1])))
    vocab = vocab[:, :v_width]
    # Local user vocabulary, over user index + 1 so that 0 stays padding.
    if row_users == "own":
        uids = np.concatenate([np.where(parts[f]["mask"], own[:, None] + 1, 0) for f in parts], axis=1)
    elif row_users == "original":
        uids = np.concatenate([np.where(parts[f]["mask"], parts[f]["features"]["user"] + 1, 0) for f in parts],
                              axis=1)
    else:
        raise ValueError(f"row_users must be 'own' or 'original', got {row_users!r}")
    user_vocab, user_remapped, user_size = chunk_vocab(uids, table.num_users + 1)
    u_width = max(bucket_size(int(user_size.max()), 1), int(least.get("user_vocab") or 0))
    user_vocab = np.pad(user_vocab, ((0, 0), (0, max(0, u_width - user_vocab.shape[1]))))[:, :u_width]
    user_vocab = np.maximum(user_vocab - 1, 0)
    start = ustart = 0
    for f in parts:
        for k in keys:
            shape = parts[f]["features"][k].shape
            n = int(np.prod(shape[1:]))
            parts[f]["features"][k] = remapped[:, start:start + n].reshape(shape)
            start += n
        n = parts[f]["mask"].shape[1]
        parts[f]["features"]["user"] = user_remapped[:, ustart:ustart + n]
        ustart += n
    return DeviceChunk(
        user_index=own, user_mask=real, vocab=vocab.astype(np.int32), user_vocab=user_vocab.astype(np.int32),
        **{f: Rows(**parts[f]) for f in parts})
