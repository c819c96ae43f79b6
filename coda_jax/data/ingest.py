"""The data-ingest core, bottom layer: the error type, opening files, and the bad-row policy.

Every source module (:mod:`coda_jax.data.sources`) reads its files through :func:`open_binary` (a UTF-8
byte-order mark at the start of a file is skipped, ``.gz`` is decompressed on the fly) and applies one policy
to bad rows: a malformed line (wrong field count, non-numeric id or timestamp, rating out of range, unknown
behavior, blank line between data lines) or a duplicate row raises :class:`DataError` naming the file, the
1-based line and the field -- unless ``skip_bad_rows`` (``data.skip_bad_rows``) is set, in which case the row is
dropped and counted in a :class:`DropReport` (by reason, with the first such line). Nothing is dropped silently.

The layers above: :mod:`coda_jax.data.parse` (the one integer / number parser, line splitting),
:mod:`coda_jax.data.stream` (delimited files streamed in blocks of whole lines, JSON lines),
:mod:`coda_jax.data.tables` (duplicates, dense ids, genre tables, the finished log).
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["DataError", "DropReport", "DROP_REASONS", "Drops", "Issues", "open_binary", "iter_lines", "BLOCK_BYTES",
           "READ_ERRORS"]

BLOCK_BYTES = 8 << 20
"""Default block size of streamed reads (whole lines of about this many bytes at a time)."""

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

_BOM = b"\xef\xbb\xbf"
READ_ERRORS = (OSError, EOFError, zlib.error)
"""What reading a file (``.gz`` included: truncated / corrupt streams) can raise."""


class DataError(ValueError):
    """Malformed or missing dataset input. The message names the file (and line / field where it applies)."""


def open_binary(path: Path):
    """Open a data file for reading bytes, positioned after a UTF-8 byte-order mark if the file starts with one.

    Returns a binary file object (``.gz`` files decompressed on the fly). Raises :class:`DataError` for a
    missing file, a directory, or a first block that cannot be read (e.g. not gzip data).
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
    except READ_ERRORS as e:  # e.g. not gzip data, a corrupt first deflate block
        f.close()
        raise DataError(f"{path} line 1: cannot read file: {e}") from e
    return f


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yields ``(1-based line number, raw line bytes)`` of a file (JSON lines; the BOM skipped); a read error
    part-way raises naming the line."""
    f = open_binary(path)
    i = 0
    try:
        for i, raw in enumerate(f, 1):
            yield i, raw
    except READ_ERRORS as e:
        raise DataError(f"{path} line {i + 1}: cannot read file from here on: {e}") from e
    finally:
        f.close()


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
        """Count ``n`` more rows under ``reason`` (``where``: the first one's place, kept if it is the first)."""
        if n <= 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + int(n)
        if where is not None and reason not in self.first:
            self.first[reason] = where

    @property
    def total(self) -> int:
        """Returns the number of rows dropped for any reason."""
        return int(sum(self.counts.values()))

    def __getitem__(self, reason: str) -> int:
        return self.counts.get(reason, 0)

    def to_dict(self) -> dict[str, int]:
        """Returns the counts as a plain dict (what goes into a dataset's info under ``dropped_rows``)."""
        return dict(self.counts)

    def summary(self) -> str:
        """Returns one line naming every reason, its count and first place (or ``no rows dropped``)."""
        if not self.counts:
            return "no rows dropped"
        return ", ".join(f"{k}: {v} (first: {self.first.get(k, '?')})" for k, v in self.counts.items())


class Drops:
    """The bad-row policy: raise on the first bad row, or drop and count it (``skip``) in ``report``."""

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
        """Rows ``mask`` (bool [N]) are bad: raise naming the first, or count them. Returns the keep mask
        (``~mask``, bool [N])."""
        if mask.any():
            idx = np.flatnonzero(mask)
            i = int(idx[np.argmin(lines[idx])])
            self.one(path, int(lines[i]), reason, msg(i), hint)
            self.report.add(reason, int(mask.sum()) - 1)
        return ~mask


class Issues:
    """Bad rows of one block, by check; resolved together so the error names the earliest bad line."""

    def __init__(self, path: Path, lines: np.ndarray):
        self.path = path
        self.lines = lines
        self.items: list[tuple[np.ndarray, str, Callable[[int], str]]] = []

    def add(self, mask: np.ndarray, reason: str, msg: Callable[[int], str]) -> None:
        """Rows ``mask`` (bool [n]) fail a check counted under ``reason``; ``msg(i)`` describes row ``i``."""
        if mask.any():
            self.items.append((mask, reason, msg))

    def resolve(self, drops: Drops) -> np.ndarray | None:
        """Raise on the earliest bad line (``drops.skip`` false), else count every bad row once (under its
        first failing check). Returns the keep mask (bool [n]), or ``None`` when every row is good."""
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
