"""A pandas DataFrame in: ids remapped, genres packed, bad values named by column and row."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import coda_jax as cj
from coda_jax.data.synthetic import generate
from tests.conftest import tiny_config

pd = pytest.importorskip("pandas")


def log_frame(seed: int = 0):
    """A tiny synthetic log as a DataFrame with the frame's own ids: users 'u<id>', items 10 * id, rows shuffled,
    genres as '|'-joined names; also the log it came from."""
    inter = generate(tiny_config().synthetic, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(inter))
    names = [["g%02d" % g for g in row if g] for row in inter.item_genres]
    df = pd.DataFrame({"uid": [f"u{u:03d}" for u in inter.user_ids[inter.user[order]]],
                       "iid": inter.item[order] * 10, "click": inter.label[order] > 0.5,
                       "ts": inter.time[order], "tags": ["|".join(names[i]) for i in inter.item[order]]},
                      index=order + 100)
    return df, inter


def test_ids_are_remapped_in_sorted_order_and_every_row_kept():
    df, _ = log_frame()
    inter = cj.interactions_from_frame(df, user="uid", item="iid", label="click", timestamp="ts", genres="tags")
    assert inter.name == "DataFrame" and len(inter) == len(df)
    users, items = np.unique(df["uid"]), np.unique(df["iid"])          # the reference: numpy's sorted vocabulary
    assert list(inter.user_ids) == list(users) and inter.num_items == items.size
    assert (inter.user_ids[inter.user] == df["uid"].to_numpy()).all()
    assert (items[inter.item - 1] == df["iid"].to_numpy()).all() and inter.item.min() == 1
    assert (inter.label == df["click"].to_numpy().astype(np.float32)).all()
    assert (inter.time == df["ts"].to_numpy()).all()
    names = sorted({g for t in df["tags"] for g in t.split("|") if g})
    assert inter.num_genres == len(names)
    for i, tags in zip(inter.item[:50], df["tags"][:50]):
        got = {names[g - 1] for g in inter.item_genres[i] if g}
        assert got == set(t for t in tags.split("|") if t)
    assert not inter.item_genres[0].any()                             # the padding item


def test_the_dataset_built_from_a_frame_is_the_dataset_of_the_same_log():
    df, inter = log_frame()
    cfg = tiny_config()
    df = df.assign(uid=df["uid"].str[1:].astype(int), iid=df["iid"] // 10)   # the log's own ids back
    mine = cj.make_dataset(cfg, cj.interactions_from_frame(df, user="uid", item="iid", label="click", timestamp="ts"))
    ref = cj.make_dataset(cfg, inter)
    item_of = np.concatenate([[0], np.unique(df["iid"])])      # the frame's dense item -> the log's (0: padding)
    for field in ("user", "label", "time"):
        assert (getattr(mine.table, field) == getattr(ref.table, field)).all(), field
    for field in ("item", "hist_pos", "hist_neg"):          # items the log never shows are not in the frame's ids
        assert (item_of[getattr(mine.table, field)] == getattr(ref.table, field)).all(), field
    assert (mine.heldout == ref.heldout).all() and (mine.users == ref.users).all()
    assert mine.table.num_genres == 0 and mine.info["source"] == "DataFrame"


def test_datetimes_are_unix_seconds_and_labels_may_be_numbers():
    df = pd.DataFrame({"user": [7, 7, 3], "item": ["b", "a", "b"], "label": [1.0, 0.0, 1],
                       "timestamp": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-02 00:00:00", "2020-01-01 00:00:00"])})
    inter = cj.interactions_from_frame(df)
    assert list(inter.time) == [10, 86400, 1577836800]
    assert list(inter.user_ids) == [3, 7] and list(inter.user) == [1, 1, 0] and list(inter.item) == [2, 1, 2]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.assign(label=[1, 2, 0]), r"column 'label', row 1 \(index 'y'\): labels must be 0 or 1, got 2"),
    (lambda d: d.assign(user=[1, None, 2]), r"column 'user', row 1 \(index 'y'\): missing user"),
    (lambda d: d.assign(item=[1.0, 2.5, 3.0]), r"column 'item', row 1 \(index 'y'\): item ids must be integers"),
    (lambda d: d.assign(timestamp=[1.5, 2, 3]), r"column 'timestamp', row 0 \(index 'x'\): timestamps must be"),
    (lambda d: d.assign(timestamp=["a", "b", "c"]), r"column 'timestamp', row 0 .*timestamps must be"),
    (lambda d: d.assign(label=["yes", 1, 0]), r"column 'label', row 0 .*labels must be 0 or 1, got 'yes'"),
    (lambda d: d.assign(item=[1, 1, 2], timestamp=[5, 5, 6]), r"row 1 \(index 'y'\): repeats row 0 \(index 'x'\)"),
    (lambda d: d.drop(columns="label"), r"no column 'label' for the label \(columns: user, item, timestamp\)"),
    (lambda d: d.iloc[:0], r"DataFrame: no rows"),
])
def test_bad_values_are_named_by_column_and_row(change, message):
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3], "label": [1, 0, 1], "timestamp": [5, 6, 7]},
                      index=["x", "y", "z"])
    with pytest.raises(cj.DataError, match=message):
        cj.interactions_from_frame(change(df))
    with pytest.raises(cj.DataError, match=r"column 'genres', row 2 .*an empty genre name"):
        cj.interactions_from_frame(df.assign(genres=["a", "a|b", "b||c"]), genres="genres")
    with pytest.raises(cj.DataError, match="expected a pandas DataFrame"):
        cj.interactions_from_frame({"user": [1]})


def test_the_library_imports_without_pandas():
    code = ("import sys; sys.modules['pandas'] = None\n"        # a None entry makes `import pandas` fail
            "import coda_jax as cj; print(cj.interactions_from_frame.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interactions_from_frame"
