"""Fine-tuning draws made in blocks of steps inside the scan (coda_jax.device.train.step_blocks) give the same
numbers as drawing every step up front, and the fine-tuned parameters are those of an up-front scan."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from coda_jax.config import FinetuneConfig, ModelConfig
from coda_jax.device.chunk import Rows
from coda_jax.device.sampler import batch_plan, draw_steps, epoch_batches, epoch_order
from coda_jax.device.submodel import split_trainable
from coda_jax.device.train import STEP_BLOCK, finetune, step_blocks
from coda_jax.models import make_model
from coda_jax.models.losses import weighted_loss


def _rows(rng, n: int, pad: int) -> Rows:
    f = {"user": np.zeros(n, np.int32), "item": rng.integers(1, 30, n).astype(np.int32),
         "genres": rng.integers(0, 5, (n, 2)).astype(np.int32),
         "hist_pos": rng.integers(0, 30, (n, 4)).astype(np.int32),
         "hist_neg": rng.integers(0, 30, (n, 4)).astype(np.int32)}
    return Rows(features=f, label=(rng.random(n) < 0.4).astype(np.float32), mask=np.arange(n) < n - pad,
                vector=np.zeros((n, 0), np.float32), row=np.arange(n, dtype=np.int32), own=np.zeros(n, bool),
                fresh=np.zeros(n, bool))


@pytest.mark.parametrize("steps", [1, 100, 128, 129, 300, 1000])
def test_step_blocks_cover_the_steps_with_fewer_padding_steps_than_blocks(steps):
    n_blocks, per = step_blocks(steps)
    assert per <= STEP_BLOCK and n_blocks * per >= steps and n_blocks * per - steps < n_blocks
    assert n_blocks == -(-steps // STEP_BLOCK)


def test_blocks_of_draws_are_the_draws_of_all_steps_at_once():
    w_local = jnp.asarray(np.r_[np.ones(13), np.zeros(3)], jnp.float32)
    w_aug = jnp.asarray(np.r_[np.full(20, 0.5), np.zeros(4)], jnp.float32)
    valid = jnp.asarray(np.arange(11) % 3 != 0)

    ft = dataclasses.replace(FinetuneConfig(), steps=50, batch_size=8, aug_batch_size=4, sampling="stratified")

    @jax.jit
    def both(k):                  # stratified: a local and an augmented stratum
        plan = batch_plan(k, w_local, w_aug, ft)
        blocks = [draw_steps(plan, jnp.int32(first), count) for first, count in ((0, 17), (17, 20), (37, 13))]
        orders = epoch_order(k, valid, 25), epoch_order(k, valid, 15, jnp.int32(25)), epoch_order(k, valid, 40)
        return epoch_batches(k, w_local, w_aug, ft), blocks, orders

    (idx, weight), got, (a, b, whole) = both(jax.random.PRNGKey(7))
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), idx)
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), weight)
    np.testing.assert_array_equal(np.concatenate([a, b]), whole)


@pytest.mark.parametrize("steps", [3, 2 * STEP_BLOCK + 1])       # one block; three blocks with one padding step
def test_blocked_finetune_equals_a_scan_over_draws_made_up_front(steps):
    rng = np.random.default_rng(0)
    local, aug = _rows(rng, 24, 4), _rows(rng, 32, 6)
    model = make_model(ModelConfig(name="lr"), 2, 30, 5)
    params = model.init(jax.random.PRNGKey(0), jax.tree_util.tree_map(lambda x: x[:1], local.features))["params"]
    cfg = dataclasses.replace(FinetuneConfig(), steps=steps, batch_size=8, trainable=("dense", "genre", "item"))
    w_local, w_aug = local.mask.astype(np.float32), aug.mask * 0.7
    key = jax.random.PRNGKey(5)
    got = jax.jit(lambda p: finetune(model, p, (local, w_local), (aug, w_aug), key, cfg))(params)

    def reference(p):             # the whole [steps, B] draw first, then one scan over it
        train, frozen = split_trainable(p, cfg.trainable)
        feats = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), local.features, aug.features)
        labels = jnp.concatenate([local.label, aug.label])
        idx, w = epoch_batches(key, w_local, w_aug, cfg)
        opt = optax.adam(cfg.learning_rate)

        def step(carry, xs):
            t, s = carry
            i, wi = xs
            g = jax.grad(lambda q: weighted_loss(model, {**frozen, **q}, jax.tree_util.tree_map(lambda x: x[i], feats),
                                                 labels[i], wi))(t)
            u, s = opt.update(g, s, t)
            return (optax.apply_updates(t, u), s), None

        (t, _), _ = jax.lax.scan(step, (train, opt.init(train)), (idx, w))
        return {**frozen, **t}

    want = jax.jit(reference)(params)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
