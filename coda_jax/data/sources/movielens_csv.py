"""MovieLens 20M / 25M / 32M / latest(-small): ``ratings.csv`` (streamed) and ``movies.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, DataError, DropReport, Drops
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Delimited, LineFormat, read_table, scan_ratings
from coda_jax.data.tables import check_dir, dedupe, densify, finish, genre_names, genre_table, lookup, metadata_ids, \
    recorded

__all__ = ["read_movielens_csv"]

FILES = ("ratings.csv", "movies.csv")
KIND, NEEDS = "dir", "the folder holding ratings.csv and movies.csv (ml-20m, ml-25m, ml-latest)"
_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_MOVIES_HEADER = ["movieId", "title", "genres"]


def _movies(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns ``(movie_ids int64 [I] ascending, item_genres int32 [I + 1, Gmax], num_genres)``."""
    fields, lines = read_table(path, LineFormat(b",", 3, "3 comma-separated fields (movieId, title, genres; quote "
                                                "titles holding commas)", quotes=True), "no movies",
                               header=_MOVIES_HEADER)
    try:  # the whole file is UTF-8 (lines with quotes were decoded already)
        b"\n".join(fields[:, 1:].ravel()).decode("utf-8")
    except UnicodeDecodeError:
        for i, row in enumerate(fields):
            try:
                row[1].decode("utf-8") + row[2].decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path} line {int(lines[i])}: cannot decode as utf-8: {e.reason}") from None
    ids = metadata_ids(path, fields[:, 0], lines, "movieId")
    genres = [genre_names(path, int(line), g.decode("utf-8")) for line, g in zip(lines, fields[:, 2])]
    order = np.argsort(ids, kind="stable")
    item_genres, num_genres = genre_table({k + 1: genres[i] for k, i in enumerate(order)}, ids.shape[0])
    return ids[order], item_genres, num_genres


def read_movielens_csv(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                       block_bytes: int = BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read MovieLens 20M / 25M / 32M / latest(-small) from ``data_dir``, streaming ``ratings.csv``.

    * ``ratings.csv`` -- header ``userId,movieId,rating,timestamp``; ratings 0.5..5 (half stars), unix seconds;
    * ``movies.csv`` -- header ``movieId,title,genres``; titles may be quoted and hold commas; genres are
      ``|``-separated, ``(no genres listed)`` meaning none.

    Users are densified over the user ids of ``ratings.csv`` (rank), items over ``movies.csv`` (rank + 1);
    genres are the distinct genre names, ids ``1..G`` in sorted order. Ratings of movies missing from
    ``movies.csv`` are always dropped and counted under ``unknown_item`` (never an error). Other bad rows raise,
    or with ``skip_bad_rows`` are dropped and counted. Rows keep the file order.

    Returns:
      ``(Interactions, DropReport)``; ``user_ids`` int64 [U] ascending, ``name = str(data_dir)``.
    """
    root = Path(data_dir)
    check_dir(root, FILES, "MovieLens CSV")
    movie_ids, item_genres, num_genres = _movies(root / "movies.csv")
    path = root / "ratings.csv"
    drops = Drops(skip_bad_rows)
    stream = Delimited(path, LineFormat(b",", 4, "4 comma-separated fields (userId, movieId, rating, timestamp)"),
                       drops, block_bytes)
    try:
        stream.read_header(_RATINGS_HEADER)
    except DataError:
        stream.close()
        raise
    r = scan_ratings(stream, ("userId", "movieId", "rating", "timestamp"), "int", (0.5, 5.0), like_threshold)
    ipos, found = lookup(movie_ids, r["item"].astype(np.int64))
    if not found.all():
        bad = np.flatnonzero(~found)
        drops.report.add("unknown_item", int(bad.size), f"{path} line {int(r['line'][bad[0]])}")
    label, time, line, ipos = r["label"][found], r["time"][found], r["line"][found], ipos[found]
    user_ids, user = densify(r["user"][found].astype(np.int64))
    keep = dedupe(path, drops, line, (user, ipos, time), "userId, movieId and timestamp")
    return finish(path, drops, str(data_dir), (user[keep], ipos[keep] + 1, label[keep], time[keep]),
                  (item_genres, user_ids.astype(np.int64), num_genres))


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``data_dir``, shared options), its
    dropped rows recorded."""
    return recorded(*read_movielens_csv(d.data_dir, d.like_threshold, skip_bad_rows=d.skip_bad_rows))
