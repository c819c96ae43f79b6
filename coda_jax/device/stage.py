"""The compiled device stage: every user of a chunk, every method, repeat and sweep point in one program.

Lanes: inside one user's stage every fine-tuned method is one lane of a single vmapped fine-tuning scan
(:func:`user_stage`); around it, repeats (device keys) and sweep points (:class:`StageNumbers` vectors) are
vmapped too, and the users of a chunk go through in lockstep groups (:func:`device_stage`). The per-user
test AUC is computed inside the program, so a chunk returns only ``[U, P, R, M]`` numbers.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from coda_jax.device.chunk import DeviceChunk, Rows
from coda_jax.device.settings import StageNumbers, StageSettings
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.device.train import (classifier_inputs, classifier_scores, concat_rows, finetune, keep_mask, score,
                                   train_classifier)
from coda_jax.methods import AugmentInputs, get_method
from kernels.auc import masked_auc

USERS = "users"
"""The mesh axis the user axis of a chunk is sharded over."""


def _stack(trees: list):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def user_stage(model: nn.Module, settings: StageSettings, global_params: dict, device: DeviceChunk,
               numbers: StageNumbers, key: jax.Array, with_logits: bool = False) -> dict:
    """The whole device stage for one user and one set of numbers: ``device`` is one user's slice of a
    :class:`DeviceChunk` (no leading user axis); ``numbers`` scalars.

    Trains the sample classifier, keeps candidates, fine-tunes every method of ``settings.methods`` that
    fine-tunes as one lane of one vmapped scan (lanes share the local-row draws), scores the test rows.

    Returns a dict (``M`` = methods, in ``settings.methods`` order): ``auc`` float [M] test AUC (NaN where
    undefined or where a test logit is not finite), ``nonfinite`` int32 [M] non-finite test logits,
    ``aug_rows`` float [M] augmented rows each method trained on, ``kept`` bool [Nc] candidates the
    classifier kept, ``mpda_accepted`` bool [matched users]; with ``with_logits`` also ``logits`` float
    [M, Nt] and ``candidate_score`` float [Nc].
    """
    cls_cfg, ft_cfg = settings.classifier_config(numbers), settings.finetune_config(numbers)
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
    inputs = AugmentInputs(local=local, candidates=candidates, random=random, kept=kept,
                           candidate_score=cand_score, finetune=ft_cfg)

    methods = [get_method(m) for m in settings.methods]
    lanes = [m for m in methods if m.finetunes]
    accepted = jnp.zeros(settings.matched_users, dtype=bool)
    tuned_logits, lane_rows = {}, {}
    if lanes:
        starts, aug_rows, aug_w = [], [], []
        for m in lanes:
            rows, w = m.augment(inputs)
            w = jnp.where(rows.mask, jnp.asarray(w, jnp.float32), 0.0)
            start, extra_rows = params, jnp.float32(0.0)
            if m.start is not None:
                start, accepted, extra_rows = m.start(model, params, device, k_ft, ft_cfg, settings)
            starts.append(split_trainable(start, tuple(ft_cfg.trainable))[0])
            aug_rows.append(Rows(features=rows.features, label=rows.label, mask=rows.mask,
                                 vector=jnp.zeros(rows.mask.shape[:1] + (0,), jnp.float32), row=rows.row))
            aug_w.append(w)
            lane_rows[m.name] = jnp.sum(w > 0).astype(jnp.float32) + extra_rows
        frozen = split_trainable(params, tuple(ft_cfg.trainable))[1]
        local_w = local.mask.astype(jnp.float32)
        lean_local = local.replace(vector=jnp.zeros(local.mask.shape[:1] + (0,), jnp.float32))

        def lane(start_train, rows, w):
            # One fine-tuning key for every lane: common random numbers for the paired comparisons.
            tuned = finetune(model, {**frozen, **start_train}, lean_local, local_w, rows, w, k_ft, ft_cfg)
            return score(model, tuned, test)

        logits = jax.vmap(lane)(_stack(starts), _stack(aug_rows), jnp.stack(aug_w))      # [lanes, Nt]
        tuned_logits = {m.name: logits[i] for i, m in enumerate(lanes)}
    global_logits = score(model, params, test)
    logits = jnp.stack([tuned_logits.get(m.name, global_logits) for m in methods])       # [M, Nt]
    m_count = len(methods)
    auc, _ = masked_auc(logits, jnp.broadcast_to(test.label, logits.shape), jnp.broadcast_to(test.mask, logits.shape))
    out = {"auc": auc,
           "nonfinite": jnp.sum(test.mask & ~jnp.isfinite(logits), axis=1, dtype=jnp.int32),
           "aug_rows": jnp.stack([lane_rows.get(m.name, jnp.float32(0.0)) for m in methods]).reshape(m_count),
           "kept": kept, "mpda_accepted": accepted}
    if with_logits:
        out.update(logits=logits, candidate_score=cand_score)
    return out


def _shard_map(fn, mesh: Mesh, n_in: int):
    """``fn`` run per device on its share of the user axis (the first argument's leading axis)."""
    specs = (PartitionSpec(USERS),) + (PartitionSpec(),) * (n_in - 1)
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(USERS), check_vma=False)
    from jax.experimental.shard_map import shard_map  # noqa: PLC0415 - older jax

    return shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(USERS), check_rep=False)


