"""MovieLens 100K (``ml-100k.zip`` from GroupLens): ``u.data``, ``u.item``, ``u.user``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, DataError
from coda_jax.data.parse import show
from coda_jax.data.schema import Interactions
from coda_jax.data.sources.movielens import Listing, RatingsFile, listed_ratings
from coda_jax.data.stream import LineFormat, read_table
from coda_jax.data.tables import check_dir, metadata_ids, pack_genres

__all__ = ["read_movielens100k", "ML100K_NUM_GENRES"]

ML100K_NUM_GENRES = 19
"""Number of genre flag columns in MovieLens 100K ``u.item`` (genre ids ``1..19``)."""

FILES = ("u.data", "u.item", "u.user")
KIND, NEEDS = "dir", "the folder holding u.data, u.item, u.user"
_ITEM_FIELDS = 5 + ML100K_NUM_GENRES  # id | title | release | video release | url | 19 flags


def _items(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``u.item``. Returns ``movie_ids`` int64 [I] ascending (the dense item id of ``movie_ids[k]`` is
    ``k + 1``) and ``item_genres`` int32 [I + 1, Gmax]: left-packed genre ids (flag column ``j`` -> genre
    ``j + 1``), 0-padded, row 0 the padding item, ``Gmax = max(1, most genres of any item)``."""
    fields, lines = read_table(path, LineFormat(b"|", _ITEM_FIELDS, f"{_ITEM_FIELDS} '|'-separated fields (movie id | "
                                                f"title | release date | video release date | IMDb URL | "
                                                f"{ML100K_NUM_GENRES} genre flags)"), "no movies")
    ids = metadata_ids(path, fields[:, 0], lines, "movie id")
    flags = np.char.strip(fields[:, 5:])  # [I, 19]; surrounding whitespace tolerated
    is_one = flags == b"1"
    ok = is_one | (flags == b"0")
    if not ok.all():
        i, j = (int(v) for v in np.argwhere(~ok)[0])
        raise DataError(f"{path} line {int(lines[i])}: field 'genre flag {j + 1}' (column {j + 6}) must be 0 or 1, "
                        f"got {show(fields[i, 5 + j])}")
    order = np.argsort(ids, kind="stable")
    rows, cols = np.nonzero(is_one[order])  # row-major: each item's flags in ascending column order
    return ids[order], pack_genres(ids.shape[0], rows + 1, cols + 1, ML100K_NUM_GENRES)


def read_movielens100k(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                       block_bytes: int | None = None) -> Interactions:
    """Read the original MovieLens 100K files from ``data_dir``.

    * ``u.data`` -- tab-separated ``user id, item id, rating (1..5), unix timestamp``, one rating per line;
    * ``u.item`` -- ``|``-separated, Latin-1: ``movie id | title | release date | video release date |
      IMDb URL | 19 genre flags (0/1)``;
    * ``u.user`` -- ``|``-separated: ``user id | age | gender | occupation | zip code``.

    Ids are densified: users over ``u.user``'s ids (dense index = rank of the id, 0-based), items over
    ``u.item``'s ids (dense id = rank + 1, 0 is padding). Genre flag column ``j`` (0-based) is genre ``j + 1``,
    so ``num_genres == 19``. Rows keep ``u.data``'s order.

    Args:
      data_dir: directory containing ``u.data``, ``u.item`` and ``u.user``.
      like_threshold: a rating ``>= like_threshold`` gets label 1.0, anything below 0.0.
      skip_bad_rows: drop and count bad ``u.data`` rows (the reasons of :data:`coda_jax.data.ingest.DROP_REASONS`)
        instead of raising. ``u.item`` / ``u.user`` must be well-formed either way.
      block_bytes: read ``u.data`` in blocks of this many bytes (default 8 MiB; small values are for tests).

    Returns:
      :class:`Interactions` with ``user`` int32 [N], ``item`` int32 [N] (``1..I``), ``label`` float32 [N],
      ``time`` int64 [N] (unix seconds), ``item_genres`` int32 [I + 1, Gmax], ``user_ids`` int64 [U] (the
      dataset's user ids, ascending), ``num_genres = 19``, ``name = str(data_dir)`` and ``dropped_rows``
      (reason -> count; empty unless ``skip_bad_rows`` dropped something).

    Raises:
      DataError: missing directory / file, wrong field count, non-numeric id / rating / timestamp, rating
        outside 1..5, genre flag not 0/1, duplicate ids in ``u.item`` / ``u.user``, a ``u.data`` row repeating
        an earlier row's user, item and timestamp, a rating whose user or item is not listed, or an empty
        ``u.data``; the message names the file, and the line and field where they apply.
    """
    root = Path(data_dir)
    check_dir(root, FILES, "MovieLens 100K")
    movie_ids, item_genres = _items(root / "u.item")
    fields, lines = read_table(root / "u.user", LineFormat(b"|", 5, "5 '|'-separated fields (user id | age | gender | "
                                                           "occupation | zip code)"), "no users")
    user_ids = metadata_ids(root / "u.user", fields[:, 0], lines, "user id")
    inter, report = listed_ratings(
        RatingsFile(root / "u.data", b"\t", "tab-separated", like_threshold, skip_bad_rows,
                    BLOCK_BYTES if block_bytes is None else block_bytes, signed_time=False),
        Listing(np.sort(user_ids), root / "u.user", movie_ids, root / "u.item", item_genres, ML100K_NUM_GENRES,
                str(data_dir)))
    return dataclasses.replace(inter, dropped_rows=report.to_dict())


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``data_dir``, shared options)."""
    return read_movielens100k(d.data_dir, d.like_threshold, skip_bad_rows=d.skip_bad_rows)
