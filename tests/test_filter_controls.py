"""The fine filter's controls and options: coarse-subset, oracle-filter(-fresh), the filter diagnostics, the
classifier's inputs and keep rules, each checked against a numpy reference."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from coda_jax.config import ClassifierConfig, ConfigError, FinetuneConfig
from coda_jax.device.chunk import Rows
from coda_jax.methods import AugmentInputs, get_method, run_methods
from tests.conftest import tiny_config


def _rows(mask, own=None, fresh=None):
    n = mask.shape[0]
    z = jnp.zeros(n)
    return Rows(features={}, label=z, mask=jnp.asarray(mask), vector=jnp.zeros((n, 0)), row=jnp.zeros(n, jnp.int32),
                own=jnp.asarray(mask if own is None else own), fresh=jnp.asarray(mask if fresh is None else fresh))


def test_coarse_subset_keeps_coda_count_uniformly():
    """Exactly as many candidates as coda keeps, only valid ones, each valid one equally likely."""
    rng = np.random.default_rng(0)
    mask = np.arange(40) < 30
    kept = mask & (rng.random(40) < 0.4)
    cands = _rows(mask)
    fn = jax.jit(lambda key: get_method("coarse-subset").augment(AugmentInputs(
        local=cands, candidates=cands, random=cands, kept=jnp.asarray(kept), candidate_score=jnp.zeros(40),
        finetune=FinetuneConfig(), key=key))[1])
    draws = np.stack([np.asarray(fn(jax.random.PRNGKey(i))) for i in range(400)])
    assert ((draws > 0).sum(axis=1) == kept.sum()).all()
    assert (draws[:, ~mask] == 0).all()
    freq = (draws[:, mask] > 0).mean(axis=0)                  # uniform: kept / valid each, within ~4 sd
    p = kept.sum() / mask.sum()
    assert np.abs(freq - p).max() < 4 * np.sqrt(p * (1 - p) / 400)
    assert not (draws[:, mask] > 0)[:, :kept.sum()].all()     # not the best-first prefix


def test_oracle_filters_use_exactly_the_marked_candidates():
    mask = np.arange(12) < 10
    own = mask & (np.arange(12) % 3 != 0)
    fresh = mask & (np.arange(12) % 2 == 0)
    cands = _rows(mask, own, fresh)
    x = AugmentInputs(local=cands, candidates=cands, random=cands, kept=jnp.asarray(mask),
                      candidate_score=jnp.zeros(12), finetune=FinetuneConfig(aug_weight=0.5), key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(get_method("oracle-filter").augment(x)[1]), 0.5 * own)
    np.testing.assert_array_equal(np.asarray(get_method("oracle-filter-fresh").augment(x)[1]), 0.5 * (own & fresh))


def test_run_methods_adds_controls_and_refuses_references_without_a_world():
    base = ("global", "local", "coda")
    assert run_methods(base, False, False) == base + ("coarse-subset",)
    assert run_methods(base, True, False) == base + ("coarse-subset", "oracle-filter")
    assert run_methods(base, True, True) == base + ("coarse-subset", "oracle-filter", "oracle-filter-fresh")
    assert run_methods(("global", "local"), True, False) == ("global", "local", "oracle-filter")
    with pytest.raises(ValueError, match="oracle-filter-fresh"):
        run_methods(base + ("oracle-filter-fresh",), True, False)


def test_keep_rules_against_numpy():
    from coda_jax.device.train import keep_mask, own_posterior

    rng = np.random.default_rng(1)
    scores = rng.random(50).astype(np.float32)
    mask = np.arange(50) < 45
    got = np.asarray(keep_mask(jnp.asarray(scores), jnp.asarray(mask), ClassifierConfig(keep_rule="threshold",
                                                                                       threshold=0.6)))
    np.testing.assert_array_equal(got, mask & (scores >= 0.6))
    # expected purity: pi = 1 / mean ratio of the top 10%, posterior = min(pi * ratio, 1), keep the longest
    # best-first prefix whose mean posterior reaches the target
    s = scores[mask]
    ratio = np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6))
    order = np.argsort(-s)
    top = order[:int(np.ceil(0.1 * mask.sum()))]
    pi = min(1.0, 1.0 / max(ratio[top].mean(), 1.0))
    post = np.minimum(pi * ratio, 1.0)
    np.testing.assert_allclose(np.asarray(own_posterior(jnp.asarray(scores), jnp.asarray(mask)))[mask], post,
                               rtol=1e-5)
    for target in (0.5, 0.8):
        prefix = np.cumsum(post[order]) / np.arange(1, len(order) + 1)
        n = max(int(np.sum(np.cumprod(prefix >= target))), 1)
        want = np.zeros(50, bool)
        want[np.flatnonzero(mask)[order[:n]]] = True
        got = np.asarray(keep_mask(jnp.asarray(scores), jnp.asarray(mask),
                                   ClassifierConfig(keep_rule="expected_purity", purity_target=target)))
        np.testing.assert_array_equal(got, want)


def test_field_inputs_layout(tiny_data, tiny_cfg):
    """(genre, label) one-hot, label, time since T0 (quantile units), as a plain loop over rows computes them."""
    from coda_jax.device.inputs import classifier_inputs, field_inputs

    table = tiny_data.table
    got = field_inputs(tiny_cfg, table)
    g = table.num_genres
    assert got.shape == (len(table), 2 * g + 2)
    times = np.sort(table.time)
    t0 = np.quantile(table.time, tiny_cfg.data.cutoff_t0, method="higher")
    q0 = np.mean(times < t0)
    for r in range(0, len(table), 37):
        want = np.zeros(2 * g + 2, np.float32)
        for genre in table.genres[r]:
            if genre > 0:
                want[genre - 1 + (0 if table.label[r] > 0.5 else g)] = 1.0
        want[-2] = table.label[r]
        want[-1] = np.mean(times < table.time[r]) - q0
        np.testing.assert_allclose(got[r], want, atol=1e-6)
    vec = np.ones((len(table), 3), np.float32)
    cfg = dataclasses.replace(tiny_cfg, classifier=dataclasses.replace(tiny_cfg.classifier, inputs="vector_label"))
    vl = classifier_inputs(cfg, table, None, types.SimpleNamespace(vectors=vec, params=None))
    np.testing.assert_array_equal(vl, np.concatenate([vec, table.label[:, None]], axis=1))


def test_din_inputs_are_the_models_own_parts(tiny_cloud):
    """inputs: din = the target item's embedding and the attention-pooled histories (standardised)."""
    from coda_jax.device.inputs import din_inputs

    cfg, data, model, params, vectors, rows = tiny_cloud
    assert cfg.model.name == "din"
    got = din_inputs(model, params, data.table)
    d = cfg.model.embed_dim
    assert got.shape == (len(data.table), 3 * d)
    target = np.asarray(params["item_embed"]["embedding"])[data.table.item]
    want = (target - target.mean(axis=0)) / np.maximum(target.std(axis=0), 1e-6)
    np.testing.assert_allclose(got[:, :d], want, atol=1e-4)
    bad = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="lr"),
                              classifier=dataclasses.replace(cfg.classifier, inputs="din"))
    from coda_jax.config import validate

    with pytest.raises(ConfigError, match="classifier.inputs"):
        validate(bad)


