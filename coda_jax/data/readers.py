"""Readers that turn public recommendation datasets into :class:`~coda_jax.data.schema.Interactions`.

Currently supported:

* :func:`read_movielens100k` -- the original MovieLens 100K files (``u.data``, ``u.item``, ``u.user``).

Every reader validates its input and raises :class:`DataError` for anything malformed; the message always
names the file and, where it applies, the 1-based line number and the field, e.g.::

    /data/ml-100k/u.data line 17: expected 4 tab-separated fields (user, item, rating, timestamp), got 3

Every reader (those of :mod:`coda_jax.data.formats` too) opens its files through :func:`_open_binary`, which
skips a UTF-8 byte-order mark at the start of a file. ``u.data`` follows the bad-row policy of
:mod:`coda_jax.data.formats` (duplicates raise; ``skip_bad_rows`` drops and counts); ``u.item`` / ``u.user``
are parsed whole, vectorized with numpy (one split per line, then whole-column conversions); the per-line
Python fallback only runs to locate the first bad value once a column has been found invalid.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from coda_jax.data.schema import Interactions

__all__ = ["DataError", "read_movielens100k", "ML100K_NUM_GENRES"]

ML100K_NUM_GENRES = 19
"""Number of genre flag columns in MovieLens 100K ``u.item`` (genre ids ``1..19``)."""

_ML100K_FILES = ("u.data", "u.item", "u.user")
_ML100K_ITEM_FIELDS = 5 + ML100K_NUM_GENRES  # id | title | release | video release | url | 19 flags
_ML100K_USER_FIELDS = 5  # id | age | gender | occupation | zip


class DataError(ValueError):
    """Malformed or missing dataset input. The message names the file (and line / field where it applies)."""


# ----------------------------------------------------------------------------------------------------------
# Generic helpers
# ----------------------------------------------------------------------------------------------------------


_BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark; :func:`_open_binary` skips it at the start of any file."""

_READ_ERRORS = (OSError, EOFError, zlib.error)
"""What reading a file (``.gz`` included: truncated / corrupt streams) can raise."""


def _open_binary(path: Path):
    """Open a data file for reading bytes, positioned after a UTF-8 byte-order mark if the file starts with one.

    Every reader opens its files here (whole-file reads through :func:`_read_text`, streamed ones directly), so
    a BOM never reaches a parser. ``.gz`` files are decompressed on the fly.
    """
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file")
    try:
        f = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as e:  # pragma: no cover - permissions etc.
        raise DataError(f"{path}: cannot read file: {e}") from e
    try:
        if f.read(len(_BOM)) != _BOM:
            f.seek(0)
    except _READ_ERRORS as e:  # e.g. not gzip data, a corrupt first deflate block
        f.close()
        raise DataError(f"{path} line 1: cannot read file: {e}") from e
    return f


def _read_text(path: Path, encoding: str) -> str:
    """The file's text (a leading UTF-8 BOM removed) with CRLF turned into LF and trailing blank lines dropped
    (no final newline).

    Line ``i`` (0-based) of ``text.split("\\n")`` is line ``i + 1`` of the file. Lines are split on ``\\n``
    only (never ``str.splitlines``, which would also break on e.g. U+0085, a valid Latin-1 character).
    """
    f = _open_binary(path)
    try:
        data = f.read()
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read file: {e}") from e
    finally:
        f.close()
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    while True:  # drop trailing whitespace-only lines
        data = data.rstrip(b"\n")
        k = data.rfind(b"\n")
        if not data or data[k + 1 :].strip():
            break
        data = data[: max(k, 0)]
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: cannot decode as {encoding}: {e.reason}") from e


def _split_fields(path: Path, text: str, sep: str, expected: int, describe: str) -> np.ndarray:
    """Split ``text`` into lines and every line on ``sep``; returns a str array [N, expected].

    The per-line field count is checked vectorized (separator counts between newlines); raises on the first
    line with a wrong count.
    """
    if not text:
        return np.empty((0, expected), dtype=str)
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ends = np.append(np.flatnonzero(chars == ord("\n")), chars.shape[0])  # [N] index of each line's end
    seps_before = np.concatenate([[0], np.cumsum(chars == ord(sep))])  # separators in chars[:k]
    counts = np.diff(seps_before[ends], prepend=0) + 1  # [N] fields per line
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = int(bad[0])
        blank = " (blank line)" if not text.split("\n")[i].strip() else ""
        raise DataError(f"{path} line {i + 1}: expected {describe}, got {int(counts[i])}{blank}")
    flat = text.replace(sep, "\n").split("\n")
    return np.array(flat, dtype=str).reshape(ends.shape[0], expected)


