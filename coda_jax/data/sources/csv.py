"""Any delimited interaction file, given a column mapping.

Options: ``data.csv`` (:class:`~coda_jax.config.CsvConfig`): ``columns``, ``target``, ``has_header``,
``delimiter``.
"""

from __future__ import annotations

import dataclasses

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, DataError, DropReport, Drops, Issues
from coda_jax.data.parse import chars, float_col, id_checks, int_col, rating_checks, show, str_checks
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Block, Delimited, LineFormat, scan
from coda_jax.data.tables import dedupe, densify, finish, genre_names, genre_table, lookup, recorded, string_ids

__all__ = ["read_interactions_csv", "CSV_COLUMN_KEYS"]

KIND, NEEDS = "file", "the interactions file (columns named by data.csv.columns)"
CSV_COLUMN_KEYS = ("user", "item", "rating", "label", "time", "genre")


def _resolve_columns(path: Path, columns: Mapping[str, str | int], header: list[str] | None) -> dict[str, int]:
    """Returns key -> 0-based column number of a column mapping (header names looked up in ``header``)."""
    unknown = [k for k in columns if k not in CSV_COLUMN_KEYS]
    if unknown:
        raise ValueError(f"columns: unknown key {unknown[0]!r}; known: {', '.join(CSV_COLUMN_KEYS)}")
    for k in ("user", "item", "time"):
        if k not in columns:
            raise ValueError(f"columns: missing {k!r} (need user, item, time and one of rating / label)")
    if ("rating" in columns) == ("label" in columns):
        raise ValueError("columns: give exactly one of 'rating' (label = rating >= like_threshold) or 'label' (0/1)")
    out: dict[str, int] = {}
    for k, c in columns.items():
        if isinstance(c, str) and not c.isdigit() and header is None:
            raise ValueError(f"columns: {k!r} names column {c!r} but the file has no header; give 0-based numbers")
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit() and (header is None or c not in header)):
            out[k] = int(c)
        else:
            if c not in header:
                raise DataError(f"{path} line 1: the header has no column {c!r} (for {k}); header: {', '.join(header)}")
            out[k] = header.index(c)
    if len(set(out.values())) != len(out):
        raise ValueError(f"columns: two keys name the same column: {columns!r}")
    return out


def _all_uint(col: np.ndarray) -> bool:
    """Returns whether every id (bytes [N]) is a canonical non-negative integer (no leading zeros, so "007" and
    "7" stay distinct ids)."""
    if not col.size or not int_col(col)[1].all():
        return False
    ch = chars(np.char.strip(col))
    return ch.shape[1] < 2 or not ((ch[:, 0] == 48) & (ch[:, 1] != 0)).any()


