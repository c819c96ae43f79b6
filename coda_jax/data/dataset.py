"""Load or generate a dataset and split it: the table, the pool (training rows) and each user's held-out rows."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from coda_jax.config import Config, data_seed
from coda_jax.data.features import build_samples
from coda_jax.data.ingest import DataError
from coda_jax.data.schema import Interactions, SampleTable
from coda_jax.data.sources import load_source
from coda_jax.data.split import global_time_split, temporal_split
from coda_jax.data.synthetic import generate


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A split sample table.

    Attributes:
      table: every sample, sorted by (user, time).
      train: bool [N], training rows: each user's local data.
      pool: bool [N], the training rows the cloud holds (its model's training data and the pool it matches
        from): every training row except the device-only ones (``data.device_only_fraction``).
      heldout: bool [N], evaluation rows (each user's latest rows: test, or validation rows carved from
        the training rows when ``data.eval_on`` is ``validation``; then test rows are in neither mask).
      users: int [S] the simulated users (global user index), those with training and held-out rows.
      info: counts for the report (rows, users, dropped users).
      cloud_train: bool [N], the rows the cloud model trains on when they differ from ``pool`` (the two-cutoff
        split: rows before T0); None means ``pool``.
    """

    table: SampleTable
    train: np.ndarray
    pool: np.ndarray
    heldout: np.ndarray
    users: np.ndarray
    info: dict
    cloud_train: np.ndarray | None = None

    @property
    def cloud_rows(self) -> np.ndarray:
        """bool [N], the rows the cloud model trains on."""
        return self.pool if self.cloud_train is None else self.cloud_train


def filter_users(inter: Interactions, min_rows: int) -> tuple[Interactions, int]:
    """Drop users with fewer than ``min_rows`` interactions and re-densify user indices.

    Returns the filtered log and the number of users dropped.
    """
    counts = np.bincount(inter.user, minlength=inter.num_users)
    keep_user = counts >= min_rows
    if keep_user.all():
        return inter, 0
    new_index = np.cumsum(keep_user) - 1
    rows = keep_user[inter.user]
    if not rows.any():
        raise DataError(f"{inter.name}: no user has at least {min_rows} interactions "
                        f"(data.min_rows_per_user)")
    out = dataclasses.replace(inter, user=new_index[inter.user[rows]].astype(np.int32), item=inter.item[rows],
                              label=inter.label[rows], time=inter.time[rows], user_ids=inter.user_ids[keep_user],
                              logit=None if inter.logit is None else inter.logit[rows],
                              user_profile=None if inter.user_profile is None else inter.user_profile[keep_user])
    return out, int((~keep_user).sum())


def load_interactions(cfg: Config) -> Interactions:
    """The interaction log named by ``cfg.data.source`` (generated, or read by its source module of
    :mod:`coda_jax.data.sources` from ``cfg.data.data_dir`` / ``cfg.data.path``). Rows a reader dropped
    (``data.skip_bad_rows``) are counted by reason in the returned log's ``dropped_rows`` (reported by
    :func:`make_dataset` in ``info["dropped_rows"]``)."""
    if cfg.data.source == "synthetic":
        return generate(cfg.synthetic, data_seed(cfg))
    return load_source(cfg.data, data_seed(cfg))


def _check_both_classes(name: str, table: SampleTable, heldout: np.ndarray, users: np.ndarray, eval_on: str) -> None:
    """Raise unless some simulated user's held-out rows hold both a positive and a negative label.

    Every metric is a per-user AUC over the user's held-out rows, defined only when they hold both classes;
    without any such user a run would end with nothing but NaN AUCs (e.g. every rating 5, every label 1).
    """
    rows = heldout & np.isin(table.user, users)
    user = table.user[rows]
    pos = np.bincount(user, weights=table.label[rows] > 0.5, minlength=table.num_users)
    n = np.bincount(user, minlength=table.num_users)
    if ((pos > 0) & (pos < n)).any():
        return
    which = "validation" if eval_on == "validation" else "test"
    labels = np.unique(table.label[rows])
    if labels.size == 1:
        what = f"every one of their {int(rows.sum())} rows is labelled {labels[0]:g}"
    else:
        what = f"each user's {which} rows are all positive or all negative"
    raise DataError(
        f"{name}: no simulated user's held-out ({which}) rows hold both classes ({what}, {users.size} users), so "
        f"no per-user AUC is defined; check the labels (data.like_threshold, data.taobao.label_behaviors, the label "
        f"column) or hold out more rows per user (data.test_fraction / data.validation_fraction)")


