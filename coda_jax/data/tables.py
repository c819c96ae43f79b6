"""The data-ingest core: from parsed columns to the finished log -- duplicates, dense ids, genre tables.

Ids are densified in sorted order (users ``0..U-1``, items ``1..I``, 0 being the padding item); genre ids
are ``1..G``. A repeat of an earlier row's key is a ``duplicate`` (raised, or dropped and counted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import DataError, DropReport, Drops
from coda_jax.data.parse import int_col, show
from coda_jax.data.schema import Interactions

__all__ = ["NO_GENRES", "stable_order", "duplicates", "dedupe", "metadata_ids", "densify", "lookup", "pack_genres",
           "genre_names", "genre_table", "string_ids", "finish", "recorded", "check_dir"]

NO_GENRES = "(no genres listed)"
_DUP_HINT = " (set skip_bad_rows / data.skip_bad_rows: true to drop and count repeated rows)"


def _combine(keys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Pack integer key columns into as few int64 columns as their value ranges allow (same equalities)."""
    if keys[0].shape[0] == 0:
        return [np.zeros(0, np.int64)]
    out: list[np.ndarray] = []
    cur, cur_span = None, 1
    for k in keys:
        k = k.astype(np.int64)
        lo = int(k.min())
        span = int(k.max()) - lo + 1
        k = k - lo
        if cur is not None and cur_span * span < 2**62:
            cur, cur_span = cur * span + k, cur_span * span
        else:
            if cur is not None:
                out.append(cur)
            cur, cur_span = k, span
    out.append(cur)
    return out


def stable_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Returns the row order (int64 [N]) sorting by ``keys`` (first key most significant); ties keep the row
    order."""
    packed = _combine(keys)
    if len(packed) == 1:
        return np.argsort(packed[0], kind="stable")
    return np.lexsort(tuple(packed[::-1]))


def duplicates(keys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows repeating an earlier row's key (all ``keys``, integer columns [N], equal).

    Returns ``(dup bool [N], first int64 [N])``: ``first[i]`` is the row index of the earliest row with row
    ``i``'s key (only meaningful where ``dup``).
    """
    n = keys[0].shape[0]
    dup = np.zeros(n, bool)
    first = np.arange(n)
    if n < 2:
        return dup, first
    packed = _combine(keys)
    cand = None
    if len(packed) > 1:  # only rows sharing the first packed key can be duplicates: sort just those
        o = np.argsort(packed[0])
        s = packed[0][o]
        same = s[1:] == s[:-1]
        m = np.zeros(n, bool)
        m[o[1:][same]] = True
        m[o[:-1][same]] = True
        cand = np.flatnonzero(m)
        packed = [k[cand] for k in packed]
    if packed[0].shape[0] < 2:
        return dup, first
    order = stable_order(packed)  # equal keys keep row order
    same = np.ones(order.shape[0] - 1, bool)
    for k in packed:
        s = k[order]
        same &= s[1:] == s[:-1]
    dup_sorted = np.concatenate([[False], same])
    run_start = np.maximum.accumulate(np.where(dup_sorted, 0, np.arange(order.shape[0])))
    rows = order if cand is None else cand[order]
    dup[rows] = dup_sorted
    first[rows] = rows[run_start]
    return dup, first


def dedupe(path: Path, drops: Drops, line: np.ndarray, keys: Sequence[np.ndarray], what: str) -> np.ndarray:
    """Drop rows (on ``line`` int64 [N]) that repeat an earlier row's ``keys``: raise unless ``drops.skip``.
    Returns the keep mask, bool [N]."""
    dup, first = duplicates(keys)
    return drops.many(path, line, dup, "duplicate",
                      lambda i: f"duplicate of line {int(line[first[i]])} (same {what})", _DUP_HINT)


def metadata_ids(path: Path, col: np.ndarray, lines: np.ndarray, field: str) -> np.ndarray:
    """Parse the id column of a metadata file (bytes [N], rows on ``lines`` int64 [N]); raise naming the first
    id that is not a non-negative integer, or that repeats an earlier one (naming both lines). Returns int64 [N]."""
    ids, ok = int_col(col)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path} line {int(lines[i])}: field {field!r} must be a non-negative integer, "
                        f"got {show(col[i])}")
    dup, first = duplicates([ids])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path} line {int(lines[i])}: duplicate {field} {int(ids[i])} "
                        f"(first seen on line {int(lines[first[i]])})")
    return ids


