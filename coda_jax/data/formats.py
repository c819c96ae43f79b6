"""Readers for more public recommendation datasets, each returning ``(Interactions, DropReport)``.

Supported:

* :func:`read_movielens1m` -- MovieLens 1M (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::``-separated).
* :func:`read_movielens_csv` -- MovieLens 20M / 25M / 32M / latest (``ratings.csv``, ``movies.csv``), streamed.
* :func:`read_amazon` -- Amazon reviews: 5-core JSON lines or ratings-only CSV, optional metadata for genres.
* :func:`read_taobao` -- Taobao ``UserBehavior.csv`` (pv / cart / fav / buy events).
* :func:`read_interactions_csv` -- any delimited file given a column mapping.

Bad input policy (the same for every reader): a malformed line (wrong field count, non-numeric id or
timestamp, rating out of range, unknown behavior, blank line between data lines) or a duplicate row raises
:class:`~coda_jax.data.readers.DataError` naming the file, the 1-based line and the field -- unless
``skip_bad_rows=True``, in which case the row is dropped and counted in the :class:`DropReport` (by reason,
with the first such line). Nothing is ever dropped silently. One exception to raising: MovieLens CSV ratings
of movies missing from ``movies.csv`` are always dropped and counted (``unknown_item``). Trailing blank lines,
CRLF line ends and a UTF-8 byte-order mark at the start of a file are fine. A corrupt ``.gz`` stream, and in
quoted CSV a line that is not UTF-8 or that the ``csv`` module cannot split, always raise (naming the file and
line). ``.gz`` files are decompressed on the fly. :func:`coda_jax.data.dataset.load_interactions` records a
reader's report, and the dataset info carries its counts under ``dropped_rows``.

Large files are streamed: the file is read in blocks of whole lines (``block_bytes``, 8 MiB by default) and
every block is split and converted with vectorized numpy on its bytes (field boundaries from delimiter
positions, integers by digit accumulation); per-line Python only runs for the rare entries the fast path
rejects (to tolerate whitespace / signs / exponents, or to name the bad value). Only the parsed columns of
kept rows are held in memory. (Amazon JSON lines and metadata are parsed line by line with ``json``; small
metadata files -- ``movies.*``, ``users.dat`` -- are read whole.)
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coda_jax.config import TAOBAO_BEHAVIORS
from coda_jax.data.readers import _READ_ERRORS, DataError, _open_binary, _read_text
from coda_jax.data.schema import Interactions

__all__ = [
    "DropReport",
    "DROP_REASONS",
    "TAOBAO_LABEL_RULE",
    "read_movielens1m",
    "read_movielens_csv",
    "read_amazon",
    "read_taobao",
    "read_interactions_csv",
]

DROP_REASONS = (
    "blank_line",        # a blank line between data lines
    "bad_fields",        # wrong number of fields / not a JSON object / a required JSON key missing
    "bad_value",         # an id or timestamp that is not a valid integer (or an empty string id)
    "bad_rating",        # a rating that is not a number or out of the dataset's range
    "bad_label",         # a label column value other than 0 / 1
    "unknown_behavior",  # taobao: a behavior that the label rule does not name
    "unknown_user",      # a user missing from the dataset's user file
    "unknown_item",      # an item missing from the dataset's item file
    "duplicate",         # a repeat of an earlier row (same user, item, timestamp)
    "bad_meta",          # amazon: a metadata line that could not be parsed (the item gets no genres)
)
"""Reasons a :class:`DropReport` counts rows under."""

TAOBAO_LABEL_RULE = {b: int(b != "pv") for b in TAOBAO_BEHAVIORS}  # pv 0; buy, cart, fav 1
"""Default Taobao label of each behavior: page views are negatives, buy / cart / fav positives."""

_BLOCK_BYTES = 8 << 20
_PAD = 64  # zero bytes appended to a block so short field gathers need no bounds clamp
_NO_GENRES = "(no genres listed)"


# ----------------------------------------------------------------------------------------------------------
# Drop report
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DropReport:
    """Rows a reader dropped, by reason (see :data:`DROP_REASONS`).

    Attributes:
      counts: reason -> number of rows dropped for it (only reasons that occurred).
      first: reason -> ``"<file> line <n>"`` of the first row dropped for it.
    """

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    first: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, reason: str, n: int = 1, where: str | None = None) -> None:
        if n <= 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + int(n)
        if where is not None and reason not in self.first:
            self.first[reason] = where

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    def __getitem__(self, reason: str) -> int:
        return self.counts.get(reason, 0)

    def to_dict(self) -> dict[str, int]:
        """The counts as a plain dict (what goes into a dataset's info under ``dropped_rows``)."""
        return dict(self.counts)

    def summary(self) -> str:
        if not self.counts:
            return "no rows dropped"
        return ", ".join(f"{k}: {v} (first: {self.first.get(k, '?')})" for k, v in self.counts.items())


class _Drops:
    """The bad-row policy: raise on the first bad row, or drop and count it (``skip``)."""

    def __init__(self, skip: bool):
        self.skip = bool(skip)
        self.report = DropReport()

    def one(self, path: Path, line: int, reason: str, msg: str, hint: str = "") -> None:
        """A single bad row at ``line``: raise, or count it."""
        if not self.skip:
            raise DataError(f"{path} line {line}: {msg}{hint}")
        self.report.add(reason, 1, f"{path} line {line}")

    def many(self, path: Path, lines: np.ndarray, mask: np.ndarray, reason: str, msg: Callable[[int], str],
             hint: str = "") -> np.ndarray:
        """Rows ``mask`` are bad: raise naming the first, or count them. Returns the keep mask (``~mask``)."""
        if mask.any():
            idx = np.flatnonzero(mask)
            i = int(idx[np.argmin(lines[idx])])
            self.one(path, int(lines[i]), reason, msg(i), hint)
            self.report.add(reason, int(mask.sum()) - 1)
        return ~mask


class _Issues:
    """Bad rows of one block, by check; resolved together so the error names the earliest bad line."""

    def __init__(self, path: Path, lines: np.ndarray):
        self.path = path
        self.lines = lines
        self.items: list[tuple[np.ndarray, str, Callable[[int], str]]] = []

    def add(self, mask: np.ndarray, reason: str, msg: Callable[[int], str]) -> None:
        if mask.any():
            self.items.append((mask, reason, msg))

    def resolve(self, drops: _Drops) -> np.ndarray | None:
        """Raise on the earliest bad line (``drops.skip`` false), else count every bad row once (under its
        first failing check) and return the keep mask; ``None`` when every row is good."""
        if not self.items:
            return None
        if not drops.skip:
            best = None
            for order, (mask, reason, msg) in enumerate(self.items):
                idx = np.flatnonzero(mask)
                i = int(idx[np.argmin(self.lines[idx])])
                key = (int(self.lines[i]), order)
                if best is None or key < best[0]:
                    best = (key, i, msg)
            (line, _), i, msg = best
            raise DataError(f"{self.path} line {line}: {msg(i)}")
        taken = np.zeros(self.lines.shape[0], bool)
        for mask, reason, _ in self.items:
            new = mask & ~taken
            if new.any():
                drops.report.add(reason, int(new.sum()), f"{self.path} line {int(self.lines[np.flatnonzero(new)[0]])}")
            taken |= mask
        return ~taken


# ----------------------------------------------------------------------------------------------------------
# Vectorized byte-level parsing
# ----------------------------------------------------------------------------------------------------------


def _show(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return repr(value)


def _chars(col: np.ndarray) -> np.ndarray:
    """A bytes (``S``) column [N] as its uint8 characters [N, W] (0-padded on the right)."""
    n = col.shape[0]
    width = max(col.dtype.itemsize, 1)
    if col.dtype.itemsize == 0:
        return np.zeros((n, 1), np.uint8)
    return np.ascontiguousarray(col).view(np.uint8).reshape(n, width)


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


_UINT_RE = re.compile(rb"\s*(\d{1,18})\s*")
_INT_RE = re.compile(rb"\s*([+-]?\d{1,18})\s*")


def _int_col(col: np.ndarray, signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Parse a bytes column [N] of decimal integers (surrounding whitespace tolerated, a sign if ``signed``).

    Returns ``(values int64 [N], ok bool [N])``.
    """
    vals, _, ok = _digits(_chars(col), allow_dot=False)
    if not ok.all():
        regex = _INT_RE if signed else _UINT_RE
        for i in np.flatnonzero(~ok):
            m = regex.fullmatch(col[i])
            if m:
                vals[i] = int(m.group(1))
                ok[i] = True
    return vals, ok


def _float_col(col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse a bytes column [N] of numbers; returns ``(values float64 [N], ok bool [N])``."""
    mant, dec, ok = _digits(_chars(col), allow_dot=True)
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


@dataclasses.dataclass
class _Block:
    """The data lines of one block (blank lines between data lines included, trailing ones not).

    ``line`` int64 [n] 1-based line numbers; ``fields`` int64 [n] field count of each line; ``blank`` /
    ``wrong`` bool [n] blank line / wrong field count; ``cols`` column index -> bytes column [n] (empty for
    blank / wrong lines).
    """

    line: np.ndarray
    fields: np.ndarray
    blank: np.ndarray
    wrong: np.ndarray
    cols: dict[int, np.ndarray]


def _gather(a: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Bytes column [n] of ``a[start[i]:end[i]]`` (vectorized)."""
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


def _split_fast(chunk: bytes, delim: int, nfields: int, cols: Sequence[int]):
    """Split a chunk of whole lines (each ending in ``\\n``). Returns (fields [n], blank [n], cols dict)."""
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
    out = {k: _gather(a, start[:, k], end[:, k]) for k in cols}
    return fields, blank, out


def _csv_row(path: Path, line: int, text: str, delim: str) -> list[str]:
    """The fields of one line through the ``csv`` module; a line it rejects (e.g. a lone carriage return inside
    an unquoted field, a field over the csv field size limit) raises naming the file and line."""
    try:
        return next(csv.reader([text], delimiter=delim), [])
    except csv.Error as e:
        raise DataError(f"{path} line {line}: malformed CSV line: {e}") from None


def _split_csv(path: Path, chunk: bytes, first_line: int, delim: str, nfields: int, cols: Sequence[int]):
    """:func:`_split_fast` for blocks with quotes: every line through the ``csv`` module (UTF-8)."""
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
        row = _csv_row(path, first_line + i, text, delim)
        fields[i] = len(row)
        if len(row) == nfields:
            for k in cols:
                vals[k][i] = row[k].encode("utf-8")
    out = {k: np.array(v, dtype=bytes) if n else np.zeros(0, "S1") for k, v in vals.items()}
    return fields, blank, out


class _Delimited:
    """A delimited text file read in blocks of whole lines.

    Args:
      path: the file (``.gz`` decompressed on the fly).
      sep: the field separator (one or more bytes; ``::`` is handled by substitution).
      nfields: fields per line, or None to take the count of the first data line.
      describe: what a line holds, for errors, e.g. ``"4 '::'-separated fields (user, item, rating, timestamp)"``.
      quotes: lines may hold ``"``-quoted fields (blocks containing a quote go through the csv module).
    """

    def __init__(self, path: Path, sep: bytes, nfields: int | None, describe: str, drops: _Drops,
                 block_bytes: int = _BLOCK_BYTES, quotes: bool = False):
        self.path = path
        self.sep = sep
        self.nfields = nfields
        self.describe = describe
        self.drops = drops
        self.block_bytes = max(int(block_bytes), 1)
        self.quotes = quotes
        self.f = _open_binary(path)
        self.line = 1  # line number of the next unread line
        self.rest = b""
        self.header_fields: list[str] | None = None
        self.nfields_line = 0  # the line that set ``nfields`` when it was inferred

    def close(self) -> None:
        self.f.close()

    def read_header(self) -> list[str]:
        """Consume the first non-empty line as a header; returns its fields (UTF-8, BOM and CR removed)."""
        try:
            raw = self.f.readline()
        except _READ_ERRORS as e:
            raise DataError(f"{self.path}: cannot read file: {e}") from e
        if not raw.strip():
            raise DataError(f"{self.path} line 1: expected a header line, got an empty {'file' if not raw else 'line'}")
        self.line = 2
        try:
            text = raw.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path} line 1: cannot decode header as utf-8: {e.reason}") from None
        if self.quotes:
            fields = _csv_row(self.path, 1, text, self.sep.decode())
        else:
            fields = text.split(self.sep.decode())
        self.header_fields = [f.strip() for f in fields]
        return self.header_fields

    def _chunks(self) -> Iterator[tuple[bytes, int]]:
        while True:
            try:
                buf = self.f.read(self.block_bytes)
            except _READ_ERRORS as e:
                raise DataError(f"{self.path} line {self.line}: cannot read file from here on: {e}") from e
            if not buf:
                break
            buf = self.rest + buf
            k = buf.rfind(b"\n")
            if k < 0:
                self.rest = buf
                continue
            chunk, self.rest = buf[: k + 1], buf[k + 1 :]
            first = self.line
            self.line += chunk.count(b"\n")
            yield chunk, first
        if self.rest:
            chunk, self.rest = self.rest + b"\n", b""
            first = self.line
            self.line += 1
            yield chunk, first

    def _fix_nfields(self, chunk: bytes, first: int, delim: int) -> None:
        if self.nfields is not None:
            return
        for i, raw in enumerate(chunk.split(b"\n")):
            if raw.strip():
                self.nfields_line = first + i
                if self.quotes and b'"' in raw:
                    text = raw.rstrip(b"\r").decode("utf-8", "replace")
                    self.nfields = len(_csv_row(self.path, first + i, text, chr(delim)))
                else:
                    self.nfields = raw.count(bytes([delim])) + 1
                self.describe = self.describe.replace("{n}", str(self.nfields))
                return

    def blocks(self, cols: Sequence[int]) -> Iterator[_Block]:
        """Blocks of data lines with the bytes of columns ``cols``. Blank lines followed by more data are
        reported as blank rows (blank lines from an earlier block are raised / counted here); trailing blank
        lines at the end of the file are ignored."""
        pending: list[int] = []  # blank lines not yet followed by data
        for chunk, first in self._chunks():
            if len(self.sep) > 1:  # e.g. '::': substitute a one-byte separator the block does not hold
                delim = next((c for c in range(0x1F, 0, -1) if bytes([c]) not in chunk), None)
                if delim is None:  # pragma: no cover - a block holding every control byte 0x01..0x1f
                    raise DataError(f"{self.path} line {first}: control bytes 0x01..0x1f all occur in the lines "
                                    f"from here on; cannot split them on {self.sep.decode('latin-1')!r}")
                chunk = chunk.replace(self.sep, bytes([delim]))
            else:
                delim = self.sep[0]
            self._fix_nfields(chunk, first, delim)
            if self.nfields is None:  # only blank lines so far
                pending.extend(first + i for i in range(chunk.count(b"\n")))
                continue
            if max(cols) >= self.nfields:
                where = f" line {self.nfields_line}" if self.nfields_line else ""
                raise DataError(f"{self.path}{where}: column {max(cols)} (0-based) does not exist; the line has "
                                f"{self.nfields} fields (without a header the first data line sets the field count)")
            if self.quotes and b'"' in chunk:
                fields, blank, data = _split_csv(self.path, chunk, first, chr(delim), self.nfields, cols)
            else:
                fields, blank, data = _split_fast(chunk, delim, self.nfields, cols)
            lines = first + np.arange(fields.shape[0], dtype=np.int64)
            nonblank = np.flatnonzero(~blank)
            if nonblank.size == 0:
                pending.extend(int(x) for x in lines)
                continue
            for line in pending:  # earlier than anything in this block
                self.drops.one(self.path, line, "blank_line", f"expected {self.describe}, got 1 (blank line)")
            pending = []
            last = int(nonblank[-1]) + 1
            pending.extend(int(x) for x in lines[last:])
            wrong = (fields != self.nfields) & ~blank
            yield _Block(line=lines[:last], fields=fields[:last], blank=blank[:last], wrong=wrong[:last],
                         cols={k: v[:last] for k, v in data.items()})

    def issues(self, block: _Block) -> _Issues:
        """The block's issue list, starting with blank lines and wrong field counts."""
        iss = _Issues(self.path, block.line)
        iss.add(block.blank, "blank_line", lambda i: f"expected {self.describe}, got 1 (blank line)")
        iss.add(block.wrong, "bad_fields", lambda i: f"expected {self.describe}, got {int(block.fields[i])}")
        return iss


# ----------------------------------------------------------------------------------------------------------
# Shared steps
# ----------------------------------------------------------------------------------------------------------


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _compact(x: np.ndarray) -> np.ndarray:
    """int64 -> int32 when the values fit (halves the memory of buffered id columns)."""
    if x.size and x.min() >= -(2**31) and x.max() < 2**31:
        return x.astype(np.int32)
    return x


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


def _stable_order(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Row order sorting by ``keys`` (first key most significant); ties keep the row order."""
    packed = _combine(keys)
    if len(packed) == 1:
        return np.argsort(packed[0], kind="stable")
    return np.lexsort(tuple(packed[::-1]))


def _duplicates(keys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows repeating an earlier row's key (all ``keys``, integer columns, equal).

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
    if len(packed) == 1:
        order = np.argsort(packed[0], kind="stable")
    else:
        order = np.lexsort(tuple(packed[::-1]))  # stable: equal keys keep row order
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


_DUP_HINT = " (set skip_bad_rows / data.skip_bad_rows: true to drop and count repeated rows)"


def _dedupe(path: Path, drops: _Drops, line: np.ndarray, keys: Sequence[np.ndarray], what: str) -> np.ndarray:
    """Keep mask dropping rows that repeat an earlier row's ``keys`` (raise unless ``drops.skip``)."""
    dup, first = _duplicates(keys)
    return drops.many(path, line, dup, "duplicate",
                      lambda i: f"duplicate of line {int(line[first[i]])} (same {what})", _DUP_HINT)


def _densify_sorted(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(vocab sorted [V], index int64 [N])`` with ``vocab[index] == raw``."""
    vocab, inv = np.unique(raw, return_inverse=True)
    return vocab, inv.reshape(-1).astype(np.int64)


def _lookup(vocab_sorted: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(position int64 [N], found bool [N])`` of ``ids`` in a sorted vocabulary."""
    pos = np.searchsorted(vocab_sorted, ids)
    found = pos < vocab_sorted.shape[0]
    found[found] = vocab_sorted[pos[found]] == ids[found]
    return pos, found


def _pack_genres(num_items: int, item: np.ndarray, genre: np.ndarray, num_genres: int) -> np.ndarray:
    """int32 [I + 1, Gmax] left-packed ascending genre ids of every item from (item, genre) pairs
    (duplicates ignored), 0-padded; ``Gmax = max(1, most genres of any item)``."""
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


def _genre_table(item_names: Mapping[int, Sequence[str]], num_items: int) -> tuple[np.ndarray, int]:
    """Genre names per dense item -> (item_genres, num_genres); genre ids are the sorted names' ranks + 1."""
    names = sorted({g for gs in item_names.values() for g in gs})
    gid = {g: k + 1 for k, g in enumerate(names)}
    pairs = [(it, gid[g]) for it, gs in item_names.items() for g in gs]
    it = np.array([p[0] for p in pairs], np.int64)
    gg = np.array([p[1] for p in pairs], np.int64)
    return _pack_genres(num_items, it, gg, len(names)), len(names)


def _string_ids(vocab: np.ndarray) -> np.ndarray:
    """A sorted bytes vocabulary as a str array (UTF-8)."""
    try:
        return vocab.astype(str)
    except UnicodeDecodeError:
        return np.char.decode(vocab, "utf-8", "replace").astype(str)


def _finish(path: Path, drops: _Drops, name: str, user: np.ndarray, item: np.ndarray, label: np.ndarray,
            time: np.ndarray, item_genres: np.ndarray, user_ids: np.ndarray, num_genres: int,
            what: str = "ratings") -> tuple[Interactions, DropReport]:
    if user.shape[0] == 0:
        extra = f" after dropping bad rows ({drops.report.summary()})" if drops.report.total else ""
        raise DataError(f"{path}: no {what}{extra}")
    inter = Interactions(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        label=label.astype(np.float32),
        time=time.astype(np.int64),
        item_genres=item_genres.astype(np.int32),
        user_ids=user_ids,
        num_genres=int(num_genres),
        name=name,
    )
    return inter, drops.report


def _check_dir(root: Path, files: Sequence[str], what: str) -> None:
    expected = ", ".join(files)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise DataError(f"{what} data directory {root} {state}; expected a directory containing {expected}")
    for fname in files:
        if not (root / fname).is_file():
            raise DataError(f"{root / fname}: file not found; a {what} directory must contain {expected}")


def _rating_checks(iss: _Issues, col: np.ndarray, lo: float | None, hi: float | None, field: str,
                   like_threshold: float) -> np.ndarray:
    """Parse a rating column, add its issues; returns the label (bool [n])."""
    rating, ok = _float_col(col)
    if lo is None:
        in_range = np.isfinite(rating)
        rng = "a finite number"
    else:
        in_range = np.isfinite(rating) & (rating >= lo) & (rating <= hi)
        rng = f"a number in {lo:g}..{hi:g}"
    iss.add(~(ok & in_range), "bad_rating", lambda i: f"field {field!r} must be {rng}, got {_show(col[i])}")
    return rating >= like_threshold


def _id_checks(iss: _Issues, col: np.ndarray, field: str, signed: bool = False) -> np.ndarray:
    vals, ok = _int_col(col, signed=signed)
    kind = "an integer" if signed else "a non-negative integer"
    iss.add(~ok, "bad_value", lambda i: f"field {field!r} must be {kind}, got {_show(col[i])}")
    return vals


def _str_checks(iss: _Issues, col: np.ndarray, field: str) -> np.ndarray:
    """A string id column, surrounding whitespace removed; empty ids are issues."""
    col = np.char.strip(col)
    empty = np.char.str_len(col) == 0
    iss.add(empty, "bad_value", lambda i: f"field {field!r} must be a non-empty id, got ''")
    return col


def _scan_ratings(stream: _Delimited, names: tuple[str, str, str, str], id_kind: str, rating_range,
                  like_threshold: float, signed_time: bool = True) -> dict[str, np.ndarray]:
    """Stream a ``user, item, rating, timestamp`` file (columns 0..3). ``id_kind``: "int" or "str";
    ``signed_time``: negative timestamps are valid.

    Returns kept rows: ``user`` / ``item`` (int ids, or bytes), ``label`` bool, ``time`` int64, ``line`` int64.
    """
    lo, hi = rating_range if rating_range is not None else (None, None)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "label", "time", "line")}
    try:
        for b in stream.blocks((0, 1, 2, 3)):
            iss = stream.issues(b)
            if id_kind == "int":
                user = _id_checks(iss, b.cols[0], names[0])
                item = _id_checks(iss, b.cols[1], names[1])
            else:
                user = _str_checks(iss, b.cols[0], names[0])
                item = _str_checks(iss, b.cols[1], names[1])
            label = _rating_checks(iss, b.cols[2], lo, hi, names[2], like_threshold)
            time = _id_checks(iss, b.cols[3], names[3], signed=signed_time)
            keep = iss.resolve(stream.drops)
            cols = {"user": user, "item": item, "label": label, "time": time, "line": b.line}
            for k, v in cols.items():
                v = v if keep is None else v[keep]
                acc[k].append(_compact(v) if k in ("user", "item") and id_kind == "int" else v)
    finally:
        stream.close()
    return {k: _concat(v, np.int64 if k != "label" else bool) for k, v in acc.items()}


# ----------------------------------------------------------------------------------------------------------
# MovieLens 1M
# ----------------------------------------------------------------------------------------------------------

_ML1M_FILES = ("ratings.dat", "movies.dat", "users.dat")


def _dat_lines(path: Path, nfields: int, describe: str, encoding: str) -> list[list[str]]:
    text = _read_text(path, encoding)
    if not text:
        raise DataError(f"{path}: empty file")
    out = []
    for i, line in enumerate(text.split("\n")):
        parts = line.split("::")
        if len(parts) != nfields:
            blank = " (blank line)" if not line.strip() else ""
            raise DataError(f"{path} line {i + 1}: expected {describe}, got {len(parts)}{blank}")
        out.append(parts)
    return out


def _unique_ids(path: Path, rows: list[list[str]], field: str) -> np.ndarray:
    seen: dict[int, int] = {}
    ids = np.empty(len(rows), np.int64)
    for i, parts in enumerate(rows):
        s = parts[0].strip()
        if not s.isascii() or not s.isdigit() or len(s) > 18:  # 18 digits always fit int64
            raise DataError(f"{path} line {i + 1}: field {field!r} must be a non-negative integer, got {parts[0]!r}")
        v = int(s)
        if v in seen:
            raise DataError(f"{path} line {i + 1}: duplicate {field} {v} (first seen on line {seen[v]})")
        seen[v] = i + 1
        ids[i] = v
    return ids


def _ml1m_movies(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    rows = _dat_lines(path, 3, "3 '::'-separated fields (movie id :: title :: genres)", "latin-1")
    ids = _unique_ids(path, rows, "movie id")
    order = np.argsort(ids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    names: dict[int, list[str]] = {}
    for i, parts in enumerate(rows):
        g = parts[2].strip()
        genres = [] if g in ("", _NO_GENRES) else g.split("|")
        if any(not x.strip() for x in genres):
            raise DataError(f"{path} line {i + 1}: field 'genres' has an empty genre name: {parts[2]!r}")
        names[int(rank[i]) + 1] = [x.strip() for x in genres]
    item_genres, num_genres = _genre_table(names, ids.shape[0])
    return ids[order], item_genres, num_genres


def read_movielens1m(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                     block_bytes: int = _BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read MovieLens 1M (``ml-1m.zip`` from GroupLens) from ``data_dir``.

    Files:

    * ``ratings.dat`` -- ``UserID::MovieID::Rating::Timestamp``, ratings 1..5, unix seconds;
    * ``movies.dat`` -- ``MovieID::Title::Genre1|Genre2|...`` (Latin-1);
    * ``users.dat`` -- ``UserID::Gender::Age::Occupation::Zip-code``.

    Users are densified over ``users.dat`` (rank of the id), items over ``movies.dat`` (rank + 1). Genres are
    the distinct genre names of ``movies.dat``, ids ``1..G`` in sorted name order. Rows keep the file order.
    ``movies.dat`` / ``users.dat`` must be well-formed (any problem raises). Rating rows with a problem
    (see the module doc), a user / movie missing from ``users.dat`` / ``movies.dat``, or repeating an earlier
    (user, movie, timestamp) raise, or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)``; ``user_ids`` int64 [U] ascending, ``name = str(data_dir)``.
    """
    root = Path(data_dir)
    _check_dir(root, _ML1M_FILES, "MovieLens 1M")
    movie_ids, item_genres, num_genres = _ml1m_movies(root / "movies.dat")
    user_rows = _dat_lines(root / "users.dat", 5,
                           "5 '::'-separated fields (user id :: gender :: age :: occupation :: zip code)", "latin-1")
    user_ids = np.sort(_unique_ids(root / "users.dat", user_rows, "user id"))

    return _movielens_ratings(root / "ratings.dat", b"::", "'::'-separated", user_ids, root / "users.dat", movie_ids,
                              root / "movies.dat", item_genres, num_genres, str(data_dir), like_threshold,
                              skip_bad_rows, block_bytes, signed_time=True)


def _movielens_ratings(path: Path, sep: bytes, sep_name: str, user_ids: np.ndarray, user_file: Path,
                       movie_ids: np.ndarray, item_file: Path, item_genres: np.ndarray, num_genres: int, name: str,
                       like_threshold: float, skip_bad_rows: bool, block_bytes: int,
                       signed_time: bool) -> tuple[Interactions, DropReport]:
    """The ratings file of MovieLens 100K / 1M: ``user sep item sep rating (1..5) sep timestamp`` lines whose
    users / items must be listed (``user_ids`` / ``movie_ids``, sorted) in ``user_file`` / ``item_file``.

    Users are densified over ``user_ids`` (rank), items over ``movie_ids`` (rank + 1); rows keep the file
    order. Bad rows (see the module doc), unknown users / items and repeats of an earlier (user, item,
    timestamp) raise, or with ``skip_bad_rows`` are dropped and counted.
    """
    drops = _Drops(skip_bad_rows)
    stream = _Delimited(path, sep, 4, f"4 {sep_name} fields (user, item, rating, timestamp)", drops, block_bytes)
    r = _scan_ratings(stream, ("user", "item", "rating", "timestamp"), "int", (1.0, 5.0), like_threshold,
                      signed_time=signed_time)
    line = r["line"]
    upos, ufound = _lookup(user_ids, r["user"].astype(np.int64))
    ipos, ifound = _lookup(movie_ids, r["item"].astype(np.int64))
    iss = _Issues(path, line)
    iss.add(~ufound, "unknown_user", lambda i: f"user {int(r['user'][i])} is not listed in {user_file}")
    iss.add(~ifound, "unknown_item", lambda i: f"item {int(r['item'][i])} is not listed in {item_file}")
    keep = iss.resolve(drops)
    if keep is not None:
        upos, ipos, line, label, time = upos[keep], ipos[keep], line[keep], r["label"][keep], r["time"][keep]
    else:
        label, time = r["label"], r["time"]
    keep = _dedupe(path, drops, line, (upos, ipos, time), "user, item and timestamp")
    return _finish(path, drops, name, upos[keep], ipos[keep] + 1, label[keep], time[keep], item_genres,
                   user_ids.astype(np.int64), num_genres)


# ----------------------------------------------------------------------------------------------------------
# MovieLens CSV (20M / 25M / 32M / latest)
# ----------------------------------------------------------------------------------------------------------

_MLCSV_FILES = ("ratings.csv", "movies.csv")
_MLCSV_RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]
_MLCSV_MOVIES_HEADER = ["movieId", "title", "genres"]


def _mlcsv_movies(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    text = _read_text(path, "utf-8")  # a leading BOM is already gone (readers._open_binary)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != _MLCSV_MOVIES_HEADER:
        raise DataError(f"{path} line 1: expected the header {','.join(_MLCSV_MOVIES_HEADER)}, got "
                        f"{','.join(header or [])!r}")
    ids: list[int] = []
    genres: list[list[str]] = []
    seen: dict[int, int] = {}
    line = reader.line_num
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if len(row) != 3:
                blank = " (blank line)" if not row else ""
                raise DataError(f"{path} line {start}: expected 3 comma-separated fields (movieId, title, genres; "
                                f"quote titles holding commas), got {len(row)}{blank}")
            s = row[0].strip()
            if not s.isascii() or not s.isdigit() or len(s) > 18:  # 18 digits always fit int64
                raise DataError(f"{path} line {start}: field 'movieId' must be a non-negative integer, got {row[0]!r}")
            v = int(s)
            if v in seen:
                raise DataError(f"{path} line {start}: duplicate movieId {v} (first seen on line {seen[v]})")
            seen[v] = start
            g = row[2].strip()
            names = [] if g in ("", _NO_GENRES) else [x.strip() for x in g.split("|")]
            if any(not x for x in names):
                raise DataError(f"{path} line {start}: field 'genres' has an empty genre name: {row[2]!r}")
            ids.append(v)
            genres.append(names)
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num}: malformed CSV: {e}") from None
    if not ids:
        raise DataError(f"{path}: no movies")
    arr = np.array(ids, np.int64)
    order = np.argsort(arr, kind="stable")
    item_names = {k + 1: genres[int(j)] for k, j in enumerate(order)}
    item_genres, num_genres = _genre_table(item_names, arr.shape[0])
    return arr[order], item_genres, num_genres


def read_movielens_csv(data_dir: str | os.PathLike, like_threshold: float = 4.0, *, skip_bad_rows: bool = False,
                       block_bytes: int = _BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read MovieLens 20M / 25M / 32M / latest(-small) from ``data_dir``, streaming ``ratings.csv``.

    Files:

    * ``ratings.csv`` -- header ``userId,movieId,rating,timestamp``; ratings 0.5..5 (half stars), unix seconds;
    * ``movies.csv`` -- header ``movieId,title,genres``; titles may be quoted and hold commas; genres are
      ``|``-separated, ``(no genres listed)`` meaning none.

    LF or CRLF line ends. Users are densified over the user ids of ``ratings.csv`` (rank), items over
    ``movies.csv`` (rank + 1); genres are the distinct genre names, ids ``1..G`` in sorted order. Ratings of
    movies missing from ``movies.csv`` are always dropped and counted under ``unknown_item`` (never an
    error). Other bad rows raise, or with ``skip_bad_rows`` are dropped and counted (see the module doc).
    ``ratings.csv`` is read in blocks of ``block_bytes``; rows keep the file order.

    Returns:
      ``(Interactions, DropReport)``; ``user_ids`` int64 [U] ascending, ``name = str(data_dir)``.
    """
    root = Path(data_dir)
    _check_dir(root, _MLCSV_FILES, "MovieLens CSV")
    movie_ids, item_genres, num_genres = _mlcsv_movies(root / "movies.csv")
    path = root / "ratings.csv"
    drops = _Drops(skip_bad_rows)
    stream = _Delimited(path, b",", 4, "4 comma-separated fields (userId, movieId, rating, timestamp)", drops,
                        block_bytes)
    header = stream.read_header()
    if header != _MLCSV_RATINGS_HEADER:
        stream.close()
        raise DataError(f"{path} line 1: expected the header {','.join(_MLCSV_RATINGS_HEADER)}, got "
                        f"{','.join(header)!r}")
    r = _scan_ratings(stream, ("userId", "movieId", "rating", "timestamp"), "int", (0.5, 5.0), like_threshold)
    line = r["line"]
    ipos, found = _lookup(movie_ids, r["item"].astype(np.int64))
    if not found.all():
        bad = np.flatnonzero(~found)
        drops.report.add("unknown_item", int(bad.size), f"{path} line {int(line[bad[0]])}")
    user_raw, label, time = r["user"][found], r["label"][found], r["time"][found]
    ipos, line = ipos[found], line[found]
    user_ids, user = _densify_sorted(user_raw.astype(np.int64))
    keep = _dedupe(path, drops, line, (user, ipos, time), "userId, movieId and timestamp")
    return _finish(path, drops, str(data_dir), user[keep], ipos[keep] + 1, label[keep], time[keep], item_genres,
                   user_ids.astype(np.int64), num_genres)


# ----------------------------------------------------------------------------------------------------------
# Amazon reviews
# ----------------------------------------------------------------------------------------------------------

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_ASIN_RE = re.compile(rb"""["']asin["']\s*:\s*["']([^"']*)["']""")


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    f = _open_binary(path)
    i = 0
    try:
        for i, raw in enumerate(f, 1):
            yield i, raw
    except _READ_ERRORS as e:
        raise DataError(f"{path} line {i + 1}: cannot read file from here on: {e}") from e
    finally:
        f.close()


def _amazon_json(path: Path, drops: _Drops, like_threshold: float) -> dict[str, Any]:
    users: list[str] = []
    items: list[str] = []
    labels: list[bool] = []
    times: list[int] = []
    lines: list[int] = []
    pending: list[int] = []
    keys = ("reviewerID", "asin", "overall", "unixReviewTime")
    for lineno, raw in _iter_lines(path):
        if not raw.strip():
            pending.append(lineno)
            continue
        for b in pending:
            drops.one(path, b, "blank_line", "blank line between JSON lines")
        pending = []
        try:
            obj = json.loads(raw)
        except ValueError as e:  # UnicodeDecodeError (not UTF-8) included
            drops.one(path, lineno, "bad_fields", f"not valid JSON: {e}")
            continue
        except RecursionError:
            drops.one(path, lineno, "bad_fields", "not valid JSON: nested too deeply")
            continue
        if not isinstance(obj, dict):
            drops.one(path, lineno, "bad_fields", f"expected a JSON object, got {type(obj).__name__}")
            continue
        missing = [k for k in keys if k not in obj]
        if missing:
            drops.one(path, lineno, "bad_fields", f"missing key {missing[0]!r} (a review needs {', '.join(keys)})")
            continue
        u, it, r, t = (obj[k] for k in keys)
        if not isinstance(u, (str, int)) or isinstance(u, bool) or str(u) == "":
            drops.one(path, lineno, "bad_value", f"field 'reviewerID' must be a non-empty id, got {u!r}")
            continue
        if not isinstance(it, (str, int)) or isinstance(it, bool) or str(it) == "":
            drops.one(path, lineno, "bad_value", f"field 'asin' must be a non-empty id, got {it!r}")
            continue
        if isinstance(r, str):
            try:
                r = float(r)
            except ValueError:
                pass
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (1.0 <= r <= 5.0):
            drops.one(path, lineno, "bad_rating", f"field 'overall' must be a number in 1..5, got {obj['overall']!r}")
            continue
        if isinstance(t, float) and t.is_integer():
            t = int(t)
        if isinstance(t, str) and _INT_RE.fullmatch(t.encode()):
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int):
            drops.one(path, lineno, "bad_value", f"field 'unixReviewTime' must be an integer, got {t!r}")
            continue
        if not -(2**63) <= t < 2**63:
            drops.one(path, lineno, "bad_value", f"field 'unixReviewTime' is out of the int64 range, got {t!r}")
            continue
        users.append(str(u))
        items.append(str(it))
        labels.append(r >= like_threshold)
        times.append(t)
        lines.append(lineno)
    return {"user": np.array(users, dtype=str) if users else np.zeros(0, "U1"),
            "item": np.array(items, dtype=str) if items else np.zeros(0, "U1"),
            "label": np.array(labels, bool), "time": np.array(times, np.int64), "line": np.array(lines, np.int64)}


def _meta_categories(obj: dict) -> list[str]:
    """Leaf category names of a metadata record: the last name of every path in ``categories`` (list of
    lists, 2014 dumps) or of the single path ``category`` (a list, 2018 dumps)."""
    out: list[str] = []
    cats = obj.get("categories")
    if cats is None:
        cats = obj.get("category")
        if isinstance(cats, list) and cats and all(isinstance(c, str) for c in cats):
            cats = [cats]
    if not isinstance(cats, list):
        return out
    for p in cats:
        if isinstance(p, str):
            p = [p]
        if isinstance(p, list):
            names = [c.strip() for c in p if isinstance(c, str) and c.strip()]
            if names and names[-1] not in out:
                out.append(names[-1])
    return out


def _amazon_meta(path: Path, wanted: set[str], drops: _Drops) -> dict[str, list[str]]:
    """asin -> leaf categories, for the asins in ``wanted``. JSON lines, or the Python-literal lines of the
    2014 dumps; a bad line raises (or with ``skip_bad_rows`` counts under ``bad_meta``)."""
    out: dict[str, list[str]] = {}
    for lineno, raw in _iter_lines(path):
        if not raw.strip():
            continue
        m = _ASIN_RE.search(raw)
        if m is not None and m.group(1).decode("utf-8", "replace") not in wanted:
            continue  # cheap skip of items nobody reviewed
        try:
            obj = json.loads(raw)
        except RecursionError:
            drops.one(path, lineno, "bad_meta", "not a JSON (or Python literal) object: nested too deeply")
            continue
        except ValueError:
            try:
                obj = ast.literal_eval(raw.decode("utf-8", "replace").strip())
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                # TypeError: e.g. {[1]: 2}, an unhashable dict key
                drops.one(path, lineno, "bad_meta", "not a JSON (or Python literal) object")
                continue
        if not isinstance(obj, dict) or not isinstance(obj.get("asin"), str):
            drops.one(path, lineno, "bad_meta", "expected an object with a string 'asin'")
            continue
        if obj["asin"] in wanted:
            cats = out.setdefault(obj["asin"], [])
            cats.extend(c for c in _meta_categories(obj) if c not in cats)
    return out


def read_amazon(path: str | os.PathLike, like_threshold: float = 4.0, meta_path: str | os.PathLike | None = None,
                *, skip_bad_rows: bool = False, block_bytes: int = _BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read an Amazon reviews file (McAuley et al. dumps), format chosen by the file extension:

    * ``.json`` / ``.jsonl`` (``.gz``) -- 5-core JSON lines with ``reviewerID``, ``asin``, ``overall`` (1..5)
      and ``unixReviewTime``; other keys are ignored;
    * ``.csv`` (``.gz``) -- the ratings-only file, ``user,item,rating,timestamp`` with no header (the 2014
      ``ratings_*.csv`` order; for files with another order use :func:`read_interactions_csv`).

    String ids are densified in sorted order: users ``0..U-1`` (``user_ids`` is a str array of the
    reviewer ids), items ``1..I``. With ``meta_path`` (JSON lines -- or the Python-literal lines of the 2014
    metadata dumps -- with ``asin`` and ``categories``: a list of category paths, or ``category``: one path)
    every item's genres are the leaf (last) names of its category paths, ids ``1..G`` in sorted name order;
    items without metadata get no genres. Without ``meta_path`` there are no genres (``num_genres = 0``).
    Rows keep the file order. Bad rows (see the module doc) and repeats of an earlier (user, item, time) raise,
    or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)`` with ``name = str(path)``.
    """
    path = Path(path)
    lower = path.name.lower()
    drops = _Drops(skip_bad_rows)
    if lower.endswith(_JSON_SUFFIXES):
        r = _amazon_json(path, drops, like_threshold)
        what = "reviews"
    elif lower.endswith(_CSV_SUFFIXES):
        stream = _Delimited(path, b",", 4, "4 comma-separated fields (user, item, rating, timestamp)", drops,
                            block_bytes, quotes=True)
        r = _scan_ratings(stream, ("user", "item", "rating", "timestamp"), "str", (1.0, 5.0), like_threshold)
        what = "ratings"
    else:
        raise DataError(f"{path}: cannot tell the Amazon format from the file name; expected one ending in "
                        f"{', '.join(_JSON_SUFFIXES + _CSV_SUFFIXES)}")
    user_ids, user = _densify_sorted(r["user"])
    item_vocab, item = _densify_sorted(r["item"])
    keep = _dedupe(path, drops, r["line"], (user, item, r["time"]), "user, item and timestamp")
    num_items = int(item_vocab.shape[0])
    item_genres, num_genres = np.zeros((num_items + 1, 1), np.int32), 0
    if meta_path is not None:
        names = [str(x) for x in _string_ids(item_vocab)]
        cats = _amazon_meta(Path(meta_path), set(names), drops)
        item_genres, num_genres = _genre_table(
            {k + 1: cats[n] for k, n in enumerate(names) if cats.get(n)}, num_items)
    return _finish(path, drops, str(path), user[keep], item[keep] + 1, r["label"][keep], r["time"][keep],
                   item_genres, _string_ids(user_ids), num_genres, what)


# ----------------------------------------------------------------------------------------------------------
# Taobao UserBehavior
# ----------------------------------------------------------------------------------------------------------


def read_taobao(path: str | os.PathLike, label_rule: Mapping[str, int] | None = None, *, skip_bad_rows: bool = False,
                block_bytes: int = _BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read Taobao ``UserBehavior.csv``: ``user_id,item_id,category_id,behavior,timestamp``, no header.

    ``behavior`` is one of ``pv`` / ``cart`` / ``fav`` / ``buy``; the label of a row is ``label_rule[behavior]``
    (default :data:`TAOBAO_LABEL_RULE`: buy / cart / fav 1, pv 0). A behavior the rule does not name raises
    naming the file and line (or with ``skip_bad_rows`` is counted under ``unknown_behavior``).
    Users, items and categories are densified in ascending id order (users ``0..U-1``, items ``1..I``,
    categories are the genres ``1..G``; an item's genres are every category it appears with). Rows are sorted
    by user, then time (ties keep the file order). Exact repeats of an earlier line (same user, item,
    category, behavior and timestamp) raise, or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)``; ``user_ids`` int64 [U] ascending, ``name = str(path)``.
    """
    path = Path(path)
    rule = dict(TAOBAO_LABEL_RULE if label_rule is None else label_rule)
    if not rule or any(v not in (0, 1) for v in rule.values()):
        raise ValueError(f"label_rule must map behaviors to 0 or 1, got {rule!r}")
    names = list(rule)
    codes = {n.encode(): k for k, n in enumerate(names)}
    rule_labels = np.array([int(rule[n]) for n in names], np.int8)
    drops = _Drops(skip_bad_rows)
    stream = _Delimited(path, b",", 5, "5 comma-separated fields (user_id, item_id, category_id, behavior, "
                        "timestamp)", drops, block_bytes)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "cat", "beh", "time", "line")}
    try:
        for b in stream.blocks((0, 1, 2, 3, 4)):
            iss = stream.issues(b)
            user = _id_checks(iss, b.cols[0], "user_id")
            item = _id_checks(iss, b.cols[1], "item_id")
            cat = _id_checks(iss, b.cols[2], "category_id")
            bcol = b.cols[3]
            beh = np.full(bcol.shape[0], -1, np.int8)
            for name, k in codes.items():
                beh[bcol == name] = k
            unknown = beh < 0
            if unknown.any():  # tolerate surrounding whitespace
                for i in np.flatnonzero(unknown):
                    beh[i] = codes.get(bcol[i].strip(), -1)
                unknown = beh < 0
            iss.add(unknown, "unknown_behavior",
                    lambda i, bcol=bcol: f"field 'behavior' must be one of {', '.join(names)}, got {_show(bcol[i])}")
            time = _id_checks(iss, b.cols[4], "timestamp", signed=True)
            keep = iss.resolve(drops)
            for k, v in {"user": user, "item": item, "cat": cat, "beh": beh, "time": time, "line": b.line}.items():
                v = v if keep is None else v[keep]
                acc[k].append(_compact(v) if k in ("user", "item", "cat") else v)
    finally:
        stream.close()
    r = {k: _concat(v, np.int8 if k == "beh" else np.int64) for k, v in acc.items()}
    user_ids, user = _densify_sorted(r["user"].astype(np.int64))
    item_vocab, item = _densify_sorted(r["item"].astype(np.int64))
    cat_vocab, cat = _densify_sorted(r["cat"].astype(np.int64))
    line = r["line"]
    keep = _dedupe(path, drops, line, (user, item, r["time"], cat, r["beh"]),
                   "user, item, category, behavior and timestamp")
    user, item, cat, beh, time = user[keep], item[keep], cat[keep], r["beh"][keep], r["time"][keep]
    order = _stable_order((user, time))  # ties keep the file order
    item_genres = _pack_genres(int(item_vocab.shape[0]), item + 1, cat + 1, int(cat_vocab.shape[0]))
    return _finish(path, drops, str(path), user[order], item[order] + 1, rule_labels[beh[order]], time[order],
                   item_genres, user_ids.astype(np.int64), int(cat_vocab.shape[0]), "rows")


# ----------------------------------------------------------------------------------------------------------
# Generic CSV
# ----------------------------------------------------------------------------------------------------------

CSV_COLUMN_KEYS = ("user", "item", "rating", "label", "time", "genre")


def _resolve_columns(path: Path, columns: Mapping[str, str | int], header: list[str] | None) -> dict[str, int]:
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
    """Every id is a canonical non-negative integer (no leading zeros, so "007" and "7" stay distinct ids)."""
    if not col.size or not _int_col(col)[1].all():
        return False
    ch = _chars(np.char.strip(col))
    return ch.shape[1] < 2 or not ((ch[:, 0] == 48) & (ch[:, 1] != 0)).any()


def _id_keys(col: np.ndarray, numeric: bool) -> np.ndarray:
    """Comparable keys of a bytes id column: int64 values when ``numeric``, else the stripped bytes."""
    return _int_col(col)[0] if numeric else np.char.strip(col)


def read_interactions_csv(path: str | os.PathLike, columns: Mapping[str, str | int], like_threshold: float = 4.0,
                          has_header: bool = True, delimiter: str = ",", *, skip_bad_rows: bool = False,
                          block_bytes: int = _BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read any delimited interaction file given a column mapping.

    Args:
      path: the file (``.gz`` is decompressed). Fields may be ``"``-quoted (not across lines).
      columns: ``user``, ``item``, ``time`` and exactly one of ``rating`` (label = rating >= like_threshold)
        or ``label`` (0 / 1), optionally ``genre`` (``|``-separated genre names of the row's item); each the
        header name of the column, or its 0-based number (required without a header).
      like_threshold: positive threshold of a ``rating`` column.
      has_header: the first line names the columns (its field count is every line's); without a header every
        line must have the field count of the first data line.
      delimiter: one character.
      skip_bad_rows: drop and count bad rows instead of raising (see the module doc).

    Ids: when every user (item) id is a non-negative integer they are densified numerically and ``user_ids``
    is int64, else as strings in sorted order and ``user_ids`` is a str array. Items are ``1..I``. Genres
    (only with a ``genre`` column) are the distinct names, ids ``1..G`` in sorted order; an item's genres are
    the union over its rows. Timestamps are integers. Rows keep the file order; repeats of an earlier (user,
    item, time) raise, or with ``skip_bad_rows`` are dropped and counted.

    Returns:
      ``(Interactions, DropReport)`` with ``name = str(path)``.
    """
    path = Path(path)
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ValueError(f"delimiter must be one character other than a quote or line break, got {delimiter!r}")
    drops = _Drops(skip_bad_rows)
    stream = _Delimited(path, delimiter.encode(), None, f"{{n}} {delimiter!r}-separated fields", drops,
                        block_bytes, quotes=True)
    header = None
    try:
        if has_header:
            header = stream.read_header()
            stream.nfields = len(header)
            stream.describe = f"{len(header)} {delimiter!r}-separated fields ({', '.join(header)})"
        cols = _resolve_columns(path, columns, header)
    except BaseException:
        stream.close()
        raise
    if stream.nfields is not None and max(cols.values()) >= stream.nfields:
        stream.close()
        raise DataError(f"{path}: column {max(cols.values())} does not exist (lines have {stream.nfields} fields)")
    fname = {k: (header[c] if header is not None else f"column {c}") for k, c in cols.items()}
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "label", "time", "line")}
    item_genre_sets: dict[bytes, set[bytes]] = {}
    try:
        for b in stream.blocks(tuple(sorted(set(cols.values())))):
            iss = stream.issues(b)
            if "rating" in cols:
                label = _rating_checks(iss, b.cols[cols["rating"]], None, None, fname["rating"], like_threshold)
            else:
                col = b.cols[cols["label"]]
                v, ok = _float_col(col)
                iss.add(~(ok & ((v == 0) | (v == 1))), "bad_label",
                        lambda i, col=col: f"field {fname['label']!r} must be 0 or 1, got {_show(col[i])}")
                label = v == 1
            user = _str_checks(iss, b.cols[cols["user"]], fname["user"])
            item = _str_checks(iss, b.cols[cols["item"]], fname["item"])
            time = _id_checks(iss, b.cols[cols["time"]], fname["time"], signed=True)
            keep = iss.resolve(drops)
            sel = slice(None) if keep is None else keep
            for k, v in {"user": user, "item": item, "label": label, "time": time, "line": b.line}.items():
                acc[k].append(v[sel])
            if "genre" in cols:
                it_u, it_inv = np.unique(item[sel], return_inverse=True)
                g_u, g_inv = np.unique(b.cols[cols["genre"]][sel], return_inverse=True)
                pairs = np.unique(it_inv.reshape(-1).astype(np.int64) * max(g_u.shape[0], 1) + g_inv.reshape(-1))
                for p in pairs.tolist():
                    item_genre_sets.setdefault(bytes(it_u[p // max(g_u.shape[0], 1)]), set()).add(
                        bytes(g_u[p % max(g_u.shape[0], 1)]))
    finally:
        stream.close()
    users = _concat(acc["user"], "S1")
    items = _concat(acc["item"], "S1")
    line = _concat(acc["line"], np.int64)
    users_numeric = _all_uint(users)
    items_numeric = _all_uint(items)
    user_vocab, user = _densify_sorted(_id_keys(users, users_numeric))
    item_vocab, item = _densify_sorted(_id_keys(items, items_numeric))
    time = _concat(acc["time"], np.int64)
    label = _concat(acc["label"], bool)
    keep = _dedupe(path, drops, line, (user, item, time), "user, item and time")
    num_items = int(item_vocab.shape[0])
    item_genres, num_genres = np.zeros((num_items + 1, 1), np.int32), 0
    if "genre" in cols:
        raw_ids = list(item_genre_sets)
        pos, found = _lookup(item_vocab, _id_keys(np.array(raw_ids, dtype=bytes), items_numeric))
        names: dict[int, list[str]] = {}
        for k, raw in enumerate(raw_ids):
            if not found[k]:  # pragma: no cover - every kept row's item is in the vocabulary
                continue
            gs = names.setdefault(int(pos[k]) + 1, [])
            for field in sorted(item_genre_sets[raw]):
                for g in field.decode("utf-8", "replace").split("|"):
                    g = g.strip()
                    if g and g != _NO_GENRES and g not in gs:
                        gs.append(g)
        item_genres, num_genres = _genre_table(names, num_items)
    user_ids = user_vocab if users_numeric else _string_ids(user_vocab)
    return _finish(path, drops, str(path), user[keep], item[keep] + 1, label[keep], time[keep], item_genres,
                   user_ids, num_genres, "rows")
