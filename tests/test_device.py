"""The device stage: local model copy, classifier, filter, fine-tuning, vmapping and compilation."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from coda_jax.config import ClassifierConfig, FinetuneConfig
from coda_jax.device.submodel import local_model, localize_params
from coda_jax.device.sampler import epoch_batches, epoch_order
from coda_jax.device.settings import StageNumbers, StageSettings, lockstep_users
from coda_jax.device.stage import device_stage, user_stage
from coda_jax.device.methods import get_method
from coda_jax.device.train import (classifier_scores, finetune, keep_mask, score,
                                   train_classifier)
from coda_jax.models.registry import make_classifier


def _user(chunk, u):
    return jax.tree_util.tree_map(lambda x: x[u], chunk)


def _numbers(cfg):
    """The scalar traced numbers of a config (one sweep point)."""
    return StageNumbers.from_config(cfg)


def _stage(model, settings, params, chunk, cfg, key, **kw):
    """device_stage for one sweep point and one repeat, with logits: outputs [U, ...] (points and repeats dropped)."""
    settings = dataclasses.replace(settings, with_logits=True, **kw)
    out = device_stage(model, settings, params, chunk, StageNumbers.stack([cfg]), jnp.stack([key]))
    return jax.tree_util.tree_map(lambda x: x[:, 0, 0], out)


@pytest.mark.parametrize("row_users", ["own", "original"])
def test_local_copy_scores_like_the_global_model(tiny_cloud, row_users):
    """Gathering a device's vocabulary rows and remapping ids must not change any prediction."""
    from coda_jax.device.chunk import ChunkSpec, make_chunk

    cfg, data, model, params, vectors, rows = tiny_cloud
    chunk = make_chunk(data.table, vectors, rows, np.array([3, 0, 7, -1]), data.users,
                       ChunkSpec(cfg.retrieval.max_candidates, cfg.engine.min_bucket, row_users=row_users))
    score_fn = jax.jit(score, static_argnums=0)
    for slot in range(3):
        c = _user(chunk, slot)
        m = local_model(model, c.vocab.shape[0], c.user_vocab.shape[0])
        local_params = localize_params(params, c.vocab, c.user_vocab)
        for part in (c.local, c.candidates, c.test):
            got = np.asarray(score_fn(m, local_params, part))
            table_rows = np.asarray(part.row)[np.asarray(part.mask)]
            feats = data.table.features(table_rows)
            if row_users == "own" or part is c.local or part is c.test:
                feats["user"] = np.full_like(feats["user"], int(c.user_index))
            want = np.asarray(model.apply({"params": params}, feats)[0])
            np.testing.assert_allclose(got[np.asarray(part.mask)], want, rtol=1e-5, atol=1e-5)
    # a device holds its vocabulary (padded to a bucket), never more rows than the global item table
    assert chunk.vocab.shape[1] <= data.table.num_items + 1
    if row_users == "own":
        assert chunk.user_vocab.shape[1] == 2


def test_keep_mask_fraction_and_threshold():
    rng = np.random.default_rng(0)
    s = rng.random(40).astype(np.float32)
    mask = rng.random(40) < 0.7
    cfg = ClassifierConfig(keep_fraction=0.3)
    got = np.asarray(keep_mask(jnp.asarray(s), jnp.asarray(mask), cfg))
    valid = np.flatnonzero(mask)
    n_keep = int(np.ceil(0.3 * valid.size))
    want = np.zeros(40, bool)
    want[valid[np.argsort(-s[valid])[:n_keep]]] = True
    np.testing.assert_array_equal(got, want)
    got_t = np.asarray(keep_mask(jnp.asarray(s), jnp.asarray(mask), ClassifierConfig(threshold=0.5)))
    np.testing.assert_array_equal(got_t, mask & (s >= 0.5))


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_classifier_learns_the_local_boundary(kind):
    rng = np.random.default_rng(1)
    d = 8
    local = rng.normal(0.8, 1.0, size=(40, d)).astype(np.float32)
    outside = rng.normal(-0.8, 1.0, size=(60, d)).astype(np.float32)
    cfg = ClassifierConfig(kind=kind, steps=150, learning_rate=0.05)
    clf = make_classifier(cfg)
    p = train_classifier(clf, (jnp.asarray(local), jnp.ones(40, bool)), (jnp.asarray(outside), jnp.ones(60, bool)),
                         jax.random.PRNGKey(0), cfg)
    test_local = rng.normal(0.8, 1.0, size=(200, d)).astype(np.float32)
    test_out = rng.normal(-0.8, 1.0, size=(200, d)).astype(np.float32)
    s = np.asarray(classifier_scores(clf, p, jnp.asarray(np.concatenate([test_local, test_out]))))
    assert roc_auc_score(np.r_[np.ones(200), np.zeros(200)], s) > 0.9


