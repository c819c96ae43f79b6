"""The data-ingest core: delimited files streamed in blocks of whole lines.

A file is read in blocks of whole lines (``block_bytes``, 8 MiB by default); every block is split and
converted with :mod:`coda_jax.data.parse`, so only the parsed columns of kept rows are held in memory. Line
numbers are carried with every row; trailing blank lines, CRLF line ends and a UTF-8 byte-order mark are
fine; a blank line followed by more data is a bad row (``blank_line``). :func:`scan` is the loop every
streamed source runs (parse a block's columns, resolve its bad rows, keep the rest); :func:`read_table` reads
a small metadata file whole, any problem raising.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, READ_ERRORS, DataError, Drops, Issues, open_binary
from coda_jax.data.parse import csv_row, id_checks, rating_checks, split_csv, split_fast, str_checks

__all__ = ["Block", "Delimited", "scan", "scan_ratings", "read_table", "concat"]


@dataclass
class Block:
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


@dataclasses.dataclass(frozen=True)
class LineFormat:
    """What a line of a delimited file holds.

    Attributes:
      sep: the field separator (one or more bytes; ``::`` is handled by substitution).
      nfields: fields per line, or None to take the count of the first data line.
      describe: what a line holds, for errors, e.g. ``"4 '::'-separated fields (user, item, rating, timestamp)"``
        (``{n}`` stands for an inferred field count).
      quotes: lines may hold ``"``-quoted fields (blocks containing a quote go through the csv module).
    """

    sep: bytes
    nfields: int | None
    describe: str
    quotes: bool = False


class Delimited:
    """A delimited text file read in blocks of whole lines.

    Args:
      path: the file (``.gz`` decompressed on the fly).
      fmt: what its lines hold (:class:`LineFormat`).
      drops: the bad-row policy.
      block_bytes: bytes read at a time (whole lines).
    """

    def __init__(self, path: Path, fmt: LineFormat, drops: Drops, block_bytes: int = BLOCK_BYTES):
        sep, nfields, describe, quotes = fmt.sep, fmt.nfields, fmt.describe, fmt.quotes
        self.path, self.sep, self.nfields, self.describe = path, sep, nfields, describe
        self.drops = drops
        self.block_bytes = max(int(block_bytes), 1)
        self.quotes = quotes
        self.f = open_binary(path)
        self.line = 1  # line number of the next unread line
        self.rest = b""
        self.nfields_line = 0  # the line that set ``nfields`` when it was inferred

    def close(self) -> None:
        self.f.close()

    def read_header(self, expected: list[str] | None = None) -> list[str]:
        """Consume the first line as a header (raising unless it is ``expected``, when given). Returns its
        fields (UTF-8, BOM and CR removed, stripped)."""
        try:
            raw = self.f.readline()
        except READ_ERRORS as e:
            raise DataError(f"{self.path}: cannot read file: {e}") from e
        if not raw.strip():
            raise DataError(f"{self.path} line 1: expected a header line, got an empty {'file' if not raw else 'line'}")
        self.line = 2
        try:
            text = raw.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path} line 1: cannot decode header as utf-8: {e.reason}") from None
        fields = csv_row(self.path, 1, text, self.sep.decode()) if self.quotes else text.split(self.sep.decode())
        fields = [f.strip() for f in fields]
        if expected is not None and fields != expected:
            raise DataError(f"{self.path} line 1: expected the header {','.join(expected)}, got {','.join(fields)!r}")
        return fields

    def _chunks(self) -> Iterator[tuple[bytes, int]]:
        while True:
            try:
                buf = self.f.read(self.block_bytes)
            except READ_ERRORS as e:
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
                    self.nfields = len(csv_row(self.path, first + i, text, chr(delim)))
                else:
                    self.nfields = raw.count(bytes([delim])) + 1
                self.describe = self.describe.replace("{n}", str(self.nfields))
                return

    def blocks(self, cols: Sequence[int]) -> Iterator[Block]:
        """Yields blocks of data lines with the bytes of columns ``cols``. Blank lines followed by more data are
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
                fields, blank, data = split_csv(self.path, chunk, first, chr(delim), self.nfields, cols)
            else:
                fields, blank, data = split_fast(chunk, delim, self.nfields, cols)
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
            yield Block(line=lines[:last], fields=fields[:last], blank=blank[:last], wrong=wrong[:last],
                        cols={k: v[:last] for k, v in data.items()})

    def issues(self, block: Block) -> Issues:
        """Returns the block's issue list, starting with blank lines and wrong field counts."""
        iss = Issues(self.path, block.line)
        iss.add(block.blank, "blank_line", lambda i: f"expected {self.describe}, got 1 (blank line)")
        iss.add(block.wrong, "bad_fields", lambda i: f"expected {self.describe}, got {int(block.fields[i])}")
        return iss


def concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    """Returns the parts joined ([sum of lengths]), or an empty array of ``dtype`` when there are none."""
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def compact(x: np.ndarray) -> np.ndarray:
    """Returns int64 values as int32 when they fit (halves the memory of buffered id columns), else as is."""
    if x.dtype == np.int64 and x.size and x.min() >= -(2**31) and x.max() < 2**31:
        return x.astype(np.int32)
    return x


def scan(stream: Delimited, cols: Sequence[int], parse: Callable[[Block, Issues], dict[str, np.ndarray]],
         dtypes: dict[str, object], on_kept: Callable[[dict[str, np.ndarray]], None] | None = None
         ) -> dict[str, np.ndarray]:
    """Stream every block of ``stream`` (closed at the end): ``parse(block, issues)`` returns the block's
    parsed columns (each [n]) and adds their bad rows to ``issues``; bad rows are raised or dropped and
    counted (``stream.drops``); ``on_kept`` (optional) sees each block's kept columns.

    Returns the kept rows' columns named in ``dtypes`` (each [N]; ``dtypes`` gives each one's dtype when no
    row is kept) plus ``line`` int64 [N]; integer columns are held as int32 where they fit."""
    acc: dict[str, list[np.ndarray]] = {k: [] for k in (*dtypes, "line")}
    try:
        for b in stream.blocks(cols):
            iss = stream.issues(b)
            out = parse(b, iss)
            keep = iss.resolve(stream.drops)
            out = out if keep is None else {k: v[keep] for k, v in out.items()}
            if on_kept is not None:
                on_kept(out)
            for k in dtypes:
                acc[k].append(compact(out[k]))
            acc["line"].append(b.line if keep is None else b.line[keep])
    finally:
        stream.close()
    return {k: concat(v, dtypes.get(k, np.int64)) for k, v in acc.items()}


def scan_ratings(stream: Delimited, names: tuple[str, str, str, str], id_kind: str, rating_range,
                 like_threshold: float, signed_time: bool = True) -> dict[str, np.ndarray]:
    """Stream a ``user, item, rating, timestamp`` file (columns 0..3). ``id_kind``: "int" or "str";
    ``rating_range``: ``(lo, hi)`` or None (any finite number); ``signed_time``: negative timestamps are valid.

    Returns the kept rows: ``user`` / ``item`` [N] (integer ids, or bytes), ``label`` bool [N], ``time`` int64
    [N], ``line`` int64 [N].
    """
    lo, hi = rating_range if rating_range is not None else (None, None)
    ids = id_checks if id_kind == "int" else str_checks

    def parse(b: Block, iss: Issues) -> dict[str, np.ndarray]:
        return {"user": ids(iss, b.cols[0], names[0]), "item": ids(iss, b.cols[1], names[1]),
                "label": rating_checks(iss, b.cols[2], lo, hi, names[2], like_threshold),
                "time": id_checks(iss, b.cols[3], names[3], signed=signed_time)}

    idt = np.int64 if id_kind == "int" else "S1"
    return scan(stream, (0, 1, 2, 3), parse, {"user": idt, "item": idt, "label": bool, "time": np.int64})


def read_table(path: Path, fmt: LineFormat, empty: str, header: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a small metadata file whole (e.g. ``u.item``, ``movies.dat``) of lines ``fmt`` (a fixed field
    count); any bad line raises naming it, as does a first line other than ``header`` (when given) or a file
    without data lines (``"<path>: <empty>"``).

    Returns ``(fields bytes [N, nfields], line int64 [N])``.
    """
    nfields = fmt.nfields
    stream = Delimited(path, fmt, Drops(False))
    if header is not None:
        try:
            stream.read_header(header)
        except DataError:
            stream.close()
            raise
    cols = tuple(range(nfields))
    r = scan(stream, cols, lambda b, iss: {str(k): b.cols[k] for k in cols}, {str(k): "S1" for k in cols})
    if r["line"].shape[0] == 0:
        raise DataError(f"{path}: {empty}")
    width = max(r[str(k)].dtype.itemsize for k in cols)
    return np.stack([r[str(k)].astype(f"S{width}") for k in cols], axis=1), r["line"]
