"""What MovieLens 100K and 1M share: a ratings file whose users / movies must be listed in the user / movie
files, read through the ingest core."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import DropReport, Drops, Issues
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Delimited, LineFormat, scan_ratings
from coda_jax.data.tables import dedupe, finish, lookup


@dataclasses.dataclass(frozen=True)
class RatingsFile:
    """A ``user sep item sep rating sep timestamp`` file and how to read it."""

    path: Path
    sep: bytes
    sep_name: str                  # the separator in words, for errors ("tab-separated")
    like_threshold: float
    skip_bad_rows: bool
    block_bytes: int
    signed_time: bool              # timestamps may be negative (MovieLens 1M: before 1970)


@dataclasses.dataclass(frozen=True)
class Listing:
    """The users and movies a ratings file may name: ``user_ids`` int64 [U] / ``movie_ids`` int64 [I] (sorted)
    as listed in ``user_file`` / ``item_file``, the movies' ``item_genres`` and ``num_genres``, and the
    dataset's ``name``."""

    user_ids: np.ndarray
    user_file: Path
    movie_ids: np.ndarray
    item_file: Path
    item_genres: np.ndarray
    num_genres: int
    name: str


def listed_ratings(ratings: RatingsFile, listing: Listing) -> tuple[Interactions, DropReport]:
    """Read ``user sep item sep rating (1..5) sep timestamp`` lines whose users / items must be listed
    (``listing.user_ids`` / ``listing.movie_ids``) in ``listing.user_file`` / ``listing.item_file``.

    Users are densified over ``user_ids`` (rank), items over ``movie_ids`` (rank + 1); rows keep the file
    order. Bad rows, unknown users / items and repeats of an earlier (user, item, timestamp) raise, or with
    ``skip_bad_rows`` are dropped and counted.

    Returns ``(Interactions, DropReport)`` with ``user_ids`` int64 [U] and ``name``.
    """
    path, sep, sep_name, like_threshold = ratings.path, ratings.sep, ratings.sep_name, ratings.like_threshold
    user_ids, user_file, movie_ids, item_file = listing.user_ids, listing.user_file, listing.movie_ids, listing.item_file
    drops = Drops(ratings.skip_bad_rows)
    stream = Delimited(path, LineFormat(sep, 4, f"4 {sep_name} fields (user, item, rating, timestamp)"), drops,
                       ratings.block_bytes)
    r = scan_ratings(stream, ("user", "item", "rating", "timestamp"), "int", (1.0, 5.0), like_threshold,
                     signed_time=ratings.signed_time)
    upos, ufound = lookup(user_ids, r["user"].astype(np.int64))
    ipos, ifound = lookup(movie_ids, r["item"].astype(np.int64))
    iss = Issues(path, r["line"])
    iss.add(~ufound, "unknown_user", lambda i: f"user {int(r['user'][i])} is not listed in {user_file}")
    iss.add(~ifound, "unknown_item", lambda i: f"item {int(r['item'][i])} is not listed in {item_file}")
    keep = iss.resolve(drops)
    line, label, time = r["line"], r["label"], r["time"]
    if keep is not None:
        upos, ipos, line, label, time = upos[keep], ipos[keep], line[keep], label[keep], time[keep]
    keep = dedupe(path, drops, line, (upos, ipos, time), "user, item and timestamp")
    return finish(path, drops, listing.name, (upos[keep], ipos[keep] + 1, label[keep], time[keep]),
                  (listing.item_genres, user_ids.astype(np.int64), listing.num_genres))