@pytest.fixture(scope="module")
def planted_tiny():
    """A tiny planted world (a shift, lr), its cloud stage and one packed chunk with the world's row tags."""
    from coda_jax.cloud.stage import cloud_stage
    from coda_jax.data.dataset import make_dataset
    from coda_jax.device.chunk import ChunkSpec, make_chunk
    from coda_jax.device.inputs import row_tags

    cfg = tiny_config()
    cfg = dataclasses.replace(
        cfg, synthetic=dataclasses.replace(cfg.synthetic, world="planted", num_users=48, min_rows_per_user=20,
                                           max_rows_per_user=30, num_user_groups=2, shift_scale=1.0),
        data=dataclasses.replace(cfg.data, split="two_cutoff", fresh_reference=False),
        model=dataclasses.replace(cfg.model, name="lr"),
        finetune=dataclasses.replace(cfg.finetune, trainable=("genre",), row_users="own"),
        methods=("global", "local", "coda", "coarse-subset", "oracle-filter", "oracle-filter-fresh"))
    data = make_dataset(cfg)
    cloud = cloud_stage(cfg, data, show_progress=False)
    tags = row_tags(data.table)
    spec = ChunkSpec(cfg.retrieval.max_candidates, cfg.engine.min_bucket, "own", tags=tags)
    chunk = make_chunk(data.table, cloud.vectors, cloud.rows, np.arange(6), data.users, spec)
    return cfg, data, cloud, chunk