def test_classifier_ignores_padding():
    rng = np.random.default_rng(2)
    pos = rng.normal(1.0, 1.0, size=(16, 4)).astype(np.float32)
    neg = rng.normal(-1.0, 1.0, size=(16, 4)).astype(np.float32)
    pm = np.arange(16) < 10
    cfg = ClassifierConfig(steps=30)
    clf = make_classifier(cfg)
    p1 = train_classifier(clf, (jnp.asarray(pos), jnp.asarray(pm)), (jnp.asarray(neg), jnp.ones(16, bool)),
                          jax.random.PRNGKey(0), cfg)
    garbage = pos.copy()
    garbage[~pm] = 1e3
    p2 = train_classifier(clf, (jnp.asarray(garbage), jnp.asarray(pm)), (jnp.asarray(neg), jnp.ones(16, bool)),
                          jax.random.PRNGKey(0), cfg)
    chex.assert_trees_all_close(p1, p2, rtol=1e-5, atol=1e-6)


def test_finetune_fits_and_moves_only_trainable_groups(tiny_cloud, make_tiny_chunk):
    cfg, data, model, params, vectors, rows = tiny_cloud
    c = _user(make_tiny_chunk([1]), 0)
    m = local_model(model, c.vocab.shape[0], c.user_vocab.shape[0])
    p0 = localize_params(params, c.vocab, c.user_vocab)
    w = c.local.mask.astype(jnp.float32)
    ft = FinetuneConfig(steps=60, batch_size=16, learning_rate=1e-2, trainable=("dense", "user"))
    p1 = finetune(m, p0, (c.local, w), None, jax.random.PRNGKey(0), ft)

    def loss(p):
        logits = np.asarray(score(m, p, c.local))[np.asarray(c.local.mask)]
        y = np.asarray(c.local.label)[np.asarray(c.local.mask)]
        return float(np.mean(np.logaddexp(0, logits) - y * logits))

    assert loss(p1) < loss(p0) - 1e-3
    chex.assert_trees_all_equal(p1["item_embed"], p0["item_embed"])
    chex.assert_trees_all_equal(p1["genre_embed"], p0["genre_embed"])
    assert not np.allclose(p1["user_embed"]["embedding"], p0["user_embed"]["embedding"])
    p2 = finetune(m, p0, (c.local, w), None, jax.random.PRNGKey(0), dataclasses.replace(ft, trainable=("item",)))
    chex.assert_trees_all_equal(p2["mlp"], p0["mlp"])
    assert not np.allclose(p2["item_embed"]["embedding"], p0["item_embed"]["embedding"])


