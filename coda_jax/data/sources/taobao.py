"""Taobao ``UserBehavior.csv`` (Tianchi): ``user_id,item_id,category_id,behavior,timestamp``, no header.

Options: ``data.taobao`` (:class:`~coda_jax.config.TaobaoConfig`): which behaviors are positives, or
implicit labels with sampled negatives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from coda_jax.config import TAOBAO_BEHAVIORS
from coda_jax.data.implicit import sampled_negatives
from coda_jax.data.ingest import BLOCK_BYTES, DropReport, Drops, Issues
from coda_jax.data.parse import id_checks, show
from coda_jax.data.schema import Interactions
from coda_jax.data.stream import Block, Delimited, LineFormat, scan
from coda_jax.data.tables import dedupe, densify, finish, pack_genres, recorded, stable_order

__all__ = ["read_taobao", "TAOBAO_LABEL_RULE"]

KIND, NEEDS = "file", "UserBehavior.csv"
TAOBAO_LABEL_RULE = {b: int(b != "pv") for b in TAOBAO_BEHAVIORS}  # pv 0; buy, cart, fav 1
"""Default Taobao label of each behavior: page views are negatives, buy / cart / fav positives."""


def read_taobao(path: str | os.PathLike, label_rule: Mapping[str, int] | None = None, *, skip_bad_rows: bool = False,
                block_bytes: int = BLOCK_BYTES) -> tuple[Interactions, DropReport]:
    """Read Taobao ``UserBehavior.csv``.

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
    drops = Drops(skip_bad_rows)
    stream = Delimited(path, LineFormat(b",", 5, "5 comma-separated fields (user_id, item_id, category_id, "
                                        "behavior, timestamp)"), drops, block_bytes)

    def parse(b: Block, iss: Issues) -> dict[str, np.ndarray]:
        out = {"user": id_checks(iss, b.cols[0], "user_id"), "item": id_checks(iss, b.cols[1], "item_id"),
               "cat": id_checks(iss, b.cols[2], "category_id")}
        bcol = b.cols[3]
        beh = np.full(bcol.shape[0], -1, np.int8)
        for name, k in codes.items():
            beh[bcol == name] = k
        for i in np.flatnonzero(beh < 0):  # tolerate surrounding whitespace
            beh[i] = codes.get(bcol[i].strip(), -1)
        iss.add(beh < 0, "unknown_behavior",
                lambda i: f"field 'behavior' must be one of {', '.join(names)}, got {show(bcol[i])}")
        return {**out, "beh": beh, "time": id_checks(iss, b.cols[4], "timestamp", signed=True)}

    r = scan(stream, (0, 1, 2, 3, 4), parse,
             {"user": np.int64, "item": np.int64, "cat": np.int64, "beh": np.int8, "time": np.int64})
    user_ids, user = densify(r["user"].astype(np.int64))
    item_vocab, item = densify(r["item"].astype(np.int64))
    cat_vocab, cat = densify(r["cat"].astype(np.int64))
    keep = dedupe(path, drops, r["line"], (user, item, r["time"], cat, r["beh"]),
                  "user, item, category, behavior and timestamp")
    user, item, cat, beh, time = user[keep], item[keep], cat[keep], r["beh"][keep], r["time"][keep]
    order = stable_order((user, time))  # ties keep the file order
    item_genres = pack_genres(int(item_vocab.shape[0]), item + 1, cat + 1, int(cat_vocab.shape[0]))
    return finish(path, drops, str(path), (user[order], item[order] + 1, rule_labels[beh[order]], time[order]),
                  (item_genres, user_ids.astype(np.int64), int(cat_vocab.shape[0])), "rows")


def load(d, seed: int) -> Interactions:
    """Returns the log named by a :class:`~coda_jax.config.DataConfig` (``path``, ``taobao.*``, shared options),
    its dropped rows recorded: labelled by ``taobao.label_behaviors``, or with ``taobao.implicit_labels:
    sampled_negatives`` every interaction a positive plus ``taobao.negatives`` sampled negatives (``seed``)."""
    t = d.taobao
    rule = {b: int(b in t.label_behaviors) for b in TAOBAO_LABEL_RULE}
    inter = recorded(*read_taobao(d.path, rule, skip_bad_rows=d.skip_bad_rows))
    if t.implicit_labels == "sampled_negatives":
        inter = sampled_negatives(inter, t.negatives, seed)
    return inter