def cutoff_times(time: np.ndarray, cfg: Config) -> tuple[int, int]:
    """The two-cutoff split's ``(T0, T1)`` in the data's time unit: global time quantiles of every row
    (``data.cutoff_by: quantile``; the lowest timestamp at or above the quantile) or the values themselves."""
    d = cfg.data
    if d.cutoff_by == "timestamp":
        return int(np.ceil(d.cutoff_t0)), int(np.ceil(d.cutoff_t1))
    t0, t1 = np.quantile(time, [d.cutoff_t0, d.cutoff_t1], method="higher")
    return int(t0), int(t1)


def resolved_split(cfg: Config, table: SampleTable) -> str:
    """``data.split`` with ``auto`` resolved: two_cutoff on a planted world, user_fraction otherwise."""
    if cfg.data.split != "auto":
        return cfg.data.split
    return "two_cutoff" if table.planted is not None else "user_fraction"


def two_cutoff_split(cfg: Config, table: SampleTable) -> dict:
    """Masks of the two-cutoff split (bool [N] each): ``cloud`` rows before T0 (the cloud model's training
    data), ``train`` each user's local rows in [T0, T1) (less its validation rows with ``data.eval_on:
    validation``), ``heldout`` rows at or after T1 (or the validation rows: each user's latest
    ``validation_fraction`` of its local rows), ``pool`` what the cloud matches from (``data.match_from``).
    Also ``cutoffs`` (T0, T1)."""
    d = cfg.data
    t0, t1 = cutoff_times(table.time, cfg)
    cloud = table.time < t0
    train = (table.time >= t0) & (table.time < t1)
    heldout = table.time >= t1
    if d.eval_on == "validation":
        heldout = temporal_split(table, d.validation_fraction, rows=train)
        train = train & ~heldout
    fresh = train
    if d.device_only_fraction > 0:                    # the latest local rows stay on the device: not uploaded
        fresh = train & ~temporal_split(table, d.device_only_fraction, rows=train)
    pool = {"before_t0": cloud, "before_t1": cloud | fresh, "fresh": fresh}[d.match_from]
    return {"cloud": cloud, "train": train, "heldout": heldout, "pool": pool, "cutoffs": (t0, t1)}


def _cutoff_text(cfg: Config, key: str, t: int) -> str:
    value = getattr(cfg.data, key.split(".")[-1])
    return f"{key} {value:g}" + (f" (a time quantile: T = {t})" if cfg.data.cutoff_by == "quantile" else "")


def check_two_cutoff(name: str, cfg: Config, table: SampleTable, parts: dict) -> None:
    """Raise :class:`DataError` naming ``data.cutoff_t0`` / ``data.cutoff_t1`` and the data's time range when
    the two-cutoff split leaves the cloud model no rows before T0, no local rows in [T0, T1) or no rows after T1
    (``parts``: :func:`two_cutoff_split`'s masks)."""
    t0, t1 = parts["cutoffs"]
    span = f"the data's times run from {int(table.time.min())} to {int(table.time.max())}" if len(table) else "no rows"
    if not parts["cloud"].any():
        raise DataError(f"{name}: {_cutoff_text(cfg, 'data.cutoff_t0', t0)}: no row is before T0, so the cloud "
                        f"model has no training rows; {span}; raise data.cutoff_t0")
    if cfg.data.eval_on == "test" and not (table.time >= t1).any():     # validation rows come from [T0, T1)
        raise DataError(f"{name}: {_cutoff_text(cfg, 'data.cutoff_t1', t1)}: no row is at or after T1, so no "
                        f"device has test rows; {span}; lower data.cutoff_t1")
    if not ((table.time >= t0) & (table.time < t1)).any():
        window = f"{_cutoff_text(cfg, 'data.cutoff_t0', t0)} to {_cutoff_text(cfg, 'data.cutoff_t1', t1)}"
        raise DataError(f"{name}: {window}: no row is in the local window [T0, T1), so no device has local rows; "
                        f"{span}; widen the window (data.cutoff_t0 / data.cutoff_t1)")


def _no_users_error(name: str, cfg: Config, table: SampleTable, has_train: np.ndarray, n_heldout: np.ndarray,
                    split: tuple[str, tuple | None]) -> DataError:
    """The error when no user has training rows and at least ``data.min_test_rows`` held-out rows: it names
    the keys that decide both (and, for the two-cutoff split, the window and the data's time range).
    ``split``: the split's name and its cutoffs (T0, T1), or None for a split without cutoffs."""
    split_name, cutoffs = split
    most = int(n_heldout[has_train].max(initial=0))
    which = "validation" if cfg.data.eval_on == "validation" else "held-out"
    if split_name == "two_cutoff":
        t0, t1 = cutoffs
        span = f"the data's times run from {int(table.time.min())} to {int(table.time.max())}"
        local = (f"local rows in [T0, T1) = [{t0}, {t1}) ({_cutoff_text(cfg, 'data.cutoff_t0', t0)}, "
                 f"{_cutoff_text(cfg, 'data.cutoff_t1', t1)})")
    else:
        span, local = f"split {split_name}", "training rows"
    return DataError(f"{name}: data.min_test_rows: no user has both {local} and at least {cfg.data.min_test_rows} "
                     f"{which} rows (data.min_test_rows; among users with {'local' if cutoffs else 'training'} rows "
                     f"the most {which} rows any has is {most}); {span}")