def test_finetune_never_samples_zero_weight_rows(tiny_cloud, make_tiny_chunk):
    """Rows with weight 0 must not influence training: poisoning their labels changes nothing."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    c = _user(make_tiny_chunk([2]), 0)
    m = local_model(model, c.vocab.shape[0], c.user_vocab.shape[0])
    p0 = localize_params(params, c.vocab, c.user_vocab)
    mask = np.asarray(c.local.mask)
    w = mask.copy().astype(np.float32)
    w[np.flatnonzero(mask)[::2]] = 0.0
    ft = FinetuneConfig(steps=10, batch_size=8)
    a = finetune(m, p0, (c.local, jnp.asarray(w)), None, jax.random.PRNGKey(3), ft)
    poisoned = c.local.replace(label=jnp.where(jnp.asarray(w) > 0, c.local.label, 1.0 - c.local.label))
    b = finetune(m, p0, (poisoned, jnp.asarray(w)), None, jax.random.PRNGKey(3), ft)
    chex.assert_trees_all_close(a, b)


@pytest.mark.parametrize("lockstep", [0, 3])      # one vmap; groups of 3 (a group of 3, then the remainder)
def test_vmapped_stage_equals_one_user_at_a_time(tiny_cloud, make_tiny_chunk, lockstep):
    cfg, data, model, params, vectors, rows = tiny_cloud
    settings = dataclasses.replace(StageSettings.from_config(cfg), lockstep_users=lockstep)
    chunk = make_tiny_chunk([0, 5, 9, -1])
    key = jax.random.PRNGKey(7)
    out = _stage(model, settings, params, chunk, cfg, key)
    assert out["logits"].shape == (4, len(cfg.methods), chunk.test.width)
    one_user = jax.jit(user_stage, static_argnums=(0, 1))
    with_logits = dataclasses.replace(settings, with_logits=True)
    for slot in range(3):
        c = _user(chunk, slot)
        one = one_user(model, with_logits, params, c, _numbers(cfg), jax.random.fold_in(key, c.user_index))
        np.testing.assert_allclose(np.asarray(out["logits"][slot]), np.asarray(one["logits"]), rtol=2e-4, atol=2e-4)
        np.testing.assert_array_equal(np.asarray(out["kept"][slot]), np.asarray(one["kept"]))


def test_lockstep_users_auto_is_8_on_cpu_and_the_whole_chunk_elsewhere():
    assert lockstep_users(0, "cpu") == 8
    assert lockstep_users(0, "gpu") == 0 and lockstep_users(0, "tpu") == 0
    assert lockstep_users(5, "gpu") == 5 and lockstep_users(5, "cpu") == 5


def test_result_does_not_depend_on_chunk_mates(tiny_cloud, make_tiny_chunk):
    cfg, data, model, params, vectors, rows = tiny_cloud
    settings = StageSettings.from_config(cfg)
    a = make_tiny_chunk([4, 1, 2, 3])
    b = make_tiny_chunk([6, 7, 4, -1])
    if a.local.width != b.local.width or a.vocab.shape != b.vocab.shape or a.test.width != b.test.width:
        pytest.skip("chunks landed in different buckets")
    key = jax.random.PRNGKey(0)
    la = np.asarray(_stage(model, settings, params, a, cfg, key)["logits"][0])
    lb = np.asarray(_stage(model, settings, params, b, cfg, key)["logits"][2])
    np.testing.assert_allclose(la, lb, rtol=2e-4, atol=2e-4)


def _same_bucket_pair(make_tiny_chunk, data):
    users = np.arange(len(data.users))
    first = make_tiny_chunk(users[:4])
    for start in range(4, len(users) - 3):
        other = make_tiny_chunk(users[start:start + 4])
        if (other.local.width, other.test.width, other.vocab.shape) == \
                (first.local.width, first.test.width, first.vocab.shape):
            return first, other
    pytest.fail("no two chunks of the tiny run share a bucket")


def test_two_chunks_of_one_bucket_compile_once(tiny_cloud, make_tiny_chunk):
    cfg, data, model, params, vectors, rows = tiny_cloud
    settings = StageSettings.from_config(cfg)
    c1, c2 = _same_bucket_pair(make_tiny_chunk, data)
    assert not np.array_equal(np.asarray(c1.user_index), np.asarray(c2.user_index))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def stage(params, chunk, numbers, keys):
        return device_stage.__wrapped__(model, settings, params, chunk, numbers, keys)

    keys = jnp.stack([jax.random.PRNGKey(0)])
    n1 = StageNumbers.stack([cfg])
    other = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, learning_rate=0.05),
                                classifier=dataclasses.replace(cfg.classifier, keep_fraction=0.7, l2=0.1))
    jax.block_until_ready(stage(params, c1, n1, keys))
    jax.block_until_ready(stage(params, c2, StageNumbers.stack([other]), keys + 1))   # same bucket, new numbers
    wider = jax.tree_util.tree_map(lambda x: np.concatenate([x, x]), c1)   # a different bucket: must retrace
    with pytest.raises(AssertionError):
        stage(params, wider, n1, keys)
    # the module-level jitted stage as the simulator calls it, settings built from two configs of other numbers
    before = device_stage._cache_size()
    device_stage(model, settings, params, c1, n1, keys)
    device_stage(model, StageSettings.from_config(other), params, c2, StageNumbers.stack([other]), keys)
    assert device_stage._cache_size() - before <= 1


def _sampler_setup(tiny_cloud, make_tiny_chunk, user=4):
    cfg, data, model, params, vectors, rows = tiny_cloud
    c = _user(make_tiny_chunk([user]), 0)
    m = local_model(model, c.vocab.shape[0], c.user_vocab.shape[0])
    p0 = localize_params(params, c.vocab, c.user_vocab)
    return c, m, p0


@pytest.mark.parametrize("n, width, total", [(7, 10, 70), (7, 10, 75), (1, 4, 9), (10, 10, 30), (0, 5, 6)])
def test_epoch_order_visits_every_valid_row_once_per_epoch(n, width, total):
    valid = np.zeros(width, bool)
    valid[np.random.default_rng(n).choice(width, n, replace=False)] = True
    idx = np.asarray(epoch_order(jax.random.PRNGKey(3), jnp.asarray(valid), total))
    assert idx.shape == (total,)
    if n == 0:
        assert (idx == idx[0]).all()                       # nothing to visit: a fixed row, given zero weight
        return
    assert valid[idx].all()                                # never a padding / zero-weight row
    for e in range(total // n):                            # each full epoch is a permutation of the valid rows
        np.testing.assert_array_equal(np.sort(idx[e * n:(e + 1) * n]), np.flatnonzero(valid))
    counts = np.bincount(idx, minlength=width)[valid]
    assert counts.max() - counts.min() <= 1                # without replacement: frequencies differ by <= 1
    padded = np.r_[valid, np.zeros(37, bool)]               # more padding (a wider chunk): the same draws
    np.testing.assert_array_equal(np.asarray(epoch_order(jax.random.PRNGKey(3), jnp.asarray(padded), total)), idx)
    other = np.asarray(epoch_order(jax.random.PRNGKey(4), jnp.asarray(valid), total))
    assert n < 3 or not np.array_equal(other, idx)          # another key, another order


@pytest.mark.parametrize("sampling", ["stratified", "pooled"])
def test_epoch_batches_weights_give_the_weighted_mean_loss_over_an_epoch(sampling):
    """Over whole epochs sum(weight * loss[idx]) per step averages to the weighted mean loss over all rows,
    exactly; zero-weight rows are never drawn; the local stratum's draws do not depend on the augmented rows."""
    rng = np.random.default_rng(0)
    loss = rng.uniform(0, 3, size=20).astype(np.float32)
    w_local = np.r_[np.ones(7), np.zeros(3)].astype(np.float32)          # 3 padding rows
    w_aug = np.r_[rng.uniform(0.5, 2.0, 6), np.zeros(4)].astype(np.float32)
    b, b_aug = (7, 6) if sampling == "stratified" else (13, 0)            # one epoch of every stratum per step
    steps = 12
    ft = FinetuneConfig(steps=steps, batch_size=b, aug_batch_size=b_aug, sampling=sampling)
    idx, weight = jax.jit(epoch_batches, static_argnums=3)(jax.random.PRNGKey(0), jnp.asarray(w_local),
                                                           jnp.asarray(w_aug), ft)
    idx, weight = np.asarray(idx), np.asarray(weight)
    assert idx.shape == weight.shape == (steps, b + b_aug)
    w = np.r_[w_local, w_aug]
    assert not np.isin(idx, np.flatnonzero(w == 0)).any()
    # a drawn row carries w * n_s / (B_s * W); here every stratum's batch is one epoch (n_s == B_s)
    np.testing.assert_allclose(weight, w[idx] / w.sum(), rtol=1e-6)
    est = (weight * loss[idx]).sum(axis=1)
    np.testing.assert_allclose(est, (w * loss).sum() / w.sum(), rtol=1e-5)   # every step is a whole epoch
    if sampling == "stratified":
        alone, _ = epoch_batches(jax.random.PRNGKey(0), jnp.asarray(w_local), None, ft)
        np.testing.assert_array_equal(np.asarray(alone), idx[:, :b])              # common random numbers