@functools.partial(jax.jit, static_argnames=("model", "settings", "with_logits", "mesh"))
def device_stage(model: nn.Module, settings: StageSettings, global_params: dict, chunk: DeviceChunk,
                 numbers: StageNumbers, keys: jax.Array, with_logits: bool = False, mesh: Mesh | None = None) -> dict:
    """The device stage for a chunk of ``U`` users, ``P`` sweep points and ``R`` repeats, vmapped and jitted.

    Args:
      model, settings: static (a new value compiles a new program).
      global_params: the cloud model's parameters.
      chunk: :class:`DeviceChunk` with leading user axis [U].
      numbers: :class:`StageNumbers` of [P] vectors (P sweep points).
      keys: [R] PRNG keys, one per repeat. User ``u``'s key in repeat ``r`` is ``fold_in(keys[r],
        user_index[u])``, so a user's result does not depend on which chunk or slot it runs in.
      with_logits: also return the test logits and the classifier's candidate scores.
      mesh: a mesh with axis ``"users"``: the user axis is split over its devices (``U`` must be a multiple
        of their number); None runs on one device.

    Users x points x repeats form one flat axis of units; with ``0 < settings.lockstep_users`` < units per
    device, units go through in groups of that many, each group vmapped (methods as lanes inside), the groups
    one after another inside the program (``lax.map``).

    Returns a dict of :func:`user_stage`'s outputs with leading axes ``[U, P, R]``: ``auc`` / ``aug_rows``
    float [U, P, R, M], ``nonfinite`` int32 [U, P, R, M], ``kept`` bool [U, P, R, Nc], ``mpda_accepted`` bool
    [U, P, R, matched users] (and ``logits`` [U, P, R, M, Nt], ``candidate_score`` [U, P, R, Nc]).
    """

    def users(c: DeviceChunk, params, nums: StageNumbers, ks):
        n_users, n_points, n_keys = c.user_index.shape[0], nums.points, ks.shape[0]

        def unit(device: DeviceChunk, p, r):
            n = jax.tree_util.tree_map(lambda x: x[p], nums)
            return user_stage(model, settings, params, device, n, jax.random.fold_in(ks[r], device.user_index),
                              with_logits)

        # Users x points x repeats run as one flat axis of units: one batch dimension (beside the methods'
        # lanes) keeps XLA's batched products on their fast path; nested vmaps of size-1 axes halve the speed.
        if n_points * n_keys == 1:
            units, fn = c, lambda d: unit(d, 0, 0)
        else:
            i = jnp.arange(n_users * n_points * n_keys)
            units = (i // (n_points * n_keys), (i // n_keys) % n_points, i % n_keys)
            fn = lambda upr: unit(jax.tree_util.tree_map(lambda x: x[upr[0]], c), upr[1], upr[2])  # noqa: E731
        width = settings.lockstep_users
        total = n_users * n_points * n_keys
        out = (jax.lax.map(fn, units, batch_size=width) if 0 < width < total else jax.vmap(fn)(units))
        return jax.tree_util.tree_map(lambda x: x.reshape((n_users, n_points, n_keys) + x.shape[1:]), out)

    if mesh is not None and mesh.size > 1:
        users = _shard_map(users, mesh, 4)
    return users(chunk, global_params, numbers, keys)
