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
from coda_jax.device.chunk import Rows
from coda_jax.device.sampler import epoch_batches
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


def keep_mask(scores: jnp.ndarray, mask: jnp.ndarray, cfg: ClassifierConfig) -> jnp.ndarray:
    """Fine-grained filter: which candidates to keep.

    With ``cfg.threshold`` in [0, 1], keeps valid candidates scored >= threshold; otherwise keeps the top
    ``ceil(keep_fraction * n_valid)`` valid candidates by score (both may be traced numbers).
    scores, mask: [N] -> bool [N].
    """
    n_keep = jnp.ceil(cfg.keep_fraction * mask.sum()).astype(jnp.int32)
    order = jnp.argsort(jnp.where(mask, -scores, jnp.inf))
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return mask & jnp.where(cfg.threshold >= 0, scores >= cfg.threshold, rank < n_keep)


# ----------------------------------------------------------------------------- fine-tuning

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
    groups in ``cfg.trainable`` move. Every step's rows and loss weights are drawn before the training scan
    as shuffled epochs (:func:`~coda_jax.device.sampler.epoch_batches`): ``cfg.sampling == "pooled"`` draws
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
    idx, row_weight = epoch_batches(key, local_weights, aug_weights, cfg)
    features, labels = rows.features, rows.label

    def step(carry, xs):
        tr, s = carry
        i, w = xs
        batch = jax.tree_util.tree_map(lambda x: x[i], features)
        grads = jax.grad(lambda t: weighted_loss(model, {**frozen, **t}, batch, labels[i], w))(tr)
        updates, s = opt.update(grads, s, tr)
        return (optax.apply_updates(tr, updates), s), None

    (tuned, _), _ = jax.lax.scan(step, (train, opt.init(train)), (idx, row_weight))
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
