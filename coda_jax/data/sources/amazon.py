"""Amazon reviews (McAuley et al. dumps): 5-core JSON lines or the ratings-only CSV, optional metadata for genres.

Options: ``data.amazon.meta_path`` (:class:`~coda_jax.config.AmazonConfig`).
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from coda_jax.data.ingest import BLOCK_BYTES, DataError, DropReport, Drops, iter_lines
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Delimited, LineFormat, scan_ratings
from coda_jax.data.tables import dedupe, densify, finish, genre_table, recorded, string_ids

__all__ = ["read_amazon"]

KIND, NEEDS = "file", "the reviews file (.json / .jsonl / .json.gz 5-core reviews, or the ratings-only .csv)"
_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_ASIN_RE = re.compile(rb"""["']asin["']\s*:\s*["']([^"']*)["']""")
_INT_RE = re.compile(r"\s*[+-]?\d{1,18}\s*", re.ASCII)
_KEYS = ("reviewerID", "asin", "overall", "unixReviewTime")


def _review(obj: Any) -> tuple:
    """One JSON review -> ``(reason, message, "", None)`` when it is bad, else ``(user, item, rating, time)``."""
    if not isinstance(obj, dict):
        return "bad_fields", f"expected a JSON object, got {type(obj).__name__}", "", None
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        return "bad_fields", f"missing key {missing[0]!r} (a review needs {', '.join(_KEYS)})", "", None
    u, it, r, t = (obj[k] for k in _KEYS)
    for name, v in (("reviewerID", u), ("asin", it)):
        if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v) == "":
            return "bad_value", f"field {name!r} must be a non-empty id, got {v!r}", "", None
    if isinstance(r, str):
        try:
            r = float(r)
        except ValueError:
            pass
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not (1.0 <= r <= 5.0):
        return "bad_rating", f"field 'overall' must be a number in 1..5, got {obj['overall']!r}", "", None
    if isinstance(t, float) and t.is_integer():
        t = int(t)
    if isinstance(t, str) and _INT_RE.fullmatch(t):
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, int):
        return "bad_value", f"field 'unixReviewTime' must be an integer, got {t!r}", "", None
    if not -(2**63) <= t < 2**63:
        return "bad_value", f"field 'unixReviewTime' is out of the int64 range, got {t!r}", "", None
    return str(u), str(it), float(r), t


def _json_reviews(path: Path, drops: Drops, like_threshold: float) -> dict[str, np.ndarray]:
    """Returns the kept reviews: ``user`` / ``item`` str [N], ``label`` bool [N], ``time`` / ``line`` int64 [N]."""
    rows: list[tuple[str, str, bool, int, int]] = []
    pending: list[int] = []
    for lineno, raw in iter_lines(path):
        if not raw.strip():
            pending.append(lineno)
            continue
        for b in pending:
            drops.one(path, b, "blank_line", "blank line between JSON lines")
        pending = []
        try:
            out = _review(json.loads(raw))
        except ValueError as e:  # UnicodeDecodeError (not UTF-8) included
            out = ("bad_fields", f"not valid JSON: {e}", "", None)
        except RecursionError:
            out = ("bad_fields", "not valid JSON: nested too deeply", "", None)
        if out[3] is None:
            drops.one(path, lineno, out[0], out[1])
            continue
        rows.append((out[0], out[1], out[2] >= like_threshold, out[3], lineno))
    cols = list(zip(*rows)) if rows else [[], [], [], [], []]
    return {"user": np.array(cols[0], dtype=str) if rows else np.zeros(0, "U1"),
            "item": np.array(cols[1], dtype=str) if rows else np.zeros(0, "U1"),
            "label": np.array(cols[2], bool), "time": np.array(cols[3], np.int64), "line": np.array(cols[4], np.int64)}


def _meta_categories(obj: dict) -> list[str]:
    """Returns the leaf category names of a metadata record: the last name of every path in ``categories``
    (list of lists, 2014 dumps) or of the single path ``category`` (a list, 2018 dumps)."""
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


def _meta(path: Path, wanted: set[str], drops: Drops) -> dict[str, list[str]]:
    """Returns asin -> leaf categories, for the asins in ``wanted``. JSON lines, or the Python-literal lines of
    the 2014 dumps; a bad line raises (or with ``skip_bad_rows`` counts under ``bad_meta``)."""
    out: dict[str, list[str]] = {}
    for lineno, raw in iter_lines(path):
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
                *, skip_bad_rows: bool = False, block_bytes: int = BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read an Amazon reviews file, format chosen by the file extension:

    * ``.json`` / ``.jsonl`` (``.gz``) -- 5-core JSON lines with ``reviewerID``, ``asin``, ``overall`` (1..5)
      and ``unixReviewTime``; other keys are ignored;
    * ``.csv`` (``.gz``) -- the ratings-only file, ``user,item,rating,timestamp`` with no header (the 2014
      ``ratings_*.csv`` order; files with another order: the ``csv`` source).

    String ids are densified in sorted order: users ``0..U-1`` (``user_ids`` is a str array of the reviewer
    ids), items ``1..I``. With ``meta_path`` (JSON lines -- or the Python-literal lines of the 2014 metadata
    dumps -- with ``asin`` and ``categories``: a list of category paths, or ``category``: one path) every
    item's genres are the leaf (last) names of its category paths, ids ``1..G`` in sorted name order; items
    without metadata get no genres. Without ``meta_path`` there are no genres (``num_genres = 0``). Rows keep
    the file order. Bad rows and repeats of an earlier (user, item, time) raise, or with ``skip_bad_rows`` are
    dropped and counted.

    Returns:
      ``(Interactions, DropReport)`` with ``name = str(path)``.
    """
    path = Path(path)
    lower = path.name.lower()
    drops = Drops(skip_bad_rows)
    if lower.endswith(_JSON_SUFFIXES):
        r = _json_reviews(path, drops, like_threshold)
        what = "reviews"
    elif lower.endswith(_CSV_SUFFIXES):
        stream = Delimited(path, LineFormat(b",", 4, "4 comma-separated fields (user, item, rating, timestamp)",
                                            quotes=True), drops, block_bytes)
        r = scan_ratings(stream, ("user", "item", "rating", "timestamp"), "str", (1.0, 5.0), like_threshold)
        what = "ratings"
    else:
        raise DataError(f"{path}: cannot tell the Amazon format from the file name; expected one ending in "
                        f"{', '.join(_JSON_SUFFIXES + _CSV_SUFFIXES)}")
    user_ids, user = densify(r["user"])
    item_vocab, item = densify(r["item"])
    keep = dedupe(path, drops, r["line"], (user, item, r["time"]), "user, item and timestamp")
    num_items = int(item_vocab.shape[0])
    item_genres, num_genres = np.zeros((num_items + 1, 1), np.int32), 0
    if meta_path is not None:
        names = [str(x) for x in string_ids(item_vocab)]
        cats = _meta(Path(meta_path), set(names), drops)
        item_genres, num_genres = genre_table({k + 1: cats[n] for k, n in enumerate(names) if cats.get(n)}, num_items)
    return finish(path, drops, str(path), (user[keep], item[keep] + 1, r["label"][keep], r["time"][keep]),
                  (item_genres, string_ids(user_ids), num_genres), what)


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``path``, ``amazon.meta_path``, shared
    options), its dropped rows recorded."""
    return recorded(*read_amazon(d.path, d.like_threshold, d.amazon.meta_path, skip_bad_rows=d.skip_bad_rows))
