"""What one device does, as pure per-user functions: the sample classifier, fine-tuning, MPDA's trials.

Per user: (a) train the personalized sample classifier on sample vectors, local rows (label 1) against
outside rows (label 0); (b) score the coarse candidates and keep the local-like ones; (c) fine-tune the
user's model copy on local + augmented rows; (d) score rows. :mod:`coda_jax.device.stage` runs these for
every method (as lanes) and every user of a chunk (vmapped) in one compiled program.

Every function here is pure in ``(params, data, key)``. Config fields that are numbers (learning rates,
l2, keep fraction, threshold, weights) may be traced values (see
:mod:`coda_jax.device.settings`): no Python branch reads them.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from coda_jax.config import ClassifierConfig, FinetuneConfig, MpdaConfig
from coda_jax.config_sizes import STEP_BLOCK
from coda_jax.device.chunk import Rows
from coda_jax.device.sampler import batch_plan, draw_steps
from coda_jax.device.submodel import split_trainable
from coda_jax.models.losses import classifier_loss, weighted_loss
from kernels.auc import auc_1d


# ----------------------------------------------------------------------------- sample classifier

def train_classifier(classifier: nn.Module, pos: tuple[jnp.ndarray, jnp.ndarray], neg: tuple[jnp.ndarray, jnp.ndarray],
                     key: jax.Array, cfg: ClassifierConfig):
    """Train one user's sample classifier, local (positive) vs outside (negative), full-batch Adam.

    Args:
      classifier: the classifier module (vectors [..., D] -> logits [...]; ``StageSettings.classifier_model``).
      pos: ``(vectors float [Np, D], mask bool [Np])`` of the local rows.
      neg: ``(vectors float [Nn, D], mask bool [Nn])`` of the outside rows.
      key: PRNG key for initialisation.

    Returns:
      The classifier's parameter dict. Classes are balanced (each class carries half the loss weight).
    """
    (pos, pos_mask), (neg, neg_mask), model = pos, neg, classifier
    x = jnp.concatenate([pos, neg])
    y = jnp.concatenate([jnp.ones(pos.shape[0]), jnp.zeros(neg.shape[0])])
    w = jnp.concatenate([pos_mask / jnp.maximum(pos_mask.sum(), 1), neg_mask / jnp.maximum(neg_mask.sum(), 1)])
    params = model.init(key, x[:1])["params"]
    opt = optax.adam(cfg.learning_rate)

    def step(carry, _):
        p, s = carry
        grads = jax.grad(lambda q: classifier_loss(model, q, x, y, w, cfg.l2))(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=cfg.steps)
    return params


def classifier_scores(classifier: nn.Module, params, vectors: jnp.ndarray) -> jnp.ndarray:
    """Probability that each row is local-like: vectors [N, D] -> float [N]."""
    return jax.nn.sigmoid(classifier.apply({"params": params}, vectors))


def _ranks(scores: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Rank of each valid entry by descending score (0 = best; padding ranks last): int [N]."""
    order = jnp.argsort(jnp.where(mask, -scores, jnp.inf))
    return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))


def own_posterior(scores: jnp.ndarray, mask: jnp.ndarray, top_share: float = 0.1) -> jnp.ndarray:
    """Estimated probability that each candidate is own-like, from a class-balanced classifier's scores.

    With balanced classes, ``r = p / (1 - p)`` estimates the density ratio local / candidates. If the
    candidates are a mixture ``pi * own + (1 - pi) * other`` and the local rows are ``own``, then
    ``P(own | x) = pi * r(x)``, and an unmistakably own row has ``r = 1 / pi``: ``pi`` is estimated as one over the
    mean ratio of the top ``top_share`` of the valid candidates. scores, mask: [N] -> float [N] in [0, 1].
    """
    p = jnp.clip(scores, 1e-6, 1.0 - 1e-6)
    ratio = p / (1.0 - p)
    n = mask.sum()
    top = (_ranks(scores, mask) < jnp.maximum(jnp.ceil(top_share * n), 1)) & mask
    r_top = jnp.sum(jnp.where(top, ratio, 0.0)) / jnp.maximum(top.sum(), 1)
    pi = jnp.clip(1.0 / jnp.maximum(r_top, 1.0), 0.0, 1.0)
    return jnp.where(mask, jnp.clip(pi * ratio, 0.0, 1.0), 0.0)


