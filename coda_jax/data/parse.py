"""The data-ingest core: the one integer / number parser and splitting blocks of lines into byte columns.

Everything here is vectorized numpy on bytes: a block of whole lines is split into fields from the delimiter
positions, and integers are parsed by digit accumulation; per-entry Python only runs for the rare entries the
fast path rejects (to tolerate whitespace / signs / exponents, or to name the bad value). Lines holding ``"``
quotes go through the ``csv`` module instead (:func:`split_csv`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import DataError, Issues

__all__ = ["show", "int_col", "float_col", "split_fast", "split_csv", "csv_row", "id_checks", "rating_checks",
           "str_checks"]

_PAD = 64  # zero bytes appended to a block so short field gathers need no bounds clamp
_UINT_RE = re.compile(rb"\s*(\d{1,18})\s*")
_INT_RE = re.compile(rb"\s*([+-]?\d{1,18})\s*")


def show(value: bytes | str) -> str:
    """Returns ``repr`` of a value as text (bytes decoded as UTF-8, bad bytes replaced), for messages."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return repr(value)


def chars(col: np.ndarray) -> np.ndarray:
    """Returns a bytes (``S``) column [N] as its uint8 characters [N, W] (0-padded on the right)."""
    n = col.shape[0]
    if col.dtype.itemsize == 0:
        return np.zeros((n, 1), np.uint8)
    return np.ascontiguousarray(col).view(np.uint8).reshape(n, col.dtype.itemsize)


