"""Turn an interaction log into CTR samples with liked / disliked history features (the DIN feature set)."""

from __future__ import annotations

import numpy as np

from coda_jax.data.schema import Interactions, SampleTable


def block_starts(is_new: np.ndarray) -> np.ndarray:
    """For each position, the index of the start of its run, given bool [N] marking run starts -> int [N]."""
    return np.maximum.accumulate(np.where(is_new, np.arange(is_new.shape[0]), 0))


def _last_l_before(is_kind: np.ndarray, item: np.ndarray, group_start: np.ndarray,
                   user_start: np.ndarray, history_len: int) -> np.ndarray:
    """For each row, the last ``history_len`` items of rows with ``is_kind`` strictly before its time group.

    All arrays are indexed by row of a table sorted by (user, time). Returns int32 [N, history_len],
    most recent first, 0-padded.
    """
    kind_rows = np.flatnonzero(is_kind)
    # before[i] = number of kind rows at positions < i (global, across users).
    before = np.concatenate([[0], np.cumsum(is_kind, dtype=np.int64)])
    upto = before[group_start]          # kind rows strictly before this row's (user, time) group
    floor = before[user_start]          # kind rows before this user's first row
    out = np.zeros((item.shape[0], history_len), dtype=np.int32)
    for j in range(history_len):        # L is small (~10): a loop over history slots, not rows
        k = upto - 1 - j
        valid = k >= floor
        out[valid, j] = item[kind_rows[k[valid]]]
    return out


def build_samples(inter: Interactions, history_len: int) -> SampleTable:
    """Build the CTR sample table of an interaction log.

    Rows are sorted by (user, time); ties keep the log's order. A row's history holds only events of the
    same user with a strictly earlier timestamp, so same-second events never see each other's labels.

    Args:
      inter: interactions with N rows.
      history_len: ``L``, the number of liked and of disliked items kept per row.

    Returns:
      A :class:`SampleTable` with N rows.
    """
    if len(inter) == 0:
        raise ValueError(f"{inter.name}: the dataset has no interactions")
    if history_len < 1:
        raise ValueError(f"history_len must be >= 1, got {history_len}")
    order = np.lexsort((np.arange(len(inter)), inter.time, inter.user))
    user = inter.user[order].astype(np.int32)
    item = inter.item[order].astype(np.int32)
    label = inter.label[order].astype(np.float32)
    time = inter.time[order].astype(np.int64)
    n = user.shape[0]
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    new_group = new_user.copy()
    new_group[1:] |= time[1:] != time[:-1]
    user_start = block_starts(new_user)
    group_start = block_starts(new_group)
    pos = label > 0.5
    hist_pos = _last_l_before(pos, item, group_start, user_start, history_len)
    hist_neg = _last_l_before(~pos, item, group_start, user_start, history_len)
    return SampleTable(
        user=user, item=item, genres=inter.item_genres[item].astype(np.int32),
        hist_pos=hist_pos, hist_neg=hist_neg, label=label, time=time,
        user_ids=inter.user_ids, num_items=inter.num_items, num_genres=inter.num_genres, name=inter.name,
        logit=None if inter.logit is None else inter.logit[order], planted=inter.planted,
        user_profile=inter.user_profile, num_profiles=inter.num_profiles)