def keep_mask(scores: jnp.ndarray, mask: jnp.ndarray, cfg: ClassifierConfig) -> jnp.ndarray:
    """Fine-grained filter: which candidates to keep, by ``cfg.keep_rule`` (static; its numbers may be traced).

    * ``top_fraction``: the top ``ceil(keep_fraction * n_valid)`` valid candidates by score; with
      ``cfg.threshold`` in [0, 1] (the older spelling of ``threshold``), those scored >= threshold instead.
    * ``threshold``: valid candidates scored >= ``cfg.threshold`` (0.5 while it is negative: the classes are
      balanced, so 0.5 keeps rows more likely under the local rows than under the negatives).
    * ``expected_purity``: the largest top set whose mean :func:`own_posterior` is >= ``cfg.purity_target``
      (at least the best candidate).

    scores, mask: [N] -> bool [N].
    """
    rank = _ranks(scores, mask)
    rule = getattr(cfg, "keep_rule", "top_fraction")
    if rule == "expected_purity":
        post = own_posterior(scores, mask)
        order = jnp.argsort(jnp.where(mask, -scores, jnp.inf))
        prefix = jnp.cumsum(post[order]) / jnp.arange(1, order.shape[0] + 1)
        ok = (prefix >= cfg.purity_target) & mask[order]
        n_keep = jnp.maximum(jnp.sum(jnp.cumprod(ok)), 1)      # the prefix mean only falls as rows are added
        return mask & (rank < n_keep)
    if rule == "threshold":
        return mask & (scores >= jnp.where(cfg.threshold >= 0, cfg.threshold, 0.5))
    n_keep = jnp.ceil(cfg.keep_fraction * mask.sum()).astype(jnp.int32)
    return mask & jnp.where(cfg.threshold >= 0, scores >= cfg.threshold, rank < n_keep)


# ----------------------------------------------------------------------------- fine-tuning

def step_blocks(steps: int, block: int = STEP_BLOCK) -> tuple[int, int]:
    """``(blocks, steps per block)``: the fewest blocks of at most ``block`` steps covering ``steps``, as even
    as possible, so the padding steps (``blocks * per_block - steps``, skipped) are fewer than ``blocks``."""
    n_blocks = max(-(-steps // block), 1)
    return n_blocks, -(-steps // n_blocks)


def concat_rows(a: Rows, b: Rows) -> Rows:
    """Stack two row sets of one user along the row axis: [Na] + [Nb] -> [Na + Nb]."""
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)


def make_optimizer(cfg: FinetuneConfig) -> optax.GradientTransformation:
    """The device's optimizer: Adam or plain SGD at ``cfg.learning_rate`` (which may be traced)."""
    return (optax.adam if cfg.optimizer == "adam" else optax.sgd)(cfg.learning_rate)


def finetune(model: nn.Module, params: dict, local: tuple[Rows, jnp.ndarray],
             aug: tuple[Rows, jnp.ndarray] | None, key: jax.Array, cfg: FinetuneConfig) -> dict:
    """Fine-tune one device's model copy on its local rows plus (optionally) augmented rows.

    The objective is the weighted mean cross-entropy over local + augmented rows. Each of ``cfg.steps``
    optimizer steps (``cfg.optimizer``: Adam or plain SGD) estimates it on a minibatch; only the parameter
    groups in ``cfg.trainable`` move. Every step's rows and loss weights are drawn as shuffled epochs
    (:func:`~coda_jax.device.sampler.epoch_batches`'s numbers), a block of at most :data:`STEP_BLOCK` steps
    at a time inside the training scan (:func:`step_blocks`), so memory does not grow with ``cfg.steps``:
    ``cfg.sampling == "pooled"`` draws
    ``cfg.batch_size`` rows of the union, ``"stratified"`` ``batch_size`` local and ``aug_batch_size``
    augmented rows. The local rows are drawn from the key alone, so fine-tuning runs that share a key see the
    same local rows (common random numbers for paired comparisons).

    Args:
      model: the CTR model.
      params: the device's local parameter copy.
      local: ``(rows, weights)``: one user's local rows [Nl] (features, label) and float [Nl] weights, 0 on
        padding (``rows.mask`` as float for every row alike).
      aug: ``(rows, weights)``: augmented rows [Na] and float [Na] weights, 0 on rows not to train on; or None.
      key: PRNG key.

    Returns:
      The fine-tuned parameter dict.
    """
    train, frozen = split_trainable(params, tuple(cfg.trainable))
    opt = make_optimizer(cfg)
    (local, local_weights), (aug, aug_weights) = local, aug if aug is not None else (None, None)
    rows = jax.tree_util.tree_map(jnp.asarray, local if aug is None else concat_rows(local, aug))
    plan = batch_plan(key, local_weights, aug_weights, cfg)
    features, labels = rows.features, rows.label
    n_blocks, per_block = step_blocks(cfg.steps)
    padded = n_blocks * per_block != cfg.steps

    def step(carry, xs):
        tr, s = carry
        i, w, live = xs
        batch = jax.tree_util.tree_map(lambda x: x[i], features)
        grads = jax.grad(lambda t: weighted_loss(model, {**frozen, **t}, batch, labels[i], w))(tr)
        updates, s_new = opt.update(grads, s, tr)
        new = (optax.apply_updates(tr, updates), s_new)
        if padded:                # the last block's steps past cfg.steps leave the state as it is
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(live, a, b), new, (tr, s))
        return new, None

    def block(carry, b):          # one block's draws, made inside the scan: memory flat in cfg.steps
        idx, row_weight = draw_steps(plan, b * per_block, per_block)
        live = b * per_block + jnp.arange(per_block) < cfg.steps
        return jax.lax.scan(step, carry, (idx, row_weight, live))[0], None

    carry = (train, opt.init(train))
    if n_blocks == 1:
        tuned, _ = block(carry, 0)[0]
    else:
        (tuned, _), _ = jax.lax.scan(block, carry, jnp.arange(n_blocks))
    return {**frozen, **tuned}


def score(model: nn.Module, params: dict, rows: Rows) -> jnp.ndarray:
    """The model's logits on one user's rows: [N]."""
    logits, _ = model.apply({"params": params}, rows.features)
    return logits


def local_criterion(model: nn.Module, params: dict, local: Rows) -> jnp.ndarray:
    """MPDA's acceptance criterion on the device's local rows [Nl]: their AUC, or minus their mean
    cross-entropy when the local rows hold one class only (AUC undefined). Scalar; higher is better."""
    logits = score(model, params, local)
    auc, valid = auc_1d(logits, local.label, local.mask)
    w = local.mask.astype(jnp.float32)
    xent = jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, local.label)) / jnp.maximum(w.sum(), 1.0)
    return jnp.where(valid, auc, -xent)


