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
from coda_jax.config import ClassifierConfig, Config, FinetuneConfig, MpdaConfig
from coda_jax.data.split import holdout_count
from coda_jax.device.chunk import DeviceChunk, Rows
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.models.classifier import SampleClassifier
from kernels.auc import auc_1d


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """The static (hashable) settings of the device stage."""

    classifier: ClassifierConfig
    finetune: FinetuneConfig
    methods: tuple[str, ...]
    mpda: MpdaConfig = MpdaConfig()
    matched_users: int = 10        # M: the chunk's matched rows are M blocks of equal width
    lockstep_users: int = 0        # users vmapped together; groups run one after another (0 = the whole chunk)

    @staticmethod
    def from_config(cfg: Config) -> "StageSettings":
        return StageSettings(classifier=cfg.classifier, finetune=cfg.finetune, methods=tuple(cfg.methods),
                             mpda=cfg.mpda, matched_users=cfg.retrieval.matched_users,
                             lockstep_users=lockstep_users(cfg.engine.lockstep_users))


def lockstep_users(configured: int, backend: str | None = None) -> int:
    """The number of users vmapped in lockstep: ``configured`` if > 0; for 0 (auto), 8 on a CPU backend
    (small batched products run faster there in groups of 2-16 than 64 or more wide) and the whole chunk (0)
    on an accelerator."""
    if configured > 0:
        return configured
    return 8 if (backend or jax.default_backend()) == "cpu" else 0


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


def classifier_inputs(model: nn.Module, params: dict, rows: Rows, cfg: ClassifierConfig) -> jnp.ndarray:
    """What the sample classifier sees of one user's rows [N]: float [N, D] (``cfg.features == "vector"``)
    or [N, D + 1], the sample vector and one more column: the label as -1 / +1 (``"vector+label"``) or the
    label minus the cloud model's predicted probability (``"vector+residual"``, in [-1, 1]; ``params`` are
    the device's copy of the cloud model, before fine-tuning)."""
    if cfg.features == "vector":
        return rows.vector
    if cfg.features == "vector+label":
        extra = 2.0 * rows.label - 1.0
    else:
        extra = rows.label - jax.nn.sigmoid(score(model, params, rows))
    return jnp.concatenate([rows.vector, extra[:, None].astype(rows.vector.dtype)], axis=1)


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


def draw_rows(cdf: jnp.ndarray, key: jax.Array, n: int) -> jnp.ndarray:
    """Draw ``n`` row indices with probability proportional to the weights whose cumulative sum is ``cdf`` [N].

    Inverse-CDF sampling: ``n`` uniforms and a binary search (not a Gumbel draw per row). Zero-weight rows
    have zero-width intervals and are never drawn; if every weight is 0, row 0 is drawn, harmlessly (the
    caller gives such rows zero loss weight). Returns int [n].
    """
    u = jax.random.uniform(key, (n,)) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)


def minibatch_sampler(local_weights: jnp.ndarray, aug_weights: jnp.ndarray | None, cfg: FinetuneConfig):
    """The fine-tuning minibatch draw over local rows [Nl] followed by augmented rows [Na] (see :func:`finetune`).

    Returns ``draw(key) -> (idx, row_weight)``: idx int [B] into the concatenated rows, row_weight float [B]
    (summing to 1) or None for a plain mean; ``sum(row_weight * loss[idx])`` estimates the weighted mean
    loss over all rows without bias.
    """
    w_local = jnp.maximum(jnp.asarray(local_weights, jnp.float32), 0.0)
    b = cfg.batch_size
    if aug_weights is None:
        cdfs, sizes, row_weight = [jnp.cumsum(w_local)], [b], None
    else:
        w_aug = jnp.maximum(jnp.asarray(aug_weights, jnp.float32), 0.0)
        if cfg.sampling == "pooled":
            cdfs, sizes, row_weight = [jnp.cumsum(jnp.concatenate([w_local, w_aug]))], [b], None
        else:
            b_aug = cfg.aug_batch_size or b
            cdfs, sizes = [jnp.cumsum(w_local), jnp.cumsum(w_aug)], [b, b_aug]
            total_l, total_a = cdfs[0][-1], cdfs[1][-1]
            row_weight = jnp.concatenate([jnp.full(b, total_l / b), jnp.full(b_aug, total_a / b_aug)])
            row_weight = row_weight / jnp.maximum(total_l + total_a, 1e-9)
    offsets = (0, w_local.shape[0])

    def draw(key):
        ks = jax.random.split(key, 2)   # [0] local (or pooled) rows, [1] augmented: the same local draws per method
        idx = jnp.concatenate([off + draw_rows(cdf, k, n) for off, cdf, k, n in zip(offsets, cdfs, ks, sizes)])
        return idx, row_weight

    return draw