def test_stratified_local_draws_are_shared_across_methods(tiny_cloud, make_tiny_chunk):
    """With the same key, augmented rows of zero weight leave fine-tuning exactly as on local rows alone."""
    c, m, p0 = _sampler_setup(tiny_cloud, make_tiny_chunk)
    ft = FinetuneConfig(steps=20, batch_size=8, learning_rate=1e-2, sampling="stratified")
    w = c.local.mask.astype(jnp.float32)
    alone = finetune(m, p0, (c.local, w), None, jax.random.PRNGKey(5), ft)
    zero_aug = finetune(m, p0, (c.local, w), (c.candidates, jnp.zeros(c.candidates.mask.shape)), jax.random.PRNGKey(5), ft)
    # Compared as functions: the attention's output bias has a zero gradient (softmax is shift-invariant), so
    # Adam turns float noise there into differences that change no prediction.
    for rows in (c.local, c.candidates, c.test):
        np.testing.assert_allclose(np.asarray(score(m, alone, rows)), np.asarray(score(m, zero_aug, rows)),
                                   rtol=1e-5, atol=1e-6)
    some_aug = finetune(m, p0, (c.local, w), (c.candidates, c.candidates.mask.astype(jnp.float32)),
                        jax.random.PRNGKey(5), ft)
    leaves = zip(jax.tree_util.tree_leaves(some_aug), jax.tree_util.tree_leaves(alone))
    assert not all(np.allclose(a, b) for a, b in leaves)


