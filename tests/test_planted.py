"""The planted world, the two-cutoff split, reference rows and sampled-negative labels (small and fast)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coda_jax.config import Config, ConfigError, SyntheticConfig, load, with_overrides
from coda_jax.data.dataset import make_dataset
from coda_jax.data.implicit import sampled_negatives
from coda_jax.data.schema import Interactions
from coda_jax.data.synthetic import generate, reference_logits
from coda_jax.planted import per_user_auc, reference_scores

SMALL = dict(num_users=240, num_items=200, num_item_clusters=10, num_genres=10, num_user_groups=4,
             min_rows_per_user=40, max_rows_per_user=60)


def _variant(name: str, **extra) -> SyntheticConfig:
    cfg = load(f"configs/planted_{name}.yaml").synthetic
    return dataclasses.replace(cfg, **{**SMALL, **extra})


def _cfg(syn: SyntheticConfig, **data) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, synthetic=syn, data=dataclasses.replace(cfg.data, history_len=3, **data))


def test_stored_logits_are_the_world_and_labels_follow_them():
    inter = generate(_variant("stale"), 0)
    w = inter.planted
    c = w.cluster[inter.item - 1]
    g = w.group[inter.user]
    on = inter.time >= w.shift_time
    want = (w.base + w.popularity[inter.item - 1] + w.taste[g, c] + w.personal[inter.user, c]
            + np.where(on, w.shift[g, c], 0.0))
    np.testing.assert_allclose(inter.logit, want, rtol=1e-12, atol=1e-12)
    assert 0.2 < on.mean() < 0.6                                  # shift_time 0.6: about 40% of rows shifted
    p = 1 / (1 + np.exp(-inter.logit))
    assert abs(inter.label.mean() - p.mean()) < 0.01              # Bernoulli(sigmoid(logit))
    assert np.all(inter.item_genres[1:, 0] == w.cluster % 10 + 1)  # one genre per cluster


def test_null_control_has_equal_group_click_rates_and_no_structure():
    syn = _variant("null", num_users=800)
    inter = generate(syn, 1)
    w = inter.planted
    assert np.all(w.taste == 0) and np.all(w.personal == 0) and np.all(w.shift == 0)
    g = w.group[inter.user]
    rates = np.array([inter.label[g == k].mean() for k in range(4)])
    assert rates.max() - rates.min() < 0.02                       # equal per-group click rates
    np.testing.assert_allclose(inter.logit, w.base + w.popularity[inter.item - 1])


def test_variants_plant_the_structure_they_claim():
    het, stale, pers = (generate(_variant(v), 0).planted for v in ("heterogeneity", "stale", "personal"))
    assert np.all(het.shift == 0) and het.taste.std() > 1.2 and het.personal.std() < 0.4
    assert stale.shift.std() > 1.2 and stale.taste.std() > 0.8
    assert np.all(pers.taste == 0) and np.all(pers.shift == 0) and pers.personal.std() > 0.9
    # exposure favours liked clusters: users of one group see overlapping items
    inter = generate(_variant("heterogeneity"), 0)
    g = het.group[inter.user]
    seen = np.zeros((4, 201))
    np.add.at(seen, (g, inter.item), 1)
    seen /= seen.sum(axis=1, keepdims=True)
    own = np.mean([seen[k] @ seen[k] for k in range(4)])
    other = np.mean([seen[a] @ seen[b] for a in range(4) for b in range(4) if a != b])
    assert own > 1.5 * other


def test_reference_rows_match_numpy_on_the_test_rows():
    cfg = _cfg(_variant("stale"))
    data = make_dataset(cfg)
    assert data.info["split"] == "two_cutoff" and data.cloud_train is not None
    t = data.table
    t0, t1 = data.info["cutoffs"]
    assert np.all(t.time[data.cloud_train] < t0) and np.all(t.time[data.heldout] >= t1)
    assert np.all((t.time[data.train] >= t0) & (t.time[data.train] < t1))
    sim = np.isin(t.user, data.users)
    test_rows = np.flatnonzero(data.heldout & sim)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(np.searchsorted(data.users, t.user[test_rows]),
                                                         minlength=len(data.users)))])
    scores = reference_scores(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, fresh_reference=False)),
                              data, None, test_rows)
    np.testing.assert_allclose(scores["oracle"][test_rows], t.logit[test_rows], rtol=1e-12)
    got = per_user_auc(scores["oracle"], t, (offsets, test_rows))
    for s, u in enumerate(data.users[:40]):                       # numpy AUC per user from the stored logits
        r = test_rows[offsets[s]:offsets[s + 1]]
        y, x = t.label[r], t.logit[r]
        pos, neg = x[y > 0.5], x[y <= 0.5]
        if len(pos) and len(neg):
            want = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
            assert got[s] == pytest.approx(want, abs=1e-6)
        else:
            assert np.isnan(got[s])
    # group-oracle drops the personal offset; stale-oracle also the shift; popularity is b alone
    w = t.planted
    c, g = w.cluster[t.item[test_rows] - 1], w.group[t.user_ids[t.user[test_rows]]]
    np.testing.assert_allclose(scores["group-oracle"][test_rows],
                               t.logit[test_rows] - w.personal[t.user_ids[t.user[test_rows]], c])
    np.testing.assert_allclose(scores["stale-oracle"][test_rows] - scores["popularity"][test_rows],
                               w.base + w.taste[g, c])
    # mixture: one score per (item, time side), whatever the user
    refs = reference_logits(w, np.array([0, 1, 2, 3]), np.array([5, 5, 5, 5]), np.array([0, 0, 10 ** 9, 10 ** 9]))
    assert refs["mixture"][0] == refs["mixture"][1] and refs["mixture"][2] == refs["mixture"][3]


def test_two_cutoff_pool_settings_and_validation():
    syn = _variant("stale")
    parts = {m: make_dataset(_cfg(syn, match_from=m)) for m in ("before_t0", "before_t1", "fresh")}
    a, b, f = parts["before_t0"], parts["before_t1"], parts["fresh"]
    np.testing.assert_array_equal(a.pool, a.cloud_train)
    np.testing.assert_array_equal(b.pool, a.cloud_train | a.train)
    np.testing.assert_array_equal(f.pool, a.train)
    v = make_dataset(_cfg(syn, eval_on="validation"))
    t1 = v.info["cutoffs"][1]
    assert not np.any(v.table.time[v.heldout | v.train | v.pool] >= t1)      # test rows untouched
    assert not np.any(v.pool & v.heldout)


@pytest.mark.parametrize("item, match", [
    ("data.split=two_halves", "data.split"), ("data.cutoff_t0=1.5", "data.cutoff_t0"),
    ("data.cutoff_t1=0.5", "data.cutoff_t1"), ("data.match_from=all", "data.match_from"),
    ("synthetic.world=flat", "synthetic.world"), ("synthetic.shift_scale=-1", "synthetic.shift_scale"),
    ("synthetic.shift_time=2", "synthetic.shift_time"), ("synthetic.exposure=-0.5", "synthetic.exposure"),
    ("data.taobao.implicit_labels=clicks", "data.taobao.implicit_labels"),
    ("data.taobao.negatives=0", "data.taobao.negatives"),
    ("data.cutoff_by=date", "data.cutoff_by")])
def test_new_keys_are_range_checked(item, match):
    with pytest.raises(ConfigError, match=match.replace(".", r"\.")):
        with_overrides(Config(), [item])


def test_sampled_negatives():
    rng = np.random.default_rng(0)
    n = 300
    inter = Interactions(user=rng.integers(0, 20, n).astype(np.int32), item=rng.integers(1, 51, n).astype(np.int32),
                         label=np.zeros(n, np.float32), time=rng.integers(0, 1000, n).astype(np.int64),
                         item_genres=np.ones((51, 1), np.int32), user_ids=np.arange(20), num_genres=1, name="x")
    out = sampled_negatives(inter, 3, 0)
    touched = set(zip(inter.user.tolist(), inter.item.tolist()))
    pos = out.label > 0.5
    assert set(zip(out.user[pos].tolist(), out.item[pos].tolist())) == touched     # each pair once, positive
    assert pos.sum() == len(touched)
    assert not (set(zip(out.user[~pos].tolist(), out.item[~pos].tolist())) & touched)  # never touched
    assert (~pos).sum() == 3 * pos.sum()
    first = {}
    for u, i, t in zip(inter.user.tolist(), inter.item.tolist(), inter.time.tolist()):
        first[(u, i)] = min(t, first.get((u, i), t))
    assert all(first[(u, i)] == t for u, i, t in zip(out.user[pos].tolist(), out.item[pos].tolist(),
                                                      out.time[pos].tolist()))
    negs_time = set(zip(out.user[~pos].tolist(), out.time[~pos].tolist()))
    assert negs_time <= set(zip(out.user[pos].tolist(), out.time[pos].tolist()))   # same timestamps
    again = sampled_negatives(inter, 3, 0)
    np.testing.assert_array_equal(again.item, out.item)


@pytest.mark.slow
def test_tiny_planted_run_adds_flagged_reference_rows_and_shares():
    from coda_jax.simulate import simulate  # noqa: PLC0415

    cfg = with_overrides(Config(), [
        "synthetic.num_users=48", "synthetic.num_items=80", "synthetic.num_item_clusters=6", "synthetic.num_genres=6",
        "synthetic.num_user_groups=3", "synthetic.min_rows_per_user=30", "synthetic.max_rows_per_user=40",
        "data.history_len=3", "cloud.epochs=1", "retrieval.max_candidates=24", "retrieval.matched_users=3",
        "classifier.steps=5", "finetune.steps=4", "finetune.batch_size=8", "engine.chunk_users=16",
        "engine.min_bucket=8", "eval.bootstrap=50", "methods=[global,local+random,coda]"])
    res = simulate(cfg, show_progress=False)
    for name in ("oracle", "group-oracle", "stale-oracle", "mixture", "popularity", "global-fresh"):
        m = res.methods[name]
        assert m["reference"] is True and m["users"] == res.methods["coda"]["users"]
        assert set(m["per_user"]) == set(res.methods["coda"]["per_user"])         # the same users
        assert name in res.comparisons
    assert not res.methods["coda"].get("reference")
    share = res.diagnostics["own_group_share"]
    assert share["chance"] == pytest.approx(1 / 3) and {"random", "candidates", "kept"} <= set(share)
    assert "reference" in res.table() and "own-group share" in res.table()
    assert res.data["split"] == "two_cutoff"


def test_distinct_draws_follow_the_gumbel_top_k_law():
    """The O(rows) sampler (draw with replacement, keep each user's first distinct items) against a numpy
    Gumbel top-k reference: item inclusion frequencies over many users with the same weights agree."""
    from coda_jax.data.synthetic import _distinct_draws

    rng = np.random.default_rng(3)
    n_items, n_clusters, n_users, n = 30, 4, 20000, 6
    cluster = rng.integers(0, n_clusters, size=n_items)
    w = np.exp(rng.normal(0, 1.0, size=n_items))
    cluster_taste = np.exp(rng.normal(0, 1.0, size=n_clusters))
    item_order = np.argsort(cluster, kind="stable")
    item_cum = np.cumsum(w[item_order])
    cluster_start = np.searchsorted(cluster[item_order], np.arange(n_clusters))
    cluster_cum = np.concatenate([[0.0], item_cum])[np.append(cluster_start, n_items)]
    p = cluster_taste * np.diff(cluster_cum)
    owner, item = _distinct_draws(rng, np.full(n_users, n), np.tile(p / p.sum(), (n_users, 1)),
                                  (cluster_start, cluster_cum, item_cum, item_order))
    assert np.array_equal(np.bincount(owner, minlength=n_users), np.full(n_users, n))
    assert len(np.unique(owner * n_items + item)) == owner.shape[0]              # distinct per user
    weight = w * cluster_taste[cluster]                                         # each item's sampling weight
    keys = np.log(weight)[None, :] + rng.gumbel(size=(n_users, n_items))
    reference = np.argsort(-keys, axis=1)[:, :n]
    got = np.bincount(item, minlength=n_items) / n_users
    want = np.bincount(reference.ravel(), minlength=n_items) / n_users
    assert np.abs(got - want).max() < 0.02, (got, want)
    first = item[np.searchsorted(owner, np.arange(n_users))]                    # first draw ∝ weight
    assert np.abs(np.bincount(first, minlength=n_items) / n_users - weight / weight.sum()).max() < 0.02


def test_lognormal_rows_per_user_is_heavy_tailed_and_clipped():
    from coda_jax.data.synthetic import rows_per_user

    cfg = SyntheticConfig(num_users=50000, num_items=5000, rows_per_user="lognormal", median_rows_per_user=68,
                          mean_rows_per_user=144, min_rows_per_user=20, max_rows_per_user=3000)
    n = rows_per_user(cfg, np.random.default_rng(0))
    assert n.min() >= 20 and n.max() <= 3000
    assert abs(np.median(n) - 68) < 3
    assert 125 < n.mean() < 150                       # the tail clipped at 3000 costs a little of the mean
    with pytest.raises(ConfigError, match="synthetic.rows_per_user"):
        with_overrides(Config(), ["synthetic.rows_per_user=zipf"])
