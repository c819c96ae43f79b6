"""A pandas DataFrame in: :func:`interactions_from_frame` turns one row per (user, item, label, timestamp) event
into the :class:`~coda_jax.data.schema.Interactions` every stage reads, as the file readers do.

Ids are any values (numbers or strings): users are remapped to ``0..U-1`` and items to ``1..I`` in sorted order
(``Interactions.user_ids`` keeps the frame's own user ids, which results report). A bad value -- a missing id,
a label other than 0 / 1, a timestamp that is neither an integer nor a datetime, a repeated (user, item,
timestamp) -- raises :class:`~coda_jax.data.ingest.DataError` naming the column and the row (its position and
its index label). pandas is needed only by the caller: this module never imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coda_jax.data.ingest import DataError
from coda_jax.data.schema import Interactions
from coda_jax.data.tables import densify, duplicates, genre_table

NAME = "DataFrame"
"""The name of a log built from a frame (``Interactions.name``; ``results.json`` -> ``data.source``)."""


def _show(x: Any) -> str:
    return repr(x.item() if isinstance(x, np.generic) else x)


def _where(df: Any, col: str, pos: int) -> str:
    return f"{NAME} column {col!r}, row {pos} (index {df.index[pos]!r})"


def _column(df: Any, col: str, what: str) -> np.ndarray:
    """The column ``col`` as a numpy array [N]; raise naming it when missing or holding a null."""
    if not isinstance(col, str) and not np.isscalar(col):
        raise DataError(f"{NAME}: the {what} column must be named by a string, got {col!r}")
    if col not in df.columns:
        raise DataError(f"{NAME}: no column {col!r} for the {what} (columns: {', '.join(map(str, df.columns))})")
    series = df[col]
    null = np.asarray(series.isna())
    if null.any():
        raise DataError(f"{_where(df, col, int(np.flatnonzero(null)[0]))}: missing {what}")
    return series.to_numpy()


def _ids(df: Any, col: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(vocab [V], index int64 [N])`` of an id column: integer ids stay integers, anything else is text."""
    raw = _column(df, col, what)
    if raw.dtype.kind == "f":
        frac = raw != np.floor(raw)
        if frac.any():
            pos = int(np.flatnonzero(frac)[0])
            raise DataError(f"{_where(df, col, pos)}: {what} ids must be integers or text, got {_show(raw[pos])}")
        raw = raw.astype(np.int64)
    elif raw.dtype.kind not in "iub":
        raw = np.array([str(x) for x in raw], dtype=str)
    return densify(raw)


def _labels(df: Any, col: str) -> np.ndarray:
    raw = _column(df, col, "label")
    if raw.dtype.kind not in "biuf":
        number = np.array([isinstance(x, (bool, int, float, np.number, np.bool_)) for x in raw])
        if not number.all():
            pos = int(np.flatnonzero(~number)[0])
            raise DataError(f"{_where(df, col, pos)}: labels must be 0 or 1, got {_show(raw[pos])}")
    y = raw.astype(np.float64)
    bad = (y != 0) & (y != 1)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(f"{_where(df, col, pos)}: labels must be 0 or 1, got {_show(raw[pos])} (threshold ratings first, "
                        "e.g. df['label'] = df['rating'] >= 4)")
    return y.astype(np.float32)


def _times(df: Any, col: str) -> np.ndarray:
    """int64 [N] timestamps: integers as given, datetimes as unix seconds."""
    raw = _column(df, col, "timestamp")
    if raw.dtype.kind == "M":
        return raw.astype("datetime64[s]").astype(np.int64)
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    if raw.dtype.kind == "f":
        frac = ~np.isfinite(raw) | (raw != np.floor(raw))
        if not frac.any():
            return raw.astype(np.int64)
        pos = int(np.flatnonzero(frac)[0])
    else:
        pos = 0
    raise DataError(f"{_where(df, col, pos)}: timestamps must be integers or datetimes, got {_show(raw[pos])}")


def _genre_names(df: Any, col: str, value: Any, pos: int) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        names = [g.strip() for g in value.split("|")] if value.strip() else []
    elif isinstance(value, (list, tuple, np.ndarray, set, frozenset)):
        names = [str(g).strip() for g in value]
    else:
        raise DataError(f"{_where(df, col, pos)}: genres must be a list of names or a '|'-separated string, "
                        f"got {value!r}")
    if any(not g for g in names):
        raise DataError(f"{_where(df, col, pos)}: an empty genre name in {value!r}")
    return names


def interactions_from_frame(df: Any, *, user: str = "user", item: str = "item", label: str = "label",
                            timestamp: str = "timestamp", genres: str | None = None) -> Interactions:
    """The interaction log of a DataFrame, one row per event; give it to ``cj.make_dataset(cfg, inter)``.

    Args:
      df: a pandas DataFrame with N rows.
      user, item: the columns of the user and item ids (any values: numbers or text).
      label: the column of 0 / 1 labels (bool or numbers).
      timestamp: the column of event times: integers (any monotone unit) or datetimes (read as unix seconds).
      genres: optional column of each row's item genres: a list of names or a ``'|'``-separated string (an
        item's genres are the union over its rows); without it the items have no genres.

    Returns:
      :class:`~coda_jax.data.schema.Interactions`: ``user`` int32 [N] in ``0..U-1``, ``item`` int32 [N] in
      ``1..I`` (both remapped in sorted order of the ids), ``label`` float32 [N], ``time`` int64 [N],
      ``item_genres`` int32 [I + 1, G], ``user_ids`` [U] (the frame's user ids), ``name`` ``"DataFrame"``.

    Raises:
      DataError: a missing column, an empty frame, or a bad value, naming the column and the row.
    """
    if not (hasattr(df, "columns") and hasattr(df, "index") and hasattr(df, "__getitem__")):
        raise DataError(f"{NAME}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"{NAME}: no rows")
    user_ids, u = _ids(df, user, "user")
    item_vocab, it = _ids(df, item, "item")
    y = _labels(df, label)
    t = _times(df, timestamp)
    dup, first = duplicates([u, it, t])
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise DataError(f"{NAME} row {pos} (index {df.index[pos]!r}): repeats row {int(first[pos])} (index "
                        f"{df.index[int(first[pos])]!r}): same {user}, {item} and {timestamp}")
    item_genres, num_genres = np.zeros((item_vocab.shape[0] + 1, 1), np.int32), 0
    if genres is not None:
        names: dict[int, set[str]] = {}
        for pos, (i, value) in enumerate(zip(it, _genre_column(df, genres))):
            names.setdefault(int(i) + 1, set()).update(_genre_names(df, genres, value, pos))
        item_genres, num_genres = genre_table({i: sorted(g) for i, g in names.items()}, item_vocab.shape[0])
    return Interactions(user=u.astype(np.int32), item=(it + 1).astype(np.int32), label=y, time=t,
                        item_genres=item_genres.astype(np.int32), user_ids=user_ids, num_genres=int(num_genres),
                        name=NAME)


def _genre_column(df: Any, col: str) -> np.ndarray:
    if col not in df.columns:
        raise DataError(f"{NAME}: no column {col!r} for the genres (columns: {', '.join(map(str, df.columns))})")
    return df[col].to_numpy(dtype=object)