def _id_keys(col: np.ndarray, numeric: bool) -> np.ndarray:
    """Returns comparable keys of a bytes id column [N]: int64 values when ``numeric``, else the stripped bytes."""
    return int_col(col)[0] if numeric else np.char.strip(col)


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How a delimited interactions file is laid out: ``has_header`` (the first line names the columns; its
    field count is every line's; without a header every line must have the field count of the first data
    line) and the one-character ``delimiter``."""

    has_header: bool = True
    delimiter: str = ","


def read_interactions_csv(path: str | os.PathLike, columns: Mapping[str, str | int], like_threshold: float = 4.0,
                          fmt: CsvFormat = CsvFormat(), *, skip_bad_rows: bool = False,
                          block_bytes: int = BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read any delimited interaction file given a column mapping.

    Args:
      path: the file (``.gz`` is decompressed). Fields may be ``"``-quoted (not across lines).
      columns: ``user``, ``item``, ``time`` and exactly one of ``rating`` (label = rating >= like_threshold)
        or ``label`` (0 / 1), optionally ``genre`` (``|``-separated genre names of the row's item); each the
        header name of the column, or its 0-based number (required without a header).
      like_threshold: positive threshold of a ``rating`` column.
      fmt: the header and delimiter (:class:`CsvFormat`).
      skip_bad_rows: drop and count bad rows instead of raising.

    Ids: when every user (item) id is a non-negative integer they are densified numerically and ``user_ids``
    is int64, else as strings in sorted order and ``user_ids`` is a str array. Items are ``1..I``. Genres
    (only with a ``genre`` column) are the distinct names, ids ``1..G`` in sorted order; an item's genres are
    the union over its rows. Timestamps are integers. Rows keep the file order; repeats of an earlier (user,
    item, time) raise, or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)`` with ``name = str(path)``.
    """
    path, has_header, delimiter = Path(path), fmt.has_header, fmt.delimiter
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ValueError(f"delimiter must be one character other than a quote or line break, got {delimiter!r}")
    drops = Drops(skip_bad_rows)
    stream = Delimited(path, LineFormat(delimiter.encode(), None, f"{{n}} {delimiter!r}-separated fields", quotes=True),
                       drops, block_bytes)
    header = None
    try:
        if has_header:
            header = stream.read_header()
            stream.nfields = len(header)
            stream.describe = f"{len(header)} {delimiter!r}-separated fields ({', '.join(header)})"
        cols = _resolve_columns(path, columns, header)
        if stream.nfields is not None and max(cols.values()) >= stream.nfields:
            raise DataError(f"{path}: column {max(cols.values())} does not exist (lines have {stream.nfields} fields)")
    except BaseException:
        stream.close()
        raise
    fname = {k: (header[c] if header is not None else f"column {c}") for k, c in cols.items()}

    def parse(b: Block, iss: Issues) -> dict[str, np.ndarray]:
        if "rating" in cols:
            label = rating_checks(iss, b.cols[cols["rating"]], None, None, fname["rating"], like_threshold)
        else:
            col = b.cols[cols["label"]]
            v, ok = float_col(col)
            iss.add(~(ok & ((v == 0) | (v == 1))), "bad_label",
                    lambda i: f"field {fname['label']!r} must be 0 or 1, got {show(col[i])}")
            label = v == 1
        out = {"user": str_checks(iss, b.cols[cols["user"]], fname["user"]),
               "item": str_checks(iss, b.cols[cols["item"]], fname["item"]), "label": label,
               "time": id_checks(iss, b.cols[cols["time"]], fname["time"], signed=True)}
        return {**out, "genre": b.cols[cols["genre"]]} if "genre" in cols else out

    item_genre_sets: dict[bytes, set[bytes]] = {}  # raw item id -> its rows' genre fields (distinct)

    def genres_of(kept: dict[str, np.ndarray]) -> None:
        it_u, it_inv = np.unique(kept["item"], return_inverse=True)
        g_u, g_inv = np.unique(kept["genre"], return_inverse=True)
        width = max(g_u.shape[0], 1)
        for p in np.unique(it_inv.reshape(-1).astype(np.int64) * width + g_inv.reshape(-1)).tolist():
            item_genre_sets.setdefault(bytes(it_u[p // width]), set()).add(bytes(g_u[p % width]))

    r = scan(stream, tuple(sorted(set(cols.values()))), parse,
             {"user": "S1", "item": "S1", "label": bool, "time": np.int64}, genres_of if "genre" in cols else None)
    users_numeric, items_numeric = _all_uint(r["user"]), _all_uint(r["item"])
    user_vocab, user = densify(_id_keys(r["user"], users_numeric))
    item_vocab, item = densify(_id_keys(r["item"], items_numeric))
    keep = dedupe(path, drops, r["line"], (user, item, r["time"]), "user, item and time")
    num_items = int(item_vocab.shape[0])
    item_genres, num_genres = np.zeros((num_items + 1, 1), np.int32), 0
    if "genre" in cols:
        raw_ids = list(item_genre_sets)
        pos, _ = lookup(item_vocab, _id_keys(np.array(raw_ids, dtype=bytes), items_numeric))
        names: dict[int, list[str]] = {}
        for k, raw in enumerate(raw_ids):  # every kept row's item is in the vocabulary
            gs = names.setdefault(int(pos[k]) + 1, [])
            for field in item_genre_sets[raw]:
                gs.extend(g for g in genre_names(path, 0, field.decode("utf-8", "replace"), check=False) if g not in gs)
        item_genres, num_genres = genre_table(names, num_items)
    user_ids = user_vocab if users_numeric else string_ids(user_vocab)
    return finish(path, drops, str(path), (user[keep], item[keep] + 1, r["label"][keep], r["time"][keep]),
                  (item_genres, user_ids, num_genres), "rows")


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``path``, ``csv.*``, shared options),
    its dropped rows recorded."""
    c = d.csv
    keys = ("user", "item", c.target, "time", "genre")
    columns = {k: (int(v) if not c.has_header else v) for k, v in zip(keys, c.columns)}
    return recorded(*read_interactions_csv(d.path, columns, d.like_threshold, CsvFormat(c.has_header, c.delimiter),
                                           skip_bad_rows=d.skip_bad_rows))