def latest_rows(mask: jnp.ndarray, fraction: float) -> jnp.ndarray:
    """The latest :func:`~coda_jax.data.split.holdout_count` of a user's ``n`` real rows (the rule of the
    temporal split), rows in time order with padding last: mask bool [N] -> bool [N]."""
    n = jnp.sum(mask.astype(jnp.int32))
    return mask & (jnp.arange(mask.shape[0]) >= n - holdout_count(n, fraction, jnp))


def finetune(model: nn.Module, params: dict, local: Rows, local_weights: jnp.ndarray, aug: Rows | None,
             aug_weights: jnp.ndarray | None, key: jax.Array, cfg: FinetuneConfig) -> dict:
    """Fine-tune one device's model copy on its local rows plus (optionally) augmented rows.

    The objective is the weighted mean cross-entropy over local + augmented rows. Each of ``cfg.steps``
    optimizer steps (``cfg.optimizer``: Adam or plain SGD) estimates it on a minibatch; only the parameter
    groups in ``cfg.trainable`` move.

    - ``cfg.sampling == "stratified"``: ``cfg.batch_size`` local rows (drawn by weight) and
      ``cfg.aug_batch_size`` (0 = batch_size) augmented rows, the two strata weighted by their total weights.
      The local rows are drawn from the step key alone, so methods fine-tuned with the same key see the same
      local rows (common random numbers for paired comparisons).
    - ``"pooled"``: ``cfg.batch_size`` rows drawn from the union by weight.

    Without augmented rows both modes draw the same ``batch_size`` local rows. With ``cfg.select ==
    "holdout"`` the latest ``cfg.holdout_fraction`` of the local rows are not trained on; the result is the
    checkpoint (the start, then every ``cfg.check_every`` steps) scoring best on them by
    :func:`local_criterion` (device-side early stopping; the start wins ties). With ``cfg.interpolate``
    a < 1 the result is ``start + a * (tuned - start)`` on the trainable parameters.

    Args:
      model: the CTR model.
      params: the device's local parameter copy.
      local: one user's local rows [Nl] (features, label); local_weights: float [Nl], 0 on padding.
      aug: augmented rows [Na] or None; aug_weights: float [Na], 0 on rows not to train on.
      key: PRNG key.

    Returns:
      The fine-tuned parameter dict.
    """
    train, frozen = split_trainable(params, tuple(cfg.trainable))
    opt = (optax.adam if cfg.optimizer == "adam" else optax.sgd)(cfg.learning_rate)
    holdout = None
    if cfg.select == "holdout":
        held = latest_rows(local.mask, cfg.holdout_fraction)
        holdout = local.replace(mask=held)
        local_weights = jnp.where(held, 0.0, local_weights)
    rows = local if aug is None else concat_rows(local, aug)
    rows = jax.tree_util.tree_map(jnp.asarray, rows)
    draw = minibatch_sampler(local_weights, aug_weights if aug is not None else None, cfg)

    def step(carry, k):
        tr, s = carry
        idx, row_weight = draw(k)
        batch = jax.tree_util.tree_map(lambda x: x[idx], rows.features)
        grads = jax.grad(lambda t: bce_loss(model, {**frozen, **t}, batch, rows.label[idx], row_weight))(tr)
        updates, s = opt.update(grads, s, tr)
        return (optax.apply_updates(tr, updates), s), None

    keys = jax.random.split(key, cfg.steps)
    if holdout is None:
        (tuned, _), _ = jax.lax.scan(step, (train, opt.init(train)), keys)
    else:
        def value(t):
            return local_criterion(model, {**frozen, **t}, holdout)

        def block(carry, ks):        # check_every steps, then a check on the held-out rows
            tr, s, best, best_value = carry
            (tr, s), _ = jax.lax.scan(step, (tr, s), ks)
            v = value(tr)
            better = v > best_value + 1e-7
            best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), tr, best)
            return (tr, s, best, jnp.where(better, v, best_value)), v

        blocks = keys.reshape((cfg.steps // cfg.check_every, cfg.check_every) + keys.shape[1:])
        (_, _, tuned, _), _ = jax.lax.scan(block, (train, opt.init(train), train, value(train)), blocks)
    if cfg.interpolate != 1.0:          # keep a fraction of the move (weight-space interpolation)
        tuned = jax.tree_util.tree_map(lambda a, b: a + cfg.interpolate * (b - a), train, tuned)
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


def mpda_finetune(model: nn.Module, params: dict, local: Rows, matched: Rows, num_matched: int, key: jax.Array,
                  ft_cfg: FinetuneConfig, mpda_cfg: MpdaConfig) -> tuple[dict, jnp.ndarray]:
    """The MPDA baseline for one device: go through the matched users in order (a ``lax.scan``); fine-tune on
    each one's rows (``mpda_cfg.steps`` steps from the current model) and keep the result only if the
    criterion on the local rows (:func:`local_criterion`) improves by more than 1e-7; then fine-tune on the local rows
    (``ft_cfg``, with ``key`` as the ``local`` method uses it).

    Args:
      local: the device's rows [Nl]; matched: [M * R] rows of its ``num_matched`` (M) matched users, R each.

    Returns:
      ``(params, accepted)``: the fine-tuned parameters and bool [M], which matched users were kept.
    """
    m = num_matched
    per_user = jax.tree_util.tree_map(lambda x: x.reshape((m, x.shape[0] // m) + x.shape[1:]), matched)
    trial_cfg = dataclasses.replace(ft_cfg, steps=mpda_cfg.steps, select="none")

    def visit(carry, xs):
        p, best = carry
        rows, k = xs
        trial = finetune(model, p, rows, rows.mask.astype(jnp.float32), None, None, k, trial_cfg)
        value = local_criterion(model, trial, local)
        accept = (value > best + 1e-7) & rows.mask.any()      # the margin keeps float ties out, as MPDA's code
        p = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), trial, p)
        return (p, jnp.where(accept, value, best)), accept

    keys = jax.random.split(jax.random.fold_in(key, 1), m)
    (params, _), accepted = jax.lax.scan(visit, (params, local_criterion(model, params, local)), (per_user, keys))
    params = finetune(model, params, local, local.mask.astype(jnp.float32), None, None, key, ft_cfg)
    return params, accepted


# ----------------------------------------------------------------------------- one user, then a chunk

def user_stage(model: nn.Module, settings: StageSettings, global_params: dict, device: DeviceChunk,
               key: jax.Array) -> dict:
    """Run the whole device stage for one user: ``device`` is one user's slice of a :class:`DeviceChunk`
    (no leading user axis; vmapped by :func:`device_stage`).

    Returns a dict: ``logits`` float [M, Nt] test logits per method in ``settings.methods`` order,
    ``kept`` bool [Nc] candidates kept by the classifier, ``candidate_score`` float [Nc] classifier scores,
    ``mpda_accepted`` bool [matched users] (all False without the mpda method).
    """
    cls_cfg, ft_cfg = settings.classifier, settings.finetune
    local, candidates, random, test = device.local, device.candidates, device.random, device.test
    params = localize_params(global_params, device.vocab, device.user_vocab)
    model = local_model(model, device.vocab.shape[0], device.user_vocab.shape[0])
    k_cls, k_ft = jax.random.split(key)
    local_x, cand_x = (classifier_inputs(model, params, r, cls_cfg) for r in (local, candidates))
    neg_mask, neg_x = ((candidates.mask, cand_x) if cls_cfg.negatives == "candidates"
                       else (random.mask, classifier_inputs(model, params, random, cls_cfg)))
    cls_params = train_classifier(local_x, local.mask, neg_x, neg_mask, k_cls, cls_cfg)
    cand_score = classifier_scores(cls_params, cand_x, cls_cfg)
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
    accepted = jnp.zeros(settings.matched_users, dtype=bool)
    for method in settings.methods:
        if method == "global":
            logits.append(score(model, params, test))
            continue
        if method == "mpda":
            tuned, accepted = mpda_finetune(model, params, local, device.matched, settings.matched_users, k_ft,
                                            ft_cfg, settings.mpda)
            logits.append(score(model, tuned, test))
            continue
        aug_rows, aug_weights = augment.get(method, (None, None))
        # One fine-tuning key for every method: common random numbers for the paired comparisons.
        tuned = finetune(model, params, local, local.mask.astype(jnp.float32), aug_rows, aug_weights, k_ft, ft_cfg)
        logits.append(score(model, tuned, test))
    return {"logits": jnp.stack(logits), "kept": kept, "candidate_score": cand_score, "mpda_accepted": accepted}


@functools.partial(jax.jit, static_argnames=("model", "settings"))
def device_stage(model: nn.Module, settings: StageSettings, global_params: dict, chunk: DeviceChunk,
                 key: jax.Array) -> dict:
    """The device stage for a chunk of ``U`` users, vmapped and jitted.

    Every user's PRNG key is ``fold_in(key, user_index)``, so a user's result does not depend on which
    chunk or slot it runs in. With ``0 < settings.lockstep_users < U`` the users go through in groups of
    that many, each group vmapped, the groups one after another inside the compiled program (``lax.map``);
    otherwise the whole chunk is one vmap.

    Returns a dict with leading user axis: ``logits`` float [U, M, Nt], ``kept`` bool [U, Nc],
    ``candidate_score`` float [U, Nc], ``mpda_accepted`` bool [U, matched users].
    """
    keys = jax.vmap(lambda u: jax.random.fold_in(key, u))(chunk.user_index)
    one_user = functools.partial(user_stage, model, settings, global_params)
    width = settings.lockstep_users
    if 0 < width < chunk.user_index.shape[0]:
        return jax.lax.map(lambda args: one_user(*args), (chunk, keys), batch_size=width)
    return jax.vmap(one_user)(chunk, keys)