def _digits(ch: np.ndarray, allow_dot: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast parse of uint8 rows [N, W] holding ``\\d+`` (or ``\\d*.?\\d*`` with ``allow_dot``).

    Returns ``(mantissa int64 [N], decimals int64 [N], ok bool [N])``; ``ok`` is false for anything else
    (and for more than 18 characters), in which case the caller falls back to Python for that entry.
    """
    n, width = ch.shape
    present = ch != 0
    too_long = present[:, 18:].any(axis=1) if width > 18 else np.zeros(n, bool)
    ch = ch[:, :18]
    present = present[:, :18]
    is_digit = (ch >= 48) & (ch <= 57)
    ok = is_digit.any(axis=1) & ~too_long
    if ch.shape[1] > 1:
        ok &= (present[:, 1:] <= present[:, :-1]).all(axis=1)  # characters are a prefix, then padding
    decimals = np.zeros(n, np.int64)
    if allow_dot:
        is_dot = ch == 46
        ok &= ((is_digit | is_dot) == present).all(axis=1) & (is_dot.sum(axis=1) <= 1)
        has_dot = is_dot.any(axis=1)
        decimals = np.where(has_dot, present.sum(axis=1) - 1 - np.argmax(is_dot, axis=1), 0)
    else:
        ok &= (is_digit == present).all(axis=1)
    vals = np.zeros(n, np.int64)
    for k in range(ch.shape[1]):
        vals = np.where(is_digit[:, k], vals * 10 + (ch[:, k].astype(np.int64) - 48), vals)
    return vals, decimals, ok


def int_col(col: np.ndarray, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Parse a bytes column [N] of decimal integers (at most 18 digits, so they always fit int64; surrounding
    whitespace tolerated, a sign if ``signed``). Returns ``(values int64 [N], ok bool [N])``."""
    vals, _, ok = _digits(chars(col), allow_dot=False)
    if not ok.all():
        regex = _INT_RE if signed else _UINT_RE
        for i in np.flatnonzero(~ok):
            m = regex.fullmatch(col[i])
            if m:
                vals[i] = int(m.group(1))
                ok[i] = True
    return vals, ok


def float_col(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse a bytes column [N] of numbers (``4``, ``4.5``, ``4e0``, ...). Returns ``(values float64 [N],
    ok bool [N])``."""
    mant, dec, ok = _digits(chars(col), allow_dot=True)
    vals = mant / np.power(10.0, dec)
    if not ok.all():
        for i in np.flatnonzero(~ok):
            s = col[i]
            if b"_" in s:
                continue
            try:
                vals[i] = float(s)
                ok[i] = True
            except ValueError:
                pass
    return vals, ok


def _gather(a: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Returns the bytes column [n] of ``a[start[i]:end[i]]`` (vectorized)."""
    n = start.shape[0]
    length = end - start
    width = max(int(length.max()) if n else 0, 1)
    j = np.arange(width, dtype=start.dtype)
    idx = start[:, None] + j
    if width > _PAD:
        np.minimum(idx, a.shape[0] - 1, out=idx)
    ch = a[idx]
    ch[j >= length[:, None]] = 0
    return ch.view(f"S{width}").reshape(n)


def split_fast(chunk: bytes, delim: int, nfields: int, cols: Sequence[int]):
    """Split a chunk of ``n`` whole lines (each ending in ``\\n``) on the one-byte ``delim``.

    Returns ``(fields int64 [n] field count of each line, blank bool [n], {column: bytes [n]})``; the columns
    are empty for lines without ``nfields`` fields.
    """
    a = np.frombuffer(chunk + bytes(_PAD), np.uint8)  # padding: field gathers may read past the end
    nl = np.flatnonzero(a == 10)
    n = nl.shape[0]
    idx_t = np.int32 if a.shape[0] < 2**31 - 1 else np.int64
    nl = nl.astype(idx_t)
    ls = np.empty(n, idx_t)
    if n:
        ls[0] = 0
        ls[1:] = nl[:-1] + 1
    le = nl - ((nl > ls) & (a[nl - 1] == 13))  # drop the CR of CRLF
    dpos = np.flatnonzero(a[: len(chunk)] == delim).astype(idx_t)
    cnt = np.diff(np.searchsorted(dpos, nl), prepend=0)
    fields = cnt + 1
    good = fields == nfields
    blank = np.zeros(n, bool)
    for i in np.flatnonzero((cnt == 0) & ~good):
        if not chunk[ls[i]:le[i]].strip():
            blank[i] = True
    gl = np.flatnonzero(good)
    start = np.zeros((n, nfields), idx_t)
    end = np.zeros((n, nfields), idx_t)
    if gl.size:
        d = dpos if gl.size == n else dpos[good[np.searchsorted(nl, dpos)]]
        d = d.reshape(-1, nfields - 1)
        start[gl, 0] = ls[gl]
        start[gl, 1:] = d + 1
        end[gl, :-1] = d
        end[gl, -1] = le[gl]
    return fields, blank, {k: _gather(a, start[:, k], end[:, k]) for k in cols}


def csv_row(path: Path, line: int, text: str, delim: str) -> list[str]:
    """Returns the fields of one line through the ``csv`` module; a line it rejects (e.g. a lone carriage return
    inside an unquoted field, a field over the csv field size limit) raises naming the file and line."""
    try:
        return next(csv.reader([text], delimiter=delim), [])
    except csv.Error as e:
        raise DataError(f"{path} line {line}: malformed CSV line: {e}") from None


def split_csv(path: Path, chunk: bytes, first_line: int, delim: str, nfields: int, cols: Sequence[int]):
    """:func:`split_fast` for blocks with quotes: every line through the ``csv`` module (UTF-8; a line that is
    not raises naming it). Returns the same ``(fields [n], blank [n], {column: bytes [n]})``."""
    lines = chunk.split(b"\n")[:-1]
    n = len(lines)
    fields = np.zeros(n, np.int64)
    blank = np.zeros(n, bool)
    vals: dict[int, list[bytes]] = {k: [b""] * n for k in cols}
    for i, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            blank[i] = True
            fields[i] = 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} line {first_line + i}: cannot decode as utf-8: {e.reason}") from None
        row = csv_row(path, first_line + i, text, delim)
        fields[i] = len(row)
        if len(row) == nfields:
            for k in cols:
                vals[k][i] = row[k].encode("utf-8")
    return fields, blank, {k: np.array(v, dtype=bytes) if n else np.zeros(0, "S1") for k, v in vals.items()}


def id_checks(iss: Issues, col: np.ndarray, field: str, signed: bool = False) -> np.ndarray:
    """Parse an integer column (bytes [n]), adding its bad entries to ``iss``. Returns int64 [n]."""
    vals, ok = int_col(col, signed=signed)
    kind = "an integer" if signed else "a non-negative integer"
    iss.add(~ok, "bad_value", lambda i: f"field {field!r} must be {kind}, got {show(col[i])}")
    return vals


def rating_checks(iss: Issues, col: np.ndarray, lo: float | None, hi: float | None, field: str,
                  like_threshold: float) -> np.ndarray:
    """Parse a rating column (bytes [n]; in ``lo..hi``, or any finite number when ``lo`` is None), adding its
    bad entries to ``iss``. Returns the label, bool [n] (rating >= ``like_threshold``)."""
    rating, ok = float_col(col)
    if lo is None:
        in_range = np.isfinite(rating)
        rng = "a finite number"
    else:
        in_range = np.isfinite(rating) & (rating >= lo) & (rating <= hi)
        rng = f"a number in {lo:g}..{hi:g}"
    iss.add(~(ok & in_range), "bad_rating", lambda i: f"field {field!r} must be {rng}, got {show(col[i])}")
    return rating >= like_threshold


def str_checks(iss: Issues, col: np.ndarray, field: str) -> np.ndarray:
    """A string id column (bytes [n]) with surrounding whitespace removed; empty ids are added to ``iss``.
    Returns bytes [n]."""
    col = np.char.strip(col)
    empty = np.char.str_len(col) == 0
    iss.add(empty, "bad_value", lambda i: f"field {field!r} must be a non-empty id, got ''")
    return col