def test_planted_tags_and_lanes(planted_tiny):
    """Rows.own / fresh follow the planted world; oracle-filter trains on exactly the own-group candidates,
    coarse-subset on exactly as many as coda keeps; the classifier's AUC is sklearn's on own vs other."""
    from coda_jax.device.settings import StageNumbers, StageSettings
    from coda_jax.device.stage import user_stage

    cfg, data, cloud, chunk = planted_tiny
    world, table = data.table.planted, data.table
    settings = dataclasses.replace(StageSettings.from_config(cfg), with_logits=True)
    stage = jax.jit(user_stage, static_argnums=(0, 1))
    for u in range(6):
        c = jax.tree_util.tree_map(lambda x: x[u], chunk)
        rows = np.asarray(c.candidates.row)[np.asarray(c.candidates.mask)]
        own_group = world.group[table.user_ids[data.users[u]]]
        want_own = world.group[table.user_ids[table.user[rows]]] == own_group
        want_fresh = table.time[rows] >= world.shift_time
        np.testing.assert_array_equal(np.asarray(c.candidates.own)[np.asarray(c.candidates.mask)], want_own)
        np.testing.assert_array_equal(np.asarray(c.candidates.fresh)[np.asarray(c.candidates.mask)], want_fresh)
        out = stage(cloud.model, settings, cloud.params, c, StageNumbers.from_config(cfg), jax.random.PRNGKey(u))
        m = {name: i for i, name in enumerate(cfg.methods)}
        aug = np.asarray(out["aug_rows"])
        assert aug[m["coarse-subset"]] == aug[m["coda"]] == np.asarray(out["kept"]).sum()
        assert aug[m["oracle-filter"]] == want_own.sum()
        assert aug[m["oracle-filter-fresh"]] == (want_own & want_fresh).sum()
        if want_own.sum():
            assert float(out["aug_own"][m["oracle-filter"]]) == 1.0
        score = np.asarray(out["candidate_score"])[np.asarray(c.candidates.mask)]
        if 0 < want_own.sum() < len(want_own):
            np.testing.assert_allclose(float(out["classifier_auc"][0]), roc_auc_score(want_own, score), atol=1e-5)


def test_filter_figure_numbers_and_file(tmp_path):
    """filter_points: coda − control per swept value from the per-user AUCs, kept shares from diagnostics;
    the sweep report writes filter_<field>.png."""
    from sims.report_data import filter_points

    rng = np.random.default_rng(2)

    def run(q):
        coda, sub, coarse = (rng.random(30) for _ in range(3))
        pu = lambda a: {str(i): float(x) for i, x in enumerate(a)}                       # noqa: E731
        return {"config": {"synthetic": {"profile_signal": q}, "eval": {"bootstrap": 200, "confidence": 0.95}},
                "methods": {"coda": {"auc": float(coda.mean()), "per_user": pu(coda)},
                            "coarse-subset": {"auc": float(sub.mean()), "per_user": pu(sub)},
                            "local+coarse": {"auc": float(coarse.mean()), "per_user": pu(coarse)}},
                "diagnostics": {"kept_own_share": {"coda": q, "coarse-subset": 0.5}}}, coda - sub

    made = [run(q) for q in (0.0, 0.5, 0.9)]
    variants = [{"id": f"v{i}", "overrides": [f"synthetic.profile_signal={q}"], "results": r}
                for i, (q, (r, _)) in enumerate(zip((0.0, 0.5, 0.9), made))]
    values, diffs, shares = filter_points(variants, "synthetic.profile_signal")
    assert values == [0.0, 0.5, 0.9]
    np.testing.assert_allclose(diffs["coarse-subset"]["mean"], [d.mean() for _, d in made])
    assert all(lo <= m <= hi for lo, m, hi in zip(diffs["coarse-subset"]["low"], diffs["coarse-subset"]["mean"],
                                                   diffs["coarse-subset"]["high"]))
    assert shares["coda"] == [0.0, 0.5, 0.9] and shares["coarse-subset"] == [0.5] * 3
    pytest.importorskip("matplotlib")
    from sims.report_filter import plot_filter_field

    (path,) = plot_filter_field(variants, "synthetic.profile_signal", tmp_path / "filter.png", "t")
    assert path.exists() and path.stat().st_size > 1000
