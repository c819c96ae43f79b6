"""Tests for the data pipeline: features, splits, synthetic generator, dataset assembly, packing, local vocab.

Every check compares against a plain-python reference built inside the test on tiny random data.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import numpy as np
import pytest

from coda_jax.config import Config, DataConfig, SyntheticConfig
from coda_jax.data.dataset import filter_users, make_dataset
from coda_jax.data.features import build_samples
from coda_jax.data.packing import bucket_size, csr_from_owner, pad_rows
from coda_jax.data.ingest import DataError
from coda_jax.data.schema import FEATURE_KEYS, Interactions
from coda_jax.data.split import global_time_split, temporal_split, user_offsets
from coda_jax.data.synthetic import generate
from coda_jax.device.submodel import local_vocab

# ----------------------------------------------------------------------------- helpers


def random_log(seed: int, num_users: int = 7, num_items: int = 25, num_genres: int = 4,
               rows: tuple[int, int] = (1, 18), time_range: int = 9, name: str = "toylog") -> Interactions:
    """A shuffled random log; small ``time_range`` makes many equal timestamps within a user."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(rows[0], rows[1] + 1, size=num_users)
    user = np.repeat(np.arange(num_users), counts)
    n = user.size
    perm = rng.permutation(n)          # the log is not sorted by user or time
    user = user[perm]
    item = rng.integers(1, num_items + 1, size=n)
    label = (rng.random(n) < 0.5).astype(np.float32)
    time = rng.integers(0, time_range, size=n).astype(np.int64) * 1000 + 17
    genres = np.zeros((num_items + 1, 2), dtype=np.int32)
    genres[1:, 0] = rng.integers(1, num_genres + 1, size=num_items)
    genres[1:, 1] = rng.integers(0, num_genres + 1, size=num_items)
    return Interactions(user=user.astype(np.int32), item=item.astype(np.int32), label=label, time=time,
                        item_genres=genres, user_ids=np.arange(num_users, dtype=np.int64) * 10 + 1000,
                        num_genres=num_genres, name=name)


def ref_samples(inter: Interactions, L: int):
    """Pure-python reference of build_samples.

    Row order: (user, time, position in log). History of a row: the same user's rows with a strictly
    earlier timestamp, most recent first, where among equal timestamps the later row in the log is more
    recent; the first L liked (label 1) go to hist_pos, the first L disliked to hist_neg; 0-padded.
    """
    n = len(inter)
    U, I, T, Y = (inter.user.tolist(), inter.item.tolist(), inter.time.tolist(), inter.label.tolist())
    order = sorted(range(n), key=lambda i: (U[i], T[i], i))
    pos_rows, neg_rows = [], []
    for i in order:
        earlier = [j for j in range(n) if U[j] == U[i] and T[j] < T[i]]
        earlier.sort(key=lambda j: (T[j], j), reverse=True)
        liked = [I[j] for j in earlier if Y[j] == 1.0][:L]
        disliked = [I[j] for j in earlier if Y[j] == 0.0][:L]
        pos_rows.append(liked + [0] * (L - len(liked)))
        neg_rows.append(disliked + [0] * (L - len(disliked)))
    return order, np.array(pos_rows, dtype=np.int64), np.array(neg_rows, dtype=np.int64)