def _digits_to_int(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized decimal parse of a str column [N] (numpy ``astype`` from str is per-element and slow).

    Returns ``(values int64 [N], ok bool [N])``; ``ok`` is false unless the entry is 1..18 ASCII digits.
    """
    n = col.shape[0]
    width = col.dtype.itemsize // 4
    if n == 0:
        return np.zeros(0, np.int64), np.ones(0, bool)
    if width == 0:  # all entries empty
        return np.zeros(n, np.int64), np.zeros(n, bool)
    codes = np.ascontiguousarray(col).view(np.uint32).reshape(n, width)
    used = np.flatnonzero((codes != 0).any(axis=0))
    width = int(used[-1]) + 1 if used.size else 1  # the dtype may be wider than the longest entry
    too_long = (codes[:, 18:width] != 0).any(axis=1)  # > 18 digits might overflow int64
    width = min(width, 18)
    codes = codes[:, :width]
    is_digit = (codes >= 48) & (codes <= 57)
    present = codes != 0
    ok = is_digit[:, 0] & (is_digit == present).all(axis=1) & ~too_long
    if width > 1:
        ok &= (present[:, 1:] <= present[:, :-1]).all(axis=1)  # digits are a prefix, then padding
    vals = np.zeros(n, np.int64)
    for k in range(width):
        d = codes[:, k].astype(np.int64) - 48
        vals = np.where(present[:, k], vals * 10 + d, vals)
    return vals, ok


def _parse_uint(path: Path, col: np.ndarray, field: str) -> np.ndarray:
    """Parse a str column [N] of non-negative decimal integers into int64 [N]; raise on the first bad entry.

    Surrounding whitespace is tolerated.
    """
    vals, ok = _digits_to_int(col)
    if ok.all():
        return vals
    col = np.char.strip(col)
    vals, ok = _digits_to_int(col)
    if ok.all():
        return vals
    i = int(np.flatnonzero(~ok)[0])
    raise DataError(f"{path} line {i + 1}: field {field!r} must be a non-negative integer, got {str(col[i])!r}")


def _check_unique(path: Path, ids: np.ndarray, field: str) -> None:
    """Raise on the first line whose id repeats an earlier line's id."""
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.flatnonzero(s[1:] == s[:-1])
    if dup.size:
        later = order[dup + 1]  # stable sort: the later occurrence of each equal pair
        i = int(later.min())
        first = int(np.flatnonzero(ids == ids[i])[0])
        raise DataError(
            f"{path} line {i + 1}: duplicate {field} {int(ids[i])} (first seen on line {first + 1})"
        )


# ----------------------------------------------------------------------------------------------------------
# MovieLens 100K
# ----------------------------------------------------------------------------------------------------------


def _ml100k_items(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``u.item`` (Latin-1).

    Returns:
      movie_ids: int64 [I] sorted ascending (dense item id of ``movie_ids[k]`` is ``k + 1``).
      item_genres: int32 [I + 1, Gmax] left-packed genre ids (flag column ``j`` -> genre ``j + 1``) of every
        dense item id, 0-padded; row 0 is the padding item. ``Gmax = max(1, most genres of any item)``.
    """
    text = _read_text(path, "latin-1")
    if not text:
        raise DataError(f"{path}: no movies")
    fields = _split_fields(
        path,
        text,
        "|",
        _ML100K_ITEM_FIELDS,
        f"{_ML100K_ITEM_FIELDS} '|'-separated fields (movie id | title | release date | video release date | "
        f"IMDb URL | {ML100K_NUM_GENRES} genre flags)",
    )
    ids = _parse_uint(path, fields[:, 0], "movie id")
    _check_unique(path, ids, "movie id")

    flags = fields[:, 5:]  # [I, 19]
    if not ((flags == "0") | (flags == "1")).all():
        flags = np.char.strip(flags)  # tolerate surrounding whitespace
    is_one = flags == "1"
    ok = is_one | (flags == "0")
    if not ok.all():
        i, j = (int(v) for v in np.argwhere(~ok)[0])
        raise DataError(
            f"{path} line {i + 1}: field 'genre flag {j + 1}' (column {j + 6}) must be 0 or 1, "
            f"got {str(fields[i, 5 + j])!r}"
        )

    order = np.argsort(ids, kind="stable")
    movie_ids = ids[order]
    is_one = is_one[order]  # [I, 19] in dense order
    counts = is_one.sum(axis=1)
    gmax = max(1, int(counts.max()))
    # Left-pack: stable sort puts the set flags first, in ascending column order.
    cols = np.argsort(~is_one, axis=1, kind="stable")[:, :gmax]  # [I, gmax]
    slot = np.arange(gmax)[None, :]
    genres = np.where(slot < counts[:, None], cols + 1, 0).astype(np.int32)
    item_genres = np.zeros((movie_ids.shape[0] + 1, gmax), dtype=np.int32)
    item_genres[1:] = genres
    return movie_ids, item_genres


def _ml100k_users(path: Path) -> np.ndarray:
    """Parse ``u.user``; returns the user ids int64 [U] sorted ascending (dense index = position)."""
    text = _read_text(path, "latin-1")
    if not text:
        raise DataError(f"{path}: no users")
    fields = _split_fields(
        path,
        text,
        "|",
        _ML100K_USER_FIELDS,
        f"{_ML100K_USER_FIELDS} '|'-separated fields (user id | age | gender | occupation | zip code)",
    )
    ids = _parse_uint(path, fields[:, 0], "user id")
    _check_unique(path, ids, "user id")
    return np.sort(ids)


def read_movielens100k(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                       block_bytes: int | None = None) -> Interactions:
    """Read the original MovieLens 100K files from ``data_dir``.

    Files (as distributed by GroupLens in ``ml-100k.zip``):

    * ``u.data`` -- tab-separated ``user id, item id, rating (1..5), unix timestamp``, one rating per line;
    * ``u.item`` -- ``|``-separated, Latin-1: ``movie id | title | release date | video release date |
      IMDb URL | 19 genre flags (0/1)``;
    * ``u.user`` -- ``|``-separated: ``user id | age | gender | occupation | zip code``.

    Ids are densified: users over ``u.user``'s ids (dense index = rank of the id, 0-based), items over
    ``u.item``'s ids (dense id = rank + 1, 0 is padding). Genre flag column ``j`` (0-based) is genre ``j + 1``,
    so ``num_genres == 19``. Rows keep ``u.data``'s order. A UTF-8 byte-order mark at the start of a file is
    ignored.

    Args:
      data_dir: directory containing ``u.data``, ``u.item`` and ``u.user``.
      like_threshold: a rating ``>= like_threshold`` gets label 1.0, anything below 0.0.
      skip_bad_rows: drop and count bad ``u.data`` rows (the reasons of
        :data:`coda_jax.data.formats.DROP_REASONS`) instead of raising; the counts are the returned log's
        ``dropped_rows``. ``u.item`` / ``u.user`` must be well-formed either way.
      block_bytes: read ``u.data`` in blocks of this many bytes (default 8 MiB; small values are for tests).

    Returns:
      :class:`Interactions` with ``user`` int32 [N], ``item`` int32 [N] (``1..I``), ``label`` float32 [N],
      ``time`` int64 [N] (unix seconds), ``item_genres`` int32 [I + 1, Gmax], ``user_ids`` int64 [U] (the
      dataset's user ids, ascending), ``num_genres = 19``, ``name = str(data_dir)`` and ``dropped_rows``
      (reason -> count; empty unless ``skip_bad_rows`` dropped something).

    Raises:
      DataError: missing directory / file, wrong field count, non-numeric id / rating / timestamp, rating
        outside 1..5, genre flag not 0/1, duplicate ids in ``u.item`` / ``u.user``, a ``u.data`` row repeating
        an earlier row's user, item and timestamp, a rating whose user or item is not listed in ``u.user`` /
        ``u.item``, or an empty ``u.data``. The message names the file, and the line and field where they
        apply. (With ``skip_bad_rows`` the ``u.data`` row problems are dropped and counted instead.)
    """
    from coda_jax.data import formats  # noqa: PLC0415 - formats imports this module

    root = Path(data_dir)
    expected = ", ".join(_ML100K_FILES)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"MovieLens 100K data directory {root} {what}; expected a directory containing {expected}")
    for fname in _ML100K_FILES:
        if not (root / fname).is_file():
            raise DataError(
                f"{root / fname}: file not found; a MovieLens 100K directory must contain {expected}"
            )

    movie_ids, item_genres = _ml100k_items(root / "u.item")
    user_ids = _ml100k_users(root / "u.user")
    inter, report = formats._movielens_ratings(
        root / "u.data", b"\t", "tab-separated", user_ids, root / "u.user", movie_ids, root / "u.item",
        item_genres, ML100K_NUM_GENRES, str(data_dir), like_threshold, skip_bad_rows,
        formats._BLOCK_BYTES if block_bytes is None else block_bytes, signed_time=False)
    return dataclasses.replace(inter, dropped_rows=report.to_dict())
