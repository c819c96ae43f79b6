"""Readers that turn public recommendation datasets into :class:`~coda_jax.data.schema.Interactions`.

Currently supported:

* :func:`read_movielens100k` -- the original MovieLens 100K files (``u.data``, ``u.item``, ``u.user``).

Every reader validates its input and raises :class:`DataError` for anything malformed; the message always
names the file and, where it applies, the 1-based line number and the field, e.g.::

    /data/ml-100k/u.data line 17: expected 4 tab-separated fields (user, item, rating, timestamp), got 3

Parsing is vectorized with numpy (one split per line, then whole-column conversions); the per-line Python
fallback only runs to locate the first bad value once a column has been found invalid.
"""

from __future__ import annotations

import os
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


def _read_text(path: Path, encoding: str) -> str:
    """The file's text with CRLF turned into LF and trailing blank lines dropped (no final newline).

    Line ``i`` (0-based) of ``text.split("\\n")`` is line ``i + 1`` of the file. Lines are split on ``\\n``
    only (never ``str.splitlines``, which would also break on e.g. U+0085, a valid Latin-1 character).
    """
    try:
        data = path.read_bytes()
    except OSError as e:  # pragma: no cover - permissions etc.
        raise DataError(f"{path}: cannot read file: {e}") from e
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


def _parse_float(path: Path, col: np.ndarray, field: str) -> np.ndarray:
    """Parse a str column [N] of numbers into float64 [N]; raise on the first non-numeric entry."""
    vals, ok = _digits_to_int(col)  # fast path: plain integers (MovieLens ratings)
    if ok.all():
        return vals.astype(np.float64)
    try:
        return col.astype(np.float64)
    except ValueError:
        pass
    out = np.empty(col.shape[0], np.float64)
    for i, s in enumerate(col):
        try:
            out[i] = float(s)
        except ValueError:
            raise DataError(f"{path} line {i + 1}: field {field!r} must be a number, got {str(s)!r}") from None
    return out


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


def _densify(path: Path, ids: np.ndarray, vocab_sorted: np.ndarray, field: str, vocab_file: Path) -> np.ndarray:
    """Rank of every id [N] in the sorted vocabulary [V] (int64 [N], 0-based); raise on an unknown id."""
    pos = np.searchsorted(vocab_sorted, ids)
    found = pos < vocab_sorted.shape[0]
    found[found] = vocab_sorted[pos[found]] == ids[found]
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise DataError(f"{path} line {i + 1}: {field} {int(ids[i])} is not listed in {vocab_file}")
    return pos


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


def read_movielens100k(data_dir: str | os.PathLike, like_threshold: float = 4.0) -> Interactions:
    """Read the original MovieLens 100K files from ``data_dir``.

    Files (as distributed by GroupLens in ``ml-100k.zip``):

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

    Returns:
      :class:`Interactions` with ``user`` int32 [N], ``item`` int32 [N] (``1..I``), ``label`` float32 [N],
      ``time`` int64 [N] (unix seconds), ``item_genres`` int32 [I + 1, Gmax], ``user_ids`` int64 [U] (the
      dataset's user ids, ascending), ``num_genres = 19`` and ``name = str(data_dir)``.

    Raises:
      DataError: missing directory / file, wrong field count, non-numeric id / rating / timestamp, rating
        outside 1..5, genre flag not 0/1, duplicate ids in ``u.item`` / ``u.user``, a rating whose user or item
        is not listed in ``u.user`` / ``u.item``, or an empty ``u.data``. The message names the file, and the
        line and field where they apply.
    """
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

    data_path = root / "u.data"
    text = _read_text(data_path, "latin-1")
    if not text:
        raise DataError(f"{data_path}: no ratings")
    fields = _split_fields(
        data_path, text, "\t", 4, "4 tab-separated fields (user, item, rating, timestamp)"
    )
    raw_user = _parse_uint(data_path, fields[:, 0], "user")
    raw_item = _parse_uint(data_path, fields[:, 1], "item")
    rating = _parse_float(data_path, fields[:, 2], "rating")
    time = _parse_uint(data_path, fields[:, 3], "timestamp")

    bad = ~(np.isfinite(rating) & (rating >= 1.0) & (rating <= 5.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{data_path} line {i + 1}: field 'rating' must be in 1..5, got {str(fields[i, 2])!r}")

    user = _densify(data_path, raw_user, user_ids, "user", root / "u.user")
    item = _densify(data_path, raw_item, movie_ids, "item", root / "u.item") + 1

    return Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        label=(rating >= like_threshold).astype(np.float32),
        time=time.astype(np.int64),
        item_genres=item_genres,
        user_ids=user_ids.astype(np.int64),
        num_genres=ML100K_NUM_GENRES,
        name=str(data_dir),
    )