def mpda_trials(model: nn.Module, params: dict, device, key: jax.Array, ft_cfg: FinetuneConfig,
                mpda_cfg: MpdaConfig) -> tuple[dict, jnp.ndarray, jnp.ndarray]:
    """MPDA's pass over its matched users (before its final local fine-tune): go through them in order (a
    ``lax.scan``); fine-tune on each one's rows (``mpda_cfg.steps`` steps from the current model) and keep the
    result only if the criterion on the local rows (:func:`local_criterion`) improves by more than 1e-7.

    Args:
      device: one device's slice of a :class:`~coda_jax.device.chunk.DeviceChunk`: its ``local`` rows [Nl] and
        ``matched`` rows [M * R], the latest ``R = mpda_cfg.rows_per_user`` rows of each of its M matched users.

    Returns:
      ``(params, accepted bool [M], rows)``: the parameters after the pass, which matched users were kept,
      and how many of their rows that took in (float scalar).
    """
    local, matched = device.local, device.matched
    m = matched.mask.shape[0] // mpda_cfg.rows_per_user
    per_user = jax.tree_util.tree_map(lambda x: x.reshape((m, x.shape[0] // m) + x.shape[1:]), matched)
    trial_cfg = dataclasses.replace(ft_cfg, steps=mpda_cfg.steps)

    def visit(carry, xs):
        p, best = carry
        rows, k = xs
        trial = finetune(model, p, (rows, rows.mask.astype(jnp.float32)), None, k, trial_cfg)
        value = local_criterion(model, trial, local)
        accept = (value > best + 1e-7) & rows.mask.any()      # the margin keeps float ties out, as MPDA's code
        p = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), trial, p)
        return (p, jnp.where(accept, value, best)), accept

    keys = jax.random.split(jax.random.fold_in(key, 1), m)
    (params, _), accepted = jax.lax.scan(visit, (params, local_criterion(model, params, local)), (per_user, keys))
    taken = jnp.sum(per_user.mask.sum(axis=1) * accepted).astype(jnp.float32)
    return params, accepted, taken


def mpda_finetune(model: nn.Module, params: dict, device, key: jax.Array, ft_cfg: FinetuneConfig,
                  mpda_cfg: MpdaConfig) -> tuple[dict, jnp.ndarray]:
    """The MPDA baseline for one device (``device``: as :func:`mpda_trials` reads it): :func:`mpda_trials`,
    then fine-tune on the local rows (``ft_cfg``,
    with ``key`` as the ``local`` method uses it). The device stage runs that final fine-tune as one lane of
    its fine-tuning scan instead (local rows only; the same objective, its own draws).

    Returns:
      ``(params, accepted)``: the fine-tuned parameters and bool [M], which matched users were kept.
    """
    params, accepted, _ = mpda_trials(model, params, device, key, ft_cfg, mpda_cfg)
    local = device.local
    params = finetune(model, params, (local, local.mask.astype(jnp.float32)), None, key, ft_cfg)
    return params, accepted