def densify(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(vocab sorted [V], index int64 [N])`` with ``vocab[index] == raw``."""
    vocab, inv = np.unique(raw, return_inverse=True)
    return vocab, inv.reshape(-1).astype(np.int64)


def lookup(vocab_sorted: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(position int64 [N], found bool [N])`` of ``ids`` in a sorted vocabulary."""
    pos = np.searchsorted(vocab_sorted, ids)
    found = pos < vocab_sorted.shape[0]
    found[found] = vocab_sorted[pos[found]] == ids[found]
    return pos, found


def pack_genres(num_items: int, item: np.ndarray, genre: np.ndarray, num_genres: int) -> np.ndarray:
    """Returns int32 [I + 1, Gmax], the left-packed ascending genre ids of every item from (item, genre) pairs
    ([P] each; duplicates ignored), 0-padded; ``Gmax = max(1, most genres of any item)``."""
    if item.size == 0:
        return np.zeros((num_items + 1, 1), np.int32)
    key = np.sort(item.astype(np.int64) * (num_genres + 1) + genre.astype(np.int64))
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # unique (sort-based: faster than np.unique here)
    it = key // (num_genres + 1)
    g = key % (num_genres + 1)
    counts = np.bincount(it, minlength=num_items + 1)
    gmax = max(1, int(counts.max()))
    starts = np.cumsum(counts) - counts
    out = np.zeros((num_items + 1, gmax), np.int32)
    out[it, np.arange(key.shape[0]) - starts[it]] = g
    return out


def genre_names(path: Path, line: int, field: str, check: bool = True) -> list[str]:
    """Returns the names of a ``|``-separated genre field (``(no genres listed)`` or empty: none). With
    ``check`` an empty name between separators raises naming ``path`` and ``line``; otherwise it is skipped."""
    g = field.strip()
    names = [] if g in ("", NO_GENRES) else [x.strip() for x in g.split("|")]
    if check and any(not x for x in names):
        raise DataError(f"{path} line {line}: field 'genres' has an empty genre name: {field!r}")
    return [x for x in names if x and x != NO_GENRES]


def genre_table(item_names: Mapping[int, Sequence[str]], num_items: int) -> tuple[np.ndarray, int]:
    """Returns ``(item_genres int32 [I + 1, Gmax], num_genres)`` from the genre names of each dense item (genre
    ids are the sorted names' ranks + 1)."""
    names = sorted({g for gs in item_names.values() for g in gs})
    gid = {g: k + 1 for k, g in enumerate(names)}
    pairs = [(it, gid[g]) for it, gs in item_names.items() for g in gs]
    it = np.array([p[0] for p in pairs], np.int64)
    gg = np.array([p[1] for p in pairs], np.int64)
    return pack_genres(num_items, it, gg, len(names)), len(names)


def string_ids(vocab: np.ndarray) -> np.ndarray:
    """Returns a sorted bytes vocabulary [V] as a str array [V] (UTF-8)."""
    try:
        return vocab.astype(str)
    except UnicodeDecodeError:
        return np.char.decode(vocab, "utf-8", "replace").astype(str)


def finish(path: Path, drops: Drops, name: str, rows: tuple, meta: tuple,
           what: str = "ratings") -> tuple[Interactions, DropReport]:
    """Returns ``(Interactions, DropReport)`` of the kept rows, ``rows = (user, item, label, time)`` [N] each,
    with ``meta = (item_genres, user_ids, num_genres)``; raises when no row is left (``"<path>: no <what>"``)."""
    (user, item, label, time), (item_genres, user_ids, num_genres) = rows, meta
    if user.shape[0] == 0:
        extra = f" after dropping bad rows ({drops.report.summary()})" if drops.report.total else ""
        raise DataError(f"{path}: no {what}{extra}")
    inter = Interactions(user=user.astype(np.int32), item=item.astype(np.int32), label=label.astype(np.float32),
                         time=time.astype(np.int64), item_genres=item_genres.astype(np.int32), user_ids=user_ids,
                         num_genres=int(num_genres), name=name)
    return inter, drops.report


def recorded(inter: Interactions, report: DropReport) -> Interactions:
    """Returns the log with the report's counts recorded in its ``dropped_rows`` (reason -> count)."""
    return dataclasses.replace(inter, dropped_rows=report.to_dict())


def check_dir(root: Path, files: Sequence[str], what: str) -> None:
    """Raise unless ``root`` is a directory holding every one of ``files`` (``what``: the dataset's name)."""
    expected = ", ".join(files)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"{what} data directory {root} {state}; expected a directory containing {expected}")
    for fname in files:
        if not (root / fname).is_file():
            raise DataError(f"{root / fname}: file not found; a {what} directory must contain {expected}")
