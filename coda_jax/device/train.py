"""The device stage, one user at a time as pure functions, vmapped over a chunk of users and jitted once.

Per user: (a) train the personalized sample classifier on sample vectors, local rows (label 1) against
outside rows (label 0); (b) score the coarse candidates and keep the local-like ones; (c) fine-tune the
user's model copy on local + augmented rows for every method; (d) score the user's test rows.

Every function here is pure in ``(params, data, key)``; :func:`device_stage` vmaps :func:`user_stage` over
the leading user axis of a :class:`~coda_jax.device.chunk.DeviceChunk` and is jitted with the model and the
stage settings static, so a run compiles once per bucketed chunk shape.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from coda_jax.cloud.pretrain import bce_loss
from coda_jax.config import ClassifierConfig, Config, FinetuneConfig
from coda_jax.device.chunk import DeviceChunk, Rows
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.models.classifier import SampleClassifier

FINETUNED_METHODS = ("local", "local+random", "local+coarse", "coda")


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """The static (hashable) settings of the device stage."""

    classifier: ClassifierConfig
    finetune: FinetuneConfig
    methods: tuple[str, ...]

    @staticmethod
    def from_config(cfg: Config) -> "StageSettings":
        return StageSettings(classifier=cfg.classifier, finetune=cfg.finetune, methods=tuple(cfg.methods))


# ----------------------------------------------------------------------------- sample classifier

def classifier_loss(model: nn.Module, params, x: jnp.ndarray, y: jnp.ndarray, w: jnp.ndarray,
                    l2: float) -> jnp.ndarray:
    """Weighted cross-entropy of the sample classifier plus an L2 penalty: x [N, D], y [N], w [N] -> scalar."""
    logits = model.apply({"params": params}, x)
    penalty = sum(jnp.sum(t ** 2) for t in jax.tree_util.tree_leaves(params))
    return 0.5 * jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, y)) + l2 * penalty


def train_classifier(pos: jnp.ndarray, pos_mask: jnp.ndarray, neg: jnp.ndarray, neg_mask: jnp.ndarray,
                     key: jax.Array, cfg: ClassifierConfig):
    """Train one user's sample classifier, local (positive) vs outside (negative), full-batch Adam.

    Args:
      pos: float [Np, D] vectors of local rows; pos_mask: bool [Np].
      neg: float [Nn, D] vectors of outside rows; neg_mask: bool [Nn].
      key: PRNG key for initialisation.

    Returns:
      The classifier's parameter dict. Classes are balanced (each class carries half the loss weight).
    """
    model = SampleClassifier(kind=cfg.kind, hidden=cfg.hidden)
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


def classifier_scores(params, vectors: jnp.ndarray, cfg: ClassifierConfig) -> jnp.ndarray:
    """Probability that each row is local-like: vectors [N, D] -> float [N]."""
    model = SampleClassifier(kind=cfg.kind, hidden=cfg.hidden)
    return jax.nn.sigmoid(model.apply({"params": params}, vectors))


def keep_mask(scores: jnp.ndarray, mask: jnp.ndarray, cfg: ClassifierConfig) -> jnp.ndarray:
    """Fine-grained filter: which candidates to keep.

    With ``cfg.threshold`` in [0, 1], keeps valid candidates scored >= threshold; otherwise keeps the top
    ``ceil(keep_fraction * n_valid)`` valid candidates by score. scores, mask: [N] -> bool [N].
    """
    if cfg.threshold >= 0:
        return mask & (scores >= cfg.threshold)
    n_keep = jnp.ceil(cfg.keep_fraction * mask.sum()).astype(jnp.int32)
    order = jnp.argsort(jnp.where(mask, -scores, jnp.inf))
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    return mask & (rank < n_keep)


# ----------------------------------------------------------------------------- fine-tuning

def concat_rows(a: Rows, b: Rows) -> Rows:
    """Stack two row sets of one user along the row axis: [Na] + [Nb] -> [Na + Nb]."""
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)


def finetune(model: nn.Module, params: dict, rows: Rows, weights: jnp.ndarray, key: jax.Array,
             cfg: FinetuneConfig) -> dict:
    """Fine-tune one device's model copy.

    Each of ``cfg.steps`` Adam steps draws ``cfg.batch_size`` rows with probability proportional to
    ``weights`` (zero on padding) and takes a gradient step on the mean cross-entropy; only the parameter
    groups in ``cfg.trainable`` move.

    Args:
      model: the CTR model.
      params: the device's local parameter copy.
      rows: one user's training rows [N] (features, label).
      weights: float [N] sampling weights, 0 for rows not to train on.
      key: PRNG key.

    Returns:
      The fine-tuned parameter dict.
    """
    rows = jax.tree_util.tree_map(jnp.asarray, rows)
    train, frozen = split_trainable(params, tuple(cfg.trainable))
    opt = optax.adam(cfg.learning_rate)
    # Inverse-CDF sampling: B uniforms and a binary search per step (not a Gumbel draw per row and step).
    # Zero-weight rows have zero-width intervals and are never drawn; an empty device draws row 0, harmlessly.
    cdf = jnp.cumsum(jnp.maximum(weights, 0.0))
    total = cdf[-1]

    def step(carry, k):
        tr, s = carry
        u = jax.random.uniform(k, (cfg.batch_size,)) * total
        idx = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), weights.shape[0] - 1)
        batch = jax.tree_util.tree_map(lambda x: x[idx], rows.features)
        grads = jax.grad(lambda t: bce_loss(model, {**frozen, **t}, batch, rows.label[idx]))(tr)
        updates, s = opt.update(grads, s, tr)
        return (optax.apply_updates(tr, updates), s), None

    (train, _), _ = jax.lax.scan(step, (train, opt.init(train)), jax.random.split(key, cfg.steps))
    return {**frozen, **train}


def score(model: nn.Module, params: dict, rows: Rows) -> jnp.ndarray:
    """The model's logits on one user's rows: [N]."""
    logits, _ = model.apply({"params": params}, rows.features)
    return logits


# ----------------------------------------------------------------------------- one user, then a chunk

def user_stage(model: nn.Module, settings: StageSettings, global_params: dict, vocab: jnp.ndarray,
               user_vocab: jnp.ndarray, local: Rows, candidates: Rows, random: Rows, test: Rows,
               key: jax.Array) -> dict:
    """Run the whole device stage for one user (unbatched leaves; vmapped by :func:`device_stage`).

    Returns a dict: ``logits`` float [M, Nt] test logits per method in ``settings.methods`` order,
    ``kept`` bool [Nc] candidates kept by the classifier, ``candidate_score`` float [Nc] classifier scores.
    """
    cls_cfg, ft_cfg = settings.classifier, settings.finetune
    params = localize_params(global_params, vocab, user_vocab)
    model = local_model(model, vocab.shape[0], user_vocab.shape[0])
    k_cls, k_ft = jax.random.split(key)
    negatives = candidates if cls_cfg.negatives == "candidates" else random
    cls_params = train_classifier(local.vector, local.mask, negatives.vector, negatives.mask, k_cls, cls_cfg)
    cand_score = classifier_scores(cls_params, candidates.vector, cls_cfg)
    kept = keep_mask(cand_score, candidates.mask, cls_cfg)
    n_kept = kept.sum()
    random_kept = random.mask & (jnp.cumsum(random.mask) <= n_kept)   # as many random rows as coda keeps
    aug_w = ft_cfg.aug_weight
    coda_w = kept * aug_w * (cand_score if ft_cfg.weight_by_score else 1.0)
    augment = {
        "local+random": (random, random_kept * aug_w),
        "local+coarse": (candidates, candidates.mask * aug_w),
        "coda": (candidates, coda_w),
    }
    logits = []
    for i, method in enumerate(settings.methods):
        if method == "global":
            logits.append(score(model, params, test))
            continue
        rows, weights = local, local.mask.astype(jnp.float32)
        if method != "local":
            aug_rows, aug_weights = augment[method]
            rows = concat_rows(local, aug_rows)
            weights = jnp.concatenate([weights, aug_weights.astype(jnp.float32)])
        tuned = finetune(model, params, rows, weights, jax.random.fold_in(k_ft, i), ft_cfg)
        logits.append(score(model, tuned, test))
    return {"logits": jnp.stack(logits), "kept": kept, "candidate_score": cand_score}


@functools.partial(jax.jit, static_argnames=("model", "settings"))
def device_stage(model: nn.Module, settings: StageSettings, global_params: dict, chunk: DeviceChunk,
                 key: jax.Array) -> dict:
    """The device stage for a chunk of ``U`` users, vmapped and jitted.

    Every user's PRNG key is ``fold_in(key, user_index)``, so a user's result does not depend on which
    chunk or slot it runs in.

    Returns a dict with leading user axis: ``logits`` float [U, M, Nt], ``kept`` bool [U, Nc],
    ``candidate_score`` float [U, Nc].
    """
    keys = jax.vmap(lambda u: jax.random.fold_in(key, u))(chunk.user_index)
    per_user = functools.partial(user_stage, model, settings, global_params)
    return jax.vmap(per_user)(chunk.vocab, chunk.user_vocab, chunk.local, chunk.candidates, chunk.random,
                              chunk.test, keys)
