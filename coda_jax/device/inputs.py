"""What the device's sample classifier sees of a row (``classifier.inputs``), and what a known-answer world
says of each row (:class:`~coda_jax.device.chunk.RowTags`), both built once per run on the host.

``classifier.inputs`` (static: it sets the classifier's input width):

* ``vector``: the cloud model's sample vector (the one coarse matching searched over; the paper's choice).
* ``vector_label``: that vector and the row's label (1 = liked).
* ``fields``: the row's own fields: the one-hot of its item's genre and its label (``2 * num_genres`` columns;
  on the planted worlds a cluster's one genre), the label, time since T0 (in global time quantiles: a row's quantile minus T0's), and
  the one-hot of the user's profile attribute where the data has one (``table.user_profile``).
* ``din``: DIN's own representation of the row (the target item's embedding and the attention-pooled liked and
  disliked history, ``3 * embed_dim`` columns); only where the model is DIN.

Every device's rows are gathered from the table of inputs this module returns, so the choice costs no work
inside the compiled stage beyond the classifier's width.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from coda_jax.config import Config, ConfigError
from coda_jax.config_check import CLASSIFIER_INPUTS as INPUTS
from coda_jax.data.dataset import cutoff_times


def time_since_t0(time: np.ndarray, cfg: Config) -> np.ndarray:
    """Each row's global time quantile minus T0's (``data.cutoff_t0``, as the two-cutoff split reads it):
    float32 [N], negative before T0."""
    order = np.sort(time)
    t0, _ = cutoff_times(time, cfg)
    n = max(len(time), 1)
    q = np.searchsorted(order, time, side="left") / n
    return (q - np.searchsorted(order, t0, side="left") / n).astype(np.float32)


def field_inputs(cfg: Config, table) -> np.ndarray:
    """The ``fields`` inputs of every table row: float32 [N, 2 * num_genres + 2 (+ P)] laid out as the one-hot of
    (genre, label): genre id g in column g - 1 for a liked row, in column num_genres + g - 1 for a disliked one
    (several genres of one item each set; their sum is the genre one-hot, so a linear classifier can read the
    genre alone or a taste, which genres the user likes), then the label, time since T0, and the one-hot of the
    row owner's profile attribute (``table.user_profile`` int [num_users], values 1..P = ``num_profiles``,
    0 = unknown) where the table has one."""
    n, g = len(table), table.num_genres
    liked = table.label > 0.5
    genre = np.zeros((n, 2 * g), np.float32)
    rows, cols = np.nonzero(table.genres > 0)
    genre[rows, table.genres[rows, cols] - 1 + np.where(liked[rows], 0, g)] = 1.0
    parts = [genre, table.label.astype(np.float32)[:, None], time_since_t0(table.time, cfg)[:, None]]
    values = int(getattr(table, "num_profiles", 0) or 0)
    if values:
        profile = np.asarray(table.user_profile)[table.user]
        onehot = np.zeros((n, values), np.float32)
        ok = profile > 0
        onehot[np.flatnonzero(ok), profile[ok] - 1] = 1.0
        parts.append(onehot)
    return np.concatenate(parts, axis=1)


@functools.partial(jax.jit, static_argnames=("model",))
def _din_parts(model, params, features):
    _, state = model.apply({"params": params}, features, capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    target = inter["item_embed"]["__call__"][0]                    # the first call embeds the target item
    pooled = inter["attention"]["__call__"][0]                      # [B, 2, d]: liked, disliked history
    return jax.numpy.concatenate([target, pooled[:, 0], pooled[:, 1]], axis=-1)


def din_inputs(model, params, table, batch_size: int = 8192) -> np.ndarray:
    """DIN's representation of every row: float32 [N, 3 * embed_dim] (target item embedding, attention-pooled
    liked history, attention-pooled disliked history), each column centred and scaled to unit variance."""
    n = len(table)
    out = None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        idx = np.arange(start, start + batch_size) % n if n > batch_size else np.arange(start, stop)
        part = np.asarray(_din_parts(model, params, table.features(idx)))[: stop - start]
        if out is None:
            out = np.empty((n, part.shape[1]), np.float32)
        out[start:stop] = part
    mean, std = out.mean(axis=0), out.std(axis=0)
    return ((out - mean) / np.maximum(std, 1e-6)).astype(np.float32)


def classifier_inputs(cfg: Config, table, model, cloud) -> np.ndarray:
    """What the sample classifier sees of every table row, as ``classifier.inputs`` says: float32 [N, D]
    (``cloud``: the cloud stage's output; its ``vectors`` [N, H], the sample vectors, for ``vector``; its
    ``params`` are ``model``'s, for ``din``)."""
    kind, vectors, params = cfg.classifier.inputs, cloud.vectors, cloud.params
    if kind == "vector":
        return vectors
    if kind == "vector_label":
        return np.concatenate([vectors, table.label.astype(np.float32)[:, None]], axis=1)
    if kind == "fields":
        return field_inputs(cfg, table)
    if kind == "din":
        if cfg.model.name != "din":
            raise ConfigError(f"classifier.inputs: 'din' needs model.name: din (the model is {cfg.model.name!r})")
        return din_inputs(model, params, table)
    raise ConfigError(f"classifier.inputs: unknown value {kind!r}; known: {', '.join(INPUTS)}")


def row_tags(table):
    """The planted world's answer for every row (:class:`~coda_jax.device.chunk.RowTags`); None elsewhere.
    ``fresh``: the row is at or after the shift time, only where the world has a shift (else all False)."""
    from coda_jax.device.chunk import RowTags  # noqa: PLC0415 - chunk is the lower room; kept lazy for the CLI

    world = table.planted
    if world is None:
        return None
    user_group = np.asarray(world.group)[table.user_ids].astype(np.int64)        # by table user index
    has_shift = bool(np.any(np.asarray(world.shift) != 0))
    fresh = (table.time >= world.shift_time) if has_shift else np.zeros(len(table), bool)
    return RowTags(group=user_group[table.user], fresh=np.asarray(fresh, bool), user_group=user_group)
