"""A device's copy of the recommendation model: only the embedding rows its samples touch.

The local vocabulary of a user is the sorted set of item ids appearing in any of its rows (targets and
history), with id 0 (padding) always at local index 0. Item ids in the user's rows are remapped to
``0..V-1``; likewise user ids to a small local user vocabulary (the device's own user, plus the original
users of augmented rows when those keep their users). The device's parameters are the global ones with
item tables gathered to ``[V, ...]`` and user tables to ``[Vu, ...]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.models.features import param_group


def local_vocab(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row vocabularies of item ids, vectorized over rows.

    Args:
      ids: int [U, M] every item id a user touches (0 = padding allowed anywhere).

    Returns:
      ``(vocab, remapped, size)``: vocab int32 [U, M + 1] sorted distinct ids per row with 0 first and 0-padding
      after ``size``; remapped int32 [U, M], ``vocab[u, remapped[u, j]] == ids[u, j]``; size int [U] number of
      distinct ids including 0.
    """
    ids = np.asarray(ids)
    u, m = ids.shape
    full = np.concatenate([np.zeros((u, 1), ids.dtype), ids], axis=1)       # guarantee id 0 at index 0
    order = np.argsort(full, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(full, order, axis=1)
    new = np.ones_like(sorted_ids, dtype=bool)
    new[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    local_sorted = np.cumsum(new, axis=1) - 1
    local = np.empty_like(local_sorted)
    np.put_along_axis(local, order, local_sorted, axis=1)
    size = new.sum(axis=1)
    vocab = np.zeros((u, m + 1), dtype=np.int32)
    rr, cc = np.nonzero(new)
    vocab[rr, local_sorted[rr, cc]] = sorted_ids[rr, cc]
    return vocab, local[:, 1:].astype(np.int32), size


def localize_params(params: dict, vocab: jnp.ndarray, user_vocab: jnp.ndarray) -> dict:
    """One device's parameter copy: gather item rows ``vocab`` [V] and user rows ``user_vocab`` [Vu].

    Item tables become ``[V, ...]``, user tables ``[Vu, ...]`` (``[1, ...]`` when ``user_vocab`` is a scalar
    user index); genre tables and dense layers are copied.
    Pure and vmappable (vmap over ``vocab`` and ``user_vocab`` with ``params`` unmapped).
    """
    out = {}
    for name, sub in params.items():
        group = param_group(name)
        if group == "item":
            out[name] = jax.tree_util.tree_map(lambda t: t[vocab], sub)
        elif group == "user":
            out[name] = jax.tree_util.tree_map(lambda t: t[jnp.atleast_1d(user_vocab)], sub)
        else:
            out[name] = sub
    return out


def local_model(model, vocab_width: int, user_vocab_width: int = 1):
    """The model definition of a device copy: ``vocab_width`` item rows (id 0 included), ``user_vocab_width``
    user rows.

    Every model exposes ``num_items`` and ``num_users`` fields; tables are sized ``num_items + 1`` and
    ``num_users``.
    """
    return model.clone(num_items=vocab_width - 1, num_users=user_vocab_width)


def is_trainable(name: str, trainable: tuple[str, ...]) -> bool:
    """Whether the top-level parameter ``name`` is fine-tuned: its group (``dense``, ``user``, ``item``,
    ``genre``) or its own name (e.g. ``mlp``, ``out``, ``attention`` for DIN) is listed in ``trainable``."""
    return param_group(name) in trainable or name in trainable


def split_trainable(params: dict, trainable: tuple[str, ...]) -> tuple[dict, dict]:
    """Split a parameter dict by top-level name into ``(trainable, frozen)`` dicts (see :func:`is_trainable`)."""
    train = {k: v for k, v in params.items() if is_trainable(k, trainable)}
    frozen = {k: v for k, v in params.items() if not is_trainable(k, trainable)}
    return train, frozen
