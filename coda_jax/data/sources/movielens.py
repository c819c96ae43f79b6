"""What MovieLens 100K and 1M share: a ratings file whose users / movies must be listed in the user / movie
files, read through the ingest core."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coda_jax.data.ingest import DropReport, Drops, Issues
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Delimited, scan_ratings
from coda_jax.data.tables import dedupe, finish, lookup


def listed_ratings(path: Path, sep: bytes, sep_name: str, user_ids: np.ndarray, user_file: Path,
                   movie_ids: np.ndarray, item_file: Path, item_genres: np.ndarray, num_genres: int, name: str,
                   like_threshold: float, skip_bad_rows: bool, block_bytes: int,
                   signed_time: bool) -> tuple[Interactions, DropReport]:
    """Read ``user sep item sep rating (1..5) sep timestamp`` lines whose users / items must be listed
    (``user_ids`` int64 [U] / ``movie_ids`` int64 [I], sorted) in ``user_file`` / ``item_file``.

    Users are densified over ``user_ids`` (rank), items over ``movie_ids`` (rank + 1); rows keep the file
    order. Bad rows, unknown users / items and repeats of an earlier (user, item, timestamp) raise, or with
    ``skip_bad_rows`` are dropped and counted.

    Returns ``(Interactions, DropReport)`` with ``user_ids`` int64 [U] and ``name``.
    """
    drops = Drops(skip_bad_rows)
    stream = Delimited(path, sep, 4, f"4 {sep_name} fields (user, item, rating, timestamp)", drops, block_bytes)
    r = scan_ratings(stream, ("user", "item", "rating", "timestamp"), "int", (1.0, 5.0), like_threshold,
                     signed_time=signed_time)
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
    return finish(path, drops, name, upos[keep], ipos[keep] + 1, label[keep], time[keep], item_genres,
                  user_ids.astype(np.int64), num_genres)
