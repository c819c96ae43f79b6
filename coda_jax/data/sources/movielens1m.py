"""MovieLens 1M (``ml-1m.zip`` from GroupLens): ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, DropReport
from coda_jax.data.schema import Interactions
from coda_jax.data.sources.movielens import Listing, RatingsFile, listed_ratings
from coda_jax.data.stream import LineFormat, read_table
from coda_jax.data.tables import check_dir, genre_names, genre_table, metadata_ids, recorded

__all__ = ["read_movielens1m"]

FILES = ("ratings.dat", "movies.dat", "users.dat")
KIND, NEEDS = "dir", "the folder holding ratings.dat, movies.dat, users.dat"


def _movies(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns ``(movie_ids int64 [I] ascending, item_genres int32 [I + 1, Gmax], num_genres)``."""
    fields, lines = read_table(path, LineFormat(b"::", 3, "3 '::'-separated fields (movie id :: title :: genres)"),
                               "empty file")
    ids = metadata_ids(path, fields[:, 0], lines, "movie id")
    order = np.argsort(ids, kind="stable")
    names = {k + 1: genre_names(path, int(lines[i]), fields[i, 2].decode("latin-1")) for k, i in enumerate(order)}
    item_genres, num_genres = genre_table(names, ids.shape[0])
    return ids[order], item_genres, num_genres


def read_movielens1m(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                     block_bytes: int = BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read MovieLens 1M from ``data_dir``.

    * ``ratings.dat`` -- ``UserID::MovieID::Rating::Timestamp``, ratings 1..5, unix seconds;
    * ``movies.dat`` -- ``MovieID::Title::Genre1|Genre2|...`` (Latin-1);
    * ``users.dat`` -- ``UserID::Gender::Age::Occupation::Zip-code``.

    Users are densified over ``users.dat`` (rank of the id), items over ``movies.dat`` (rank + 1). Genres are
    the distinct genre names of ``movies.dat``, ids ``1..G`` in sorted name order. Rows keep the file order.
    ``movies.dat`` / ``users.dat`` must be well-formed (any problem raises). Rating rows with a problem, a
    user / movie missing from ``users.dat`` / ``movies.dat``, or repeating an earlier (user, movie, timestamp)
    raise, or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)``; ``user_ids`` int64 [U] ascending, ``name = str(data_dir)``.
    """
    root = Path(data_dir)
    check_dir(root, FILES, "MovieLens 1M")
    movie_ids, item_genres, num_genres = _movies(root / "movies.dat")
    fields, lines = read_table(root / "users.dat", LineFormat(b"::", 5, "5 '::'-separated fields (user id :: gender "
                                                              ":: age :: occupation :: zip code)"), "empty file")
    user_ids = metadata_ids(root / "users.dat", fields[:, 0], lines, "user id")
    return listed_ratings(
        RatingsFile(root / "ratings.dat", b"::", "'::'-separated", like_threshold, skip_bad_rows, block_bytes,
                    signed_time=True),
        Listing(np.sort(user_ids), root / "users.dat", movie_ids, root / "movies.dat", item_genres, num_genres,
                str(data_dir)))


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``data_dir``, shared options), its
    dropped rows recorded."""
    return recorded(*read_movielens1m(d.data_dir, d.like_threshold, skip_bad_rows=d.skip_bad_rows))