def ref_split(user: np.ndarray, frac: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Per user (table order), the last max(1, round(frac * n)) participating rows, never all of them."""
    n_all = len(user)
    rows = np.ones(n_all, dtype=bool) if rows is None else rows
    by_user = defaultdict(list)
    for i in range(n_all):
        if rows[i]:
            by_user[int(user[i])].append(i)
    held = np.zeros(n_all, dtype=bool)
    for idx in by_user.values():
        n = len(idx)
        if n <= 1:
            continue
        n_out = min(max(1, round(frac * n)), n - 1)
        for i in idx[n - n_out:]:
            held[i] = True
    return held


# ----------------------------------------------------------------------------- build_samples


@pytest.mark.parametrize("seed, L", [(0, 3), (1, 5), (2, 1), (3, 30)])
def test_build_samples_matches_reference(seed, L):
    inter = random_log(seed)
    # the log really has duplicate timestamps within a user (the tie rules are exercised)
    pairs = Counter(zip(inter.user.tolist(), inter.time.tolist()))
    assert max(pairs.values()) >= 2
    t = build_samples(inter, L)
    order, hp, hn = ref_samples(inter, L)
    order = np.array(order)
    assert len(t) == len(inter)
    np.testing.assert_array_equal(t.user, inter.user[order])
    np.testing.assert_array_equal(t.item, inter.item[order])
    np.testing.assert_array_equal(t.label, inter.label[order])
    np.testing.assert_array_equal(t.time, inter.time[order])
    np.testing.assert_array_equal(t.hist_pos, hp)
    np.testing.assert_array_equal(t.hist_neg, hn)
    np.testing.assert_array_equal(t.genres, inter.item_genres[inter.item[order]])
    assert t.hist_pos.shape == (len(inter), L) and t.history_len == L
    assert t.hist_pos.dtype == np.int32 and t.hist_neg.dtype == np.int32 and t.genres.dtype == np.int32
    np.testing.assert_array_equal(t.user_ids, inter.user_ids)
    assert (t.num_items, t.num_genres, t.name) == (inter.num_items, inter.num_genres, inter.name)
    # sorted by (user, time)
    key = t.user.astype(np.int64) * 10**9 + t.time
    assert np.all(np.diff(key) >= 0)
    feats = t.features(np.array([0, 2]))
    assert tuple(feats) == FEATURE_KEYS
    np.testing.assert_array_equal(feats["hist_pos"], hp[[0, 2]])


def test_build_samples_distinct_times_unambiguous():
    # With distinct timestamps the tie rule does not matter: only the strict-earlier / recency rule does.
    inter = random_log(5, time_range=10**6)
    assert len(set(zip(inter.user.tolist(), inter.time.tolist()))) == len(inter)
    t = build_samples(inter, 4)
    order, hp, hn = ref_samples(inter, 4)
    np.testing.assert_array_equal(t.hist_pos, hp)
    np.testing.assert_array_equal(t.hist_neg, hn)


def test_build_samples_hand_example():
    # one user, log order: (item, label, time)
    rows = [(5, 1, 30), (3, 1, 10), (7, 0, 20), (9, 1, 20), (4, 1, 10), (8, 0, 40)]
    # second user interleaved
    rows2 = [(2, 1, 5), (6, 1, 35)]
    user = [0] * len(rows) + [1] * len(rows2)
    allr = rows + rows2
    inter = Interactions(
        user=np.array(user, np.int32), item=np.array([r[0] for r in allr], np.int32),
        label=np.array([r[1] for r in allr], np.float32), time=np.array([r[2] for r in allr], np.int64),
        item_genres=np.zeros((11, 1), np.int32), user_ids=np.array([0, 1]), num_genres=1, name="hand")
    t = build_samples(inter, 2)
    # user 0 sorted: t10:(3,1),(4,1) ; t20:(7,0),(9,1) ; t30:(5,1) ; t40:(8,0)
    np.testing.assert_array_equal(t.item, [3, 4, 7, 9, 5, 8, 2, 6])
    np.testing.assert_array_equal(t.hist_pos, [
        [0, 0], [0, 0],        # t=10: nothing strictly earlier
        [4, 3], [4, 3],        # t=20: liked at t=10, later-in-log (4) is more recent
        [9, 4], [5, 9],        # t=30: 9 (t20) then 4 ; t=40: 5, 9
        [0, 0], [2, 0]])       # user 1
    np.testing.assert_array_equal(t.hist_neg, [
        [0, 0], [0, 0], [0, 0], [0, 0], [7, 0], [7, 0], [0, 0], [0, 0]])


def test_build_samples_errors():
    inter = random_log(0)
    empty = dataclasses.replace(inter, user=inter.user[:0], item=inter.item[:0], label=inter.label[:0],
                                time=inter.time[:0], name="my-empty-dataset")
    with pytest.raises(ValueError, match="my-empty-dataset"):
        build_samples(empty, 3)
    with pytest.raises(ValueError):
        build_samples(inter, 0)


# ----------------------------------------------------------------------------- temporal_split


def test_user_offsets():
    user = np.array([0, 0, 0, 2, 5, 5])
    rank, count = user_offsets(user)
    np.testing.assert_array_equal(rank, [0, 1, 2, 0, 0, 1])
    np.testing.assert_array_equal(count, [3, 3, 3, 1, 2, 2])


@pytest.mark.parametrize("seed, frac", [(0, 0.2), (1, 0.5), (2, 0.34), (3, 0.9), (4, 0.01)])
def test_temporal_split_matches_reference(seed, frac):
    inter = random_log(seed, num_users=9, rows=(1, 12))
    t = build_samples(inter, 2)
    held = temporal_split(t, frac)
    np.testing.assert_array_equal(held, ref_split(t.user, frac))
    counts = np.bincount(t.user, minlength=t.num_users)
    held_counts = np.bincount(t.user[held], minlength=t.num_users)
    assert np.all(held_counts < np.maximum(counts, 1))       # never all rows of a user
    assert np.all(held_counts[counts >= 2] >= 1)             # at least one when possible
    assert np.all(held_counts[counts == 1] == 0)
    # held-out rows are each user's latest: no held row is before a kept row of the same user
    for u in range(t.num_users):
        r = np.flatnonzero(t.user == u)
        h = held[r]
        assert not np.any(h[:-1] & ~h[1:])


@pytest.mark.parametrize("seed, frac", [(0, 0.3), (1, 0.5), (6, 0.25)])
def test_temporal_split_restricted_rows(seed, frac):
    inter = random_log(seed, num_users=9, rows=(1, 14))
    t = build_samples(inter, 2)
    rng = np.random.default_rng(seed + 100)
    rows = rng.random(len(t)) < 0.6
    held = temporal_split(t, frac, rows=rows)
    np.testing.assert_array_equal(held, ref_split(t.user, frac, rows))
    assert not np.any(held & ~rows)                     # non-participating rows are never held out
    # no participating rows at all: nothing held out
    np.testing.assert_array_equal(temporal_split(t, frac, rows=np.zeros(len(t), bool)), np.zeros(len(t), bool))


def test_temporal_split_bad_fraction():
    t = build_samples(random_log(0), 2)
    for f in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            temporal_split(t, f)


# ----------------------------------------------------------------------------- synthetic


SYN = SyntheticConfig(num_users=25, num_items=60, num_genres=5, num_user_groups=3, num_item_clusters=4,
                      min_rows_per_user=4, max_rows_per_user=12)


def _fields(inter):
    return (inter.user, inter.item, inter.label, inter.time, inter.item_genres, inter.user_ids)


def test_synthetic_deterministic_and_seed_dependent():
    a, b, c = generate(SYN, 3), generate(SYN, 3), generate(SYN, 4)
    for x, y in zip(_fields(a), _fields(b)):
        np.testing.assert_array_equal(x, y)
    assert a.name == b.name
    same_shape = a.user.shape == c.user.shape
    assert not (same_shape and np.array_equal(a.item, c.item) and np.array_equal(a.time, c.time))


def test_synthetic_invariants():
    for seed in (0, 1):
        inter = generate(SYN, seed)
        assert inter.num_users == SYN.num_users and inter.num_items == SYN.num_items
        assert inter.num_genres == SYN.num_genres
        counts = np.bincount(inter.user, minlength=SYN.num_users)
        assert counts.shape == (SYN.num_users,)
        assert counts.min() >= SYN.min_rows_per_user and counts.max() <= SYN.max_rows_per_user
        pairs = list(zip(inter.user.tolist(), inter.item.tolist()))
        assert len(set(pairs)) == len(pairs)                     # no duplicate (user, item)
        assert inter.item.min() >= 1 and inter.item.max() <= SYN.num_items
        assert set(np.unique(inter.label).tolist()) <= {0.0, 1.0}
        g = inter.item_genres
        assert g.shape[0] == SYN.num_items + 1
        assert np.all(g[0] == 0)                                 # padding item has no genres
        assert g.min() >= 0 and g.max() <= SYN.num_genres
        assert np.all(g[1:, 0] >= 1)                             # every real item has a main genre
        assert inter.time.dtype == np.int64 and inter.time.min() >= 0
        assert len(inter.user) == len(inter.item) == len(inter.label) == len(inter.time)


def test_synthetic_exact_row_bounds():
    cfg = dataclasses.replace(SYN, min_rows_per_user=7, max_rows_per_user=7)
    inter = generate(cfg, 0)
    assert np.all(np.bincount(inter.user, minlength=cfg.num_users) == 7)


# ----------------------------------------------------------------------------- filter_users / make_dataset


def test_filter_users_matches_reference():
    inter = random_log(11, num_users=10, rows=(1, 9))
    min_rows = 5
    counts = Counter(inter.user.tolist())
    kept = [u for u in range(inter.num_users) if counts[u] >= min_rows]
    assert 0 < len(kept) < inter.num_users
    out, dropped = filter_users(inter, min_rows)
    assert dropped == inter.num_users - len(kept)
    np.testing.assert_array_equal(out.user_ids, inter.user_ids[kept])
    new = {u: i for i, u in enumerate(kept)}
    ref = [(new[u], it, lb, tm) for u, it, lb, tm in
           zip(inter.user.tolist(), inter.item.tolist(), inter.label.tolist(), inter.time.tolist()) if u in new]
    got = list(zip(out.user.tolist(), out.item.tolist(), out.label.tolist(), out.time.tolist()))
    assert got == ref
    assert out.num_users == len(kept)
    assert np.all(np.bincount(out.user, minlength=out.num_users) >= min_rows)
    np.testing.assert_array_equal(out.item_genres, inter.item_genres)
    # nothing to drop: same log back
    same, d0 = filter_users(inter, 1)
    assert d0 == 0 and same.num_users == inter.num_users
    np.testing.assert_array_equal(same.user, inter.user)
    # nobody has enough rows
    with pytest.raises(DataError):
        filter_users(inter, 10**6)


def _cfg(**data_kw) -> Config:
    return dataclasses.replace(Config(), data=dataclasses.replace(DataConfig(), history_len=3, **data_kw))


def _check_table_is_filtered_log(ds, inter, min_rows):
    counts = Counter(inter.user.tolist())
    kept = [u for u in range(inter.num_users) if counts[u] >= min_rows]
    t = ds.table
    np.testing.assert_array_equal(t.user_ids, inter.user_ids[kept])
    want = Counter((int(inter.user_ids[u]), it, tm, lb) for u, it, tm, lb in zip(
        inter.user.tolist(), inter.item.tolist(), inter.time.tolist(), inter.label.tolist()) if counts[u] >= min_rows)
    got = Counter((int(t.user_ids[u]), it, tm, lb) for u, it, tm, lb in zip(
        t.user.tolist(), t.item.tolist(), t.time.tolist(), t.label.tolist()))
    assert got == want
    return kept


def test_make_dataset_test_split():
    inter = random_log(21, num_users=12, rows=(1, 14))
    cfg = _cfg(min_rows_per_user=4, test_fraction=0.25)
    ds = make_dataset(cfg, inter)
    kept = _check_table_is_filtered_log(ds, inter, 4)
    t = ds.table
    test = ref_split(t.user, 0.25)
    np.testing.assert_array_equal(ds.heldout, test)
    np.testing.assert_array_equal(ds.train, ~test)
    users = [u for u in range(t.num_users) if (ds.train & (t.user == u)).any() and (test & (t.user == u)).any()]
    np.testing.assert_array_equal(ds.users, users)
    assert ds.info["users_dropped_min_rows"] == inter.num_users - len(kept)
    assert ds.info["users_in_file"] == inter.num_users
    assert ds.info["rows"] == len(t) and ds.info["simulated_users"] == len(users)
    assert ds.info["train_rows"] == int((~test).sum()) and ds.info["heldout_rows"] == int(test.sum())
    np.testing.assert_array_equal(ds.pool, ds.train)        # no device-only rows by default


@pytest.mark.parametrize("eval_on", ["test", "validation"])
def test_device_only_rows_are_each_users_latest_training_rows(eval_on):
    """The pool is the training rows minus each user's latest device_only_fraction of them (the python
    reference split applied to the training rows)."""
    inter = random_log(26, num_users=12, rows=(2, 16))
    cfg = _cfg(min_rows_per_user=2, test_fraction=0.25, eval_on=eval_on, device_only_fraction=0.4)
    ds = make_dataset(cfg, inter)
    t = ds.table
    want = ds.train & ~ref_split(t.user, 0.4, rows=ds.train)
    np.testing.assert_array_equal(ds.pool, want)
    np.testing.assert_array_equal(ds.train, make_dataset(_cfg(min_rows_per_user=2, test_fraction=0.25,
                                                               eval_on=eval_on), inter).train)
    assert not np.any(ds.pool & ds.heldout)
    assert ds.info["pool_rows"] == int(want.sum()) < ds.info["train_rows"]


def test_make_dataset_validation_never_touches_test_rows():
    inter = random_log(22, num_users=12, rows=(2, 16))
    cfg = _cfg(min_rows_per_user=3, test_fraction=0.3, eval_on="validation", validation_fraction=0.4)
    ds = make_dataset(cfg, inter)
    _check_table_is_filtered_log(ds, inter, 3)
    t = ds.table
    test = ref_split(t.user, 0.3)                   # the original test split, computed independently
    orig_train = ~test
    val = ref_split(t.user, 0.4, rows=orig_train)
    assert not np.any(ds.train & test) and not np.any(ds.heldout & test)
    assert np.all(orig_train[ds.heldout])           # heldout is a subset of original training rows
    assert not np.any(ds.train & ds.heldout)
    np.testing.assert_array_equal(ds.heldout, val)
    np.testing.assert_array_equal(ds.train, orig_train & ~val)
    assert ds.heldout.any()
    assert ds.info["eval_on"] == "validation"
    # every heldout row of a user is later than (or tied in table order after) its remaining train rows
    for u in range(t.num_users):
        r = np.flatnonzero(t.user == u)
        if ds.heldout[r].any() and ds.train[r].any():
            assert r[ds.train[r]].max() < r[ds.heldout[r]].min()


@pytest.mark.parametrize("eval_on", ["test", "validation"])
def test_make_dataset_global_time_split(eval_on):
    """One timestamp cuts every user: held-out rows are exactly those at or after it (a python reference)."""
    inter = random_log(24, num_users=12, rows=(2, 16))
    cfg = _cfg(min_rows_per_user=2, test_fraction=0.3, split="global_time", eval_on=eval_on,
               validation_fraction=0.25)
    ds = make_dataset(cfg, inter)
    times = sorted(ds.table.time.tolist())
    cut = times[int(np.ceil(0.7 * (len(times) - 1)))]         # numpy's 'higher' quantile, by hand
    test = np.array([tm >= cut for tm in ds.table.time.tolist()])
    if eval_on == "test":
        np.testing.assert_array_equal(ds.heldout, test)
        np.testing.assert_array_equal(ds.train, ~test)
    else:
        train_times = sorted(tm for tm, te in zip(ds.table.time.tolist(), test) if not te)
        vcut = train_times[int(np.ceil(0.75 * (len(train_times) - 1)))]
        val = np.array([(not te) and tm >= vcut for tm, te in zip(ds.table.time.tolist(), test)])
        np.testing.assert_array_equal(ds.heldout, val)
        np.testing.assert_array_equal(ds.train, ~test & ~val)
    assert ds.table.time[ds.train].max() < ds.table.time[ds.heldout].min()
    t = ds.table
    users = [u for u in range(t.num_users) if (ds.train & (t.user == u)).any() and (ds.heldout & (t.user == u)).any()]
    np.testing.assert_array_equal(ds.users, users)
    assert ds.info["split"] == "global_time"


def test_global_time_split_bad_fraction_and_empty_rows():
    t = build_samples(random_log(0), 2)
    for f in (0.0, 1.0):
        with pytest.raises(ValueError):
            global_time_split(t, f)
    assert not global_time_split(t, 0.5, rows=np.zeros(len(t), bool)).any()


def test_make_dataset_min_test_rows():
    inter = random_log(25, num_users=14, rows=(2, 20))
    ds = make_dataset(_cfg(min_rows_per_user=2, test_fraction=0.3, min_test_rows=3), inter)
    t = ds.table
    n_train = np.bincount(t.user[ds.train], minlength=t.num_users)
    n_held = np.bincount(t.user[ds.heldout], minlength=t.num_users)
    want = [u for u in range(t.num_users) if n_train[u] > 0 and n_held[u] >= 3]
    np.testing.assert_array_equal(ds.users, want)
    assert 0 < len(want) < t.num_users
    assert ds.info["users_below_min_test_rows"] == sum(1 for u in range(t.num_users) if n_train[u] > 0 and 0 < n_held[u] < 3)
    np.testing.assert_array_equal(ds.train, ~ref_split(t.user, 0.3))    # the pool keeps everyone's rows


def test_make_dataset_max_users():
    inter = random_log(23, num_users=12, rows=(3, 10))
    full = make_dataset(_cfg(min_rows_per_user=3), inter)
    capped = make_dataset(_cfg(min_rows_per_user=3, max_users=4), inter)
    assert full.users.size > 4
    np.testing.assert_array_equal(capped.users, full.users[:4])
    # the pool (table, train mask) keeps everyone
    np.testing.assert_array_equal(capped.train, full.train)
    np.testing.assert_array_equal(capped.table.user, full.table.user)
    assert capped.info["simulated_users"] == 4


# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize("n, mb", [(0, 1), (1, 1), (1, 16), (16, 16), (17, 16), (100, 4), (3, 10), (64, 1), (65, 1)])
def test_bucket_size(n, mb):
    b = 1
    while b < max(n, mb):
        b *= 2
    assert bucket_size(n, mb) == b


def _ref_csr(owner, rows, num_owners):
    groups = [[] for _ in range(num_owners)]
    for o, r in zip(owner.tolist(), rows.tolist()):
        groups[o].append(r)
    offsets = [0]
    for g in groups:
        offsets.append(offsets[-1] + len(g))
    return offsets, [r for g in groups for r in g]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_csr_from_owner(seed):
    rng = np.random.default_rng(seed)
    num_owners = 6
    owner = rng.integers(0, num_owners - 1, size=30)       # the last owner has no rows
    rows = rng.integers(0, 1000, size=30)
    offsets, out = csr_from_owner(owner, rows, num_owners)
    ro, rr = _ref_csr(owner, rows, num_owners)
    assert offsets.tolist() == ro and out.tolist() == rr
    assert offsets.dtype == np.int64 and out.dtype == np.int64


@pytest.mark.parametrize("seed, width", [(0, 4), (1, 7), (2, 1), (3, 20)])
def test_pad_rows(seed, width):
    rng = np.random.default_rng(seed)
    num_owners = 8
    owner = rng.integers(0, num_owners, size=40)
    rows = rng.integers(1, 500, size=40)
    offsets, flat = csr_from_owner(owner, rows, num_owners)
    owners = np.array([3, -1, 0, 7, 3, -1, 5, 1, 2, 4, 6])
    index, mask = pad_rows(offsets, flat, owners, width)
    assert index.shape == mask.shape == (len(owners), width) and index.dtype == np.int64
    for i, o in enumerate(owners.tolist()):
        mine = [] if o < 0 else flat[offsets[o]:offsets[o + 1]].tolist()[:width]
        assert mask[i].tolist() == [j < len(mine) for j in range(width)]
        assert index[i].tolist() == mine + [0] * (width - len(mine))


def test_pad_rows_empty_rows():
    offsets = np.zeros(4, dtype=np.int64)
    index, mask = pad_rows(offsets, np.zeros(0, np.int64), np.array([0, -1, 2]), 3)
    assert index.shape == (3, 3) and not mask.any() and not index.any()


# ----------------------------------------------------------------------------- local_vocab


@pytest.mark.parametrize("seed, shape, high", [(0, (5, 9), 6), (1, (4, 12), 40), (2, (3, 1), 3), (3, (6, 20), 1000)])
def test_local_vocab(seed, shape, high):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, high, size=shape)
    ids[rng.random(shape) < 0.3] = 0
    ids[0, :] = 0                              # an all-padding row
    vocab, remapped, size = local_vocab(ids)
    u, m = shape
    assert vocab.shape == (u, m + 1) and remapped.shape == (u, m)
    for r in range(u):
        want = sorted(set(ids[r].tolist()) | {0})
        assert int(size[r]) == len(want)
        assert vocab[r, : len(want)].tolist() == want
        assert not vocab[r, len(want):].any()
        for j in range(m):
            assert vocab[r, remapped[r, j]] == ids[r, j]
            assert 0 <= remapped[r, j] < len(want)
    assert vocab[0, 0] == 0 and size[0] == 1 and not remapped[0].any()


# ----------------------------------------------------------------------------- held-out rows need both classes


def _labelled_log(label_of) -> Interactions:
    """4 users x 10 rows at times 0..9; ``label_of(user, time)`` -> 0/1. With test_fraction 0.2 each user's
    test rows are times 8, 9; with eval_on validation (fraction 0.25 of the 8 training rows) times 6, 7."""
    user = np.repeat(np.arange(4), 10)
    time = np.tile(np.arange(10), 4).astype(np.int64)
    label = np.array([label_of(u, t) for u, t in zip(user.tolist(), time.tolist())], np.float32)
    genres = np.zeros((6, 1), np.int32)
    return Interactions(user=user.astype(np.int32), item=(time % 5 + 1).astype(np.int32), label=label, time=time,
                        item_genres=genres, user_ids=np.arange(4, dtype=np.int64), num_genres=0, name="toy.csv")


def test_make_dataset_refuses_when_every_label_is_the_same():
    with pytest.raises(DataError, match=r"^toy\.csv: no simulated user's held-out \(test\) rows hold both classes "
                                        r"\(every one of their 8 rows is labelled 1, 4 users\)"):
        make_dataset(_cfg(test_fraction=0.2), _labelled_log(lambda u, t: 1))


def test_make_dataset_checks_the_held_out_rows_not_the_whole_log():
    # both classes in the log and in every user's rows, but each user's test rows are all 0 or all 1
    log = _labelled_log(lambda u, t: int(t >= 8) if u % 2 else int(t < 8))
    with pytest.raises(DataError, match=r"held-out \(test\) rows hold both classes \(each user's test rows are "
                                        r"all positive or all negative, 4 users\)"):
        make_dataset(_cfg(test_fraction=0.2), log)
    # one user whose test rows are mixed is enough
    ds = make_dataset(_cfg(test_fraction=0.2), _labelled_log(lambda u, t: int(t >= 8) if u != 2 else t % 2))
    assert ds.users.tolist() == [0, 1, 2, 3]


def test_make_dataset_checks_the_rows_it_evaluates_on():
    # validation rows (times 6, 7) mixed, test rows (times 8, 9) all 0
    log = _labelled_log(lambda u, t: int(t == 7))
    ds = make_dataset(_cfg(test_fraction=0.2, eval_on="validation", validation_fraction=0.25), log)
    assert ds.info["simulated_users"] == 4 and ds.table.label[ds.heldout].tolist() == [0, 1] * 4
    with pytest.raises(DataError, match=r"held-out \(test\) rows hold both classes \(every one of their 8 rows "
                                        r"is labelled 0"):
        make_dataset(_cfg(test_fraction=0.2), log)
    # and the other way round: test rows mixed, validation rows all 1
    log = _labelled_log(lambda u, t: int(t != 9))
    make_dataset(_cfg(test_fraction=0.2), log)
    with pytest.raises(DataError, match=r"held-out \(validation\) rows hold both classes \(every one of their 8 "
                                        r"rows is labelled 1"):
        make_dataset(_cfg(test_fraction=0.2, eval_on="validation", validation_fraction=0.25), log)


def test_make_dataset_checks_only_the_simulated_users():
    log = _labelled_log(lambda u, t: int(t >= 8) if u < 3 else t % 2)  # only user 3's test rows are mixed
    assert make_dataset(_cfg(test_fraction=0.2), log).users.tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match=r"held-out \(test\) rows hold both classes \(every one of their 6 rows "
                                        r"is labelled 1, 3 users\)"):
        make_dataset(_cfg(test_fraction=0.2, max_users=3), log)