@pytest.mark.parametrize("sampling", ["stratified", "pooled"])
def test_finetune_ignores_zero_weight_augmented_rows(tiny_cloud, make_tiny_chunk, sampling):
    c, m, p0 = _sampler_setup(tiny_cloud, make_tiny_chunk)
    ft = FinetuneConfig(steps=10, batch_size=8, sampling=sampling)
    w_aug = np.asarray(c.candidates.mask).astype(np.float32)
    w_aug[np.flatnonzero(w_aug)[1::2]] = 0.0
    w_aug = jnp.asarray(w_aug)
    w = c.local.mask.astype(jnp.float32)
    a = finetune(m, p0, (c.local, w), (c.candidates, w_aug), jax.random.PRNGKey(1), ft)
    poisoned = c.candidates.replace(label=jnp.where(w_aug > 0, c.candidates.label, 1.0 - c.candidates.label))
    b = finetune(m, p0, (c.local, w), (poisoned, w_aug), jax.random.PRNGKey(1), ft)
    chex.assert_trees_all_close(a, b)


_jit_finetune = jax.jit(finetune, static_argnums=(0, 5))


def test_sgd_step_is_the_minibatch_gradient(tiny_cloud, make_tiny_chunk):
    """One plain-SGD step moves the trainable parameters by -lr * the gradient of the drawn minibatch's loss."""
    from coda_jax.models.losses import bce_loss
    from coda_jax.device.submodel import split_trainable

    c, m, p0 = _sampler_setup(tiny_cloud, make_tiny_chunk)
    ft = FinetuneConfig(steps=1, batch_size=8, learning_rate=0.5, optimizer="sgd")
    w = c.local.mask.astype(jnp.float32)
    key = jax.random.PRNGKey(2)
    got = _jit_finetune(m, p0, (c.local, w), None, key, ft)
    idx = np.asarray(epoch_batches(key, w, None, ft)[0][0])
    assert len(set(idx.tolist())) == min(ft.batch_size, int(w.sum()))     # one step: rows without replacement
    train, frozen = split_trainable(p0, ft.trainable)
    batch = jax.tree_util.tree_map(lambda x: x[idx], c.local.features)
    grads = jax.jit(jax.grad(lambda t: bce_loss(m, {**frozen, **t}, batch, c.local.label[idx], None)))(train)
    expected = {**frozen, **jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, train, grads)}
    chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-6)


def test_random_negatives_train_the_classifier_on_the_random_rows(tiny_cloud, make_tiny_chunk):
    """With classifier.negatives: random, the device's classifier learns local rows against its random pool
    rows (not the candidates): the stage's scores and kept mask equal a classifier trained on those rows."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    cls_cfg = dataclasses.replace(cfg.classifier, negatives="random", kind="mlp")
    clf = make_classifier(cls_cfg)
    settings = dataclasses.replace(StageSettings.from_config(cfg), classifier=cls_cfg, classifier_model=clf,
                                   methods=(get_method("coda"),))
    c = _user(make_tiny_chunk([6]), 0)
    key = jax.random.PRNGKey(11)
    settings = dataclasses.replace(settings, with_logits=True)
    out = jax.jit(user_stage, static_argnums=(0, 1))(model, settings, params, c, _numbers(cfg), key)
    k_cls, _ = jax.random.split(key)
    local_x, rand_x, cand_x = (r.vector for r in (c.local, c.random, c.candidates))
    cls = train_classifier(clf, (local_x, c.local.mask), (rand_x, c.random.mask), k_cls, cls_cfg)
    want = classifier_scores(clf, cls, cand_x)
    np.testing.assert_allclose(np.asarray(out["candidate_score"]), np.asarray(want), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["kept"]), np.asarray(keep_mask(want, c.candidates.mask, cls_cfg)))
    with_cands = train_classifier(clf, (local_x, c.local.mask), (cand_x, c.candidates.mask), k_cls, cls_cfg)
    assert not np.allclose(np.asarray(classifier_scores(clf, with_cands, cand_x)), np.asarray(want), atol=1e-4)