def fingerprint(table: SampleTable, masks: dict, users: np.ndarray) -> str:
    """A hash of the data a run saw: every row's (user, item, label, time), the profile attribute if any, the
    split's masks (bool [N] each, by name; None entries skipped) and the simulated users. Two runs with equal
    fingerprints saw the same rows, split the same way (``coda-sim combine`` refuses runs whose differ)."""
    h = hashlib.blake2b(digest_size=12)
    arrays = [table.user, table.item, table.label, table.time, users]
    if table.user_profile is not None:
        arrays.append(table.user_profile)
    arrays += [np.packbits(m) for _, m in sorted(masks.items()) if m is not None]
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def make_dataset(cfg: Config, inter: Interactions | None = None) -> Dataset:
    """Build and split the dataset of a run (``inter`` overrides the configured source).

    With ``data.split: user_fraction`` each user's last ``test_fraction`` of rows in time are its test rows;
    with ``global_time`` every row at or after one global timestamp (the ``1 - test_fraction`` quantile) is a
    test row. The rest are training rows. With ``data.eval_on: validation`` the same split is applied to the
    training rows (``validation_fraction``) to hold out validation rows instead, and the test rows are not
    used at all (for choosing settings without touching test rows). Simulated users are those with training
    rows and at least ``data.min_test_rows`` held-out rows; everyone's training rows stay in the pool, except
    with ``data.device_only_fraction`` > 0: the same split applied once more to the training rows keeps each
    user's latest ones on its device only (data gathered since the cloud last saw it): local rows, but not in
    the cloud model's training data or the pool.
    """
    if inter is None:
        inter = load_interactions(cfg)
    n_raw_users = inter.num_users
    inter, dropped = filter_users(inter, cfg.data.min_rows_per_user)
    table = build_samples(inter, cfg.data.history_len)
    split_name = resolved_split(cfg, table)
    cloud_train, extra_info = None, {}
    if split_name == "two_cutoff":
        parts = two_cutoff_split(cfg, table)
        check_two_cutoff(inter.name, cfg, table, parts)
        train, heldout, pool, cloud_train = parts["train"], parts["heldout"], parts["pool"], parts["cloud"]
        extra_info = {"cutoffs": [int(c) for c in parts["cutoffs"]], "cloud_rows": int(cloud_train.sum()),
                      "match_from": cfg.data.match_from}
    else:
        split = global_time_split if split_name == "global_time" else temporal_split
        test = split(table, cfg.data.test_fraction)
        train = ~test
        heldout = test
        if cfg.data.eval_on == "validation":
            heldout = split(table, cfg.data.validation_fraction, rows=train)
            train = train & ~heldout
        pool = train
        if cfg.data.device_only_fraction > 0:
            pool = train & ~split(table, cfg.data.device_only_fraction, rows=train)
    has_train = np.bincount(table.user[train], minlength=table.num_users) > 0
    n_heldout = np.bincount(table.user[heldout], minlength=table.num_users)
    has_heldout = n_heldout >= cfg.data.min_test_rows
    users = np.flatnonzero(has_train & has_heldout)
    dropped_test = int((has_train & (n_heldout > 0) & ~has_heldout).sum())
    if cfg.data.max_users:
        users = users[: cfg.data.max_users]
    if users.size == 0:
        raise _no_users_error(inter.name, cfg, table, has_train, n_heldout, (split_name, extra_info.get("cutoffs")))
    _check_both_classes(inter.name, table, heldout, users, cfg.data.eval_on)
    info = {"source": inter.name, "rows": len(table), "users": table.num_users, "items": table.num_items,
            "users_dropped_min_rows": dropped, "users_below_min_test_rows": dropped_test,
            "users_in_file": n_raw_users, "simulated_users": int(users.size),
            "train_rows": int(train.sum()), "pool_rows": int(pool.sum()), "heldout_rows": int(heldout.sum()),
            "positive_rate": float(table.label.mean()), "eval_on": cfg.data.eval_on, "split": split_name,
            "dropped_rows": dict(inter.dropped_rows), **extra_info,
            "fingerprint": fingerprint(table, {"train": train, "pool": pool, "heldout": heldout,
                                               "cloud_train": cloud_train}, users)}
    return Dataset(table=table, train=train, pool=pool, heldout=heldout, users=users, info=info,
                   cloud_train=cloud_train)
