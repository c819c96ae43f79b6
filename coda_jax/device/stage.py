"""The compiled device stage: every user of a chunk, every method, repeat and sweep point in one program.

A *unit* is one user with one set of numbers (a sweep point) and one device key (a repeat). Per unit
:func:`prepare_lanes` trains the sample classifier and builds one *lane* per fine-tuned method;
:func:`units_stage` runs the lanes of a group of units as one vmapped fine-tuning scan over a single flat axis
(:func:`run_lane`), and :func:`finish_user` scores and computes each method's test AUC inside the program.
:func:`device_stage` walks a chunk's units in lockstep groups, split over devices, so a chunk returns only
``[U, P, R, M]`` numbers. :func:`user_stage` is the same for one user (tests, research code).
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
from coda_jax.device.train import (classifier_scores, finetune, keep_mask, score,
                                   train_classifier)
from coda_jax.device.methods import AugmentInputs
from kernels.auc import masked_auc
from kernels.sharding import shard_map

USERS = "users"
"""The mesh axis the user axis of a chunk is sharded over."""


def _stack(trees: list):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _lean(rows: Rows) -> Rows:
    """Rows without their sample vectors (fine-tuning and scoring do not read them)."""
    return rows.replace(vector=jnp.zeros(rows.mask.shape + (0,), jnp.float32))


def prepare_lanes(model: nn.Module, settings: StageSettings, global_params: dict, device: DeviceChunk,
                  numbers: StageNumbers, key: jax.Array) -> dict:
    """One user's stage up to fine-tuning: its model copy, the sample classifier, the kept candidates, and
    each fine-tuned method's lane inputs. ``device`` is one user's slice of a :class:`DeviceChunk`.

    Returns a dict: ``params`` (the device's model copy), ``kept`` bool [Nc], ``candidate_score`` float [Nc],
    ``mpda_accepted`` bool [matched users], ``key`` (the fine-tuning key, shared by every lane), and with a
    leading lane axis [L] (the methods that fine-tune, in ``settings.methods`` order): ``start`` (trainable
    parameters each lane starts from), ``aug`` (augmented :class:`Rows` [L, Nc]), ``aug_weight`` float
    [L, Nc], ``aug_rows`` float [L] (rows each lane trains on beside the local ones).
    """
    cls_cfg, ft_cfg = settings.classifier_config(numbers), settings.finetune_config(numbers)
    local, candidates, random = device.local, device.candidates, device.random
    params = localize_params(global_params, device.vocab, device.user_vocab)
    model = local_model(model, device.vocab.shape[0], device.user_vocab.shape[0])
    k_cls, k_ft = jax.random.split(key)
    local_x, cand_x = local.vector, candidates.vector          # the classifier sees the sample vectors
    neg_mask, neg_x = ((candidates.mask, cand_x) if cls_cfg.negatives == "candidates"
                       else (random.mask, random.vector))
    classifier = settings.classifier_model
    cls_params = train_classifier(classifier, (local_x, local.mask), (neg_x, neg_mask), k_cls, cls_cfg)
    cand_score = classifier_scores(classifier, cls_params, cand_x)
    kept = keep_mask(cand_score, candidates.mask, cls_cfg)
    inputs = AugmentInputs(local=local, candidates=candidates, random=random, kept=kept,
                           candidate_score=cand_score, finetune=ft_cfg, key=jax.random.fold_in(k_ft, 1))
    out = {"params": params, "kept": kept, "candidate_score": cand_score, "key": k_ft,
           "mpda_accepted": jnp.zeros(settings.matched_users, dtype=bool),
           "classifier_auc": classifier_aucs(cand_score, candidates)}
    starts, aug, aug_w, aug_rows, aug_own = [], [], [], [], []
    for m in settings.methods:
        if not m.finetunes:
            continue
        rows, w = m.augment(inputs)
        w = jnp.where(rows.mask, jnp.asarray(w, jnp.float32), 0.0)
        start, extra_rows = params, jnp.float32(0.0)
        if m.start is not None:
            start, out["mpda_accepted"], extra_rows = m.start(model, params, device, k_ft, ft_cfg, settings)
        starts.append(split_trainable(start, tuple(ft_cfg.trainable))[0])
        aug.append(_lean(rows))
        aug_w.append(w)
        aug_rows.append(jnp.sum(w > 0).astype(jnp.float32) + extra_rows)
        aug_own.append(own_share(rows, w > 0))
    if starts:
        out.update(start=_stack(starts), aug=_stack(aug), aug_weight=jnp.stack(aug_w), aug_rows=jnp.stack(aug_rows),
                   aug_own=jnp.stack(aug_own))
    return out


def own_share(rows: Rows, used: jnp.ndarray) -> jnp.ndarray:
    """Share of the ``used`` rows (bool [N]) that are own-group rows (``rows.own``): float scalar, NaN if none
    are used (and meaningless without a planted world, where ``own`` is all False)."""
    n = jnp.sum(used & rows.mask)
    return jnp.where(n > 0, jnp.sum(used & rows.mask & rows.own) / jnp.maximum(n, 1), jnp.nan)


def classifier_aucs(cand_score: jnp.ndarray, candidates: Rows) -> jnp.ndarray:
    """The sample classifier's own AUC on the device's candidates: float [2], own- vs other-group candidates
    and fresh vs stale ones (NaN where a user's candidates hold one kind only, e.g. without a planted world)."""
    labels = jnp.stack([candidates.own, candidates.fresh]).astype(jnp.float32)
    auc, _ = masked_auc(jnp.broadcast_to(cand_score, labels.shape), labels,
                        jnp.broadcast_to(candidates.mask, labels.shape))
    return auc


def run_lane(model: nn.Module, settings: StageSettings, unit: tuple, lane: tuple, key: jax.Array) -> jnp.ndarray:
    """One lane: fine-tune one user's model copy (``model`` sized to its vocabularies), then score its test rows:
    float [Nt].

    Args:
      unit: ``(local, test, numbers, frozen)``: the user's local rows [Nl] and test rows [Nt], its numbers and
        the parameters that do not move.
      lane: ``(start, aug, aug_weight)``: the trainable parameters the lane starts from and its augmented rows
        [Nc] with their weights [Nc].
      key: the fine-tuning key; every lane of a user gets the same one (common random numbers).
    """
    local, test, numbers, frozen = unit
    start, aug, aug_weight = lane
    ft_cfg = settings.finetune_config(numbers)
    tuned = finetune(model, {**frozen, **start}, (local, local.mask.astype(jnp.float32)), (aug, aug_weight), key,
                     ft_cfg)
    return score(model, tuned, test)


def finish_user(model: nn.Module, settings: StageSettings, device: DeviceChunk, prep: dict,
                lane_logits: jnp.ndarray | None) -> dict:
    """One user's results from :func:`prepare_lanes` and its lanes' test logits [L, Nt]: see :func:`user_stage`."""
    model = local_model(model, device.vocab.shape[0], device.user_vocab.shape[0])
    test = device.test
    global_logits = score(model, prep["params"], test)
    logits, rows, own, lane = [], [], [], 0
    for m in settings.methods:
        if m.finetunes:
            logits.append(lane_logits[lane])
            rows.append(prep["aug_rows"][lane])
            own.append(prep["aug_own"][lane])
            lane += 1
        else:
            logits.append(global_logits)
            rows.append(jnp.float32(0.0))
            own.append(jnp.float32(jnp.nan))
    logits = jnp.stack(logits)                                                            # [M, Nt]
    auc, _ = masked_auc(logits, jnp.broadcast_to(test.label, logits.shape), jnp.broadcast_to(test.mask, logits.shape))
    out = {"auc": auc, "nonfinite": jnp.sum(test.mask & ~jnp.isfinite(logits), axis=1, dtype=jnp.int32),
           "aug_rows": jnp.stack(rows), "kept": prep["kept"], "mpda_accepted": prep["mpda_accepted"],
           "aug_own": jnp.stack(own), "classifier_auc": prep["classifier_auc"]}
    if settings.with_logits:
        out.update(logits=logits, candidate_score=prep["candidate_score"])
    return out


def units_stage(model: nn.Module, settings: StageSettings, global_params: dict, devices: DeviceChunk,
                numbers: StageNumbers, keys: jax.Array) -> dict:
    """The device stage for a batch of ``W`` units (a user with one set of numbers and one key each):
    ``devices`` [W, ...], ``numbers`` [W], ``keys`` [W].

    The units' lanes (W x L fine-tuning runs) are vmapped over one flat axis: XLA's batched products stay on
    their fast path with one batch dimension (a vmap of lanes inside a vmap of users halves the speed on a
    CPU). Returns :func:`user_stage`'s dict with a leading [W] axis.
    """
    prep = jax.vmap(functools.partial(prepare_lanes, model, settings, global_params))(devices, numbers, keys)
    lane_logits = None
    if "start" in prep:
        w, n_lanes = keys.shape[0], prep["aug_weight"].shape[1]

        def flat(x):              # [W, L, ...] -> [W * L, ...]
            return x.reshape((w * n_lanes,) + x.shape[2:])

        def per_lane(x):          # [W, ...] -> [W * L, ...], each unit's value for each of its lanes
            return jnp.repeat(x, n_lanes, axis=0)

        trainable = tuple(settings.finetune.trainable)
        frozen = split_trainable(prep["params"], trainable)[1]
        lane_model = local_model(model, devices.vocab.shape[1], devices.user_vocab.shape[1])
        one = functools.partial(run_lane, lane_model, settings)
        per_unit = (_lean(devices.local), _lean(devices.test), numbers, frozen)
        lane_logits = jax.vmap(one)(jax.tree_util.tree_map(per_lane, per_unit),
                                    jax.tree_util.tree_map(flat, (prep["start"], prep["aug"], prep["aug_weight"])),
                                    per_lane(prep["key"]))
        lane_logits = lane_logits.reshape((w, n_lanes) + lane_logits.shape[1:])
    finish = functools.partial(finish_user, model, settings)
    if lane_logits is None:
        return jax.vmap(lambda d, p: finish(d, p, None))(devices, prep)
    return jax.vmap(finish)(devices, prep, lane_logits)


def user_stage(model: nn.Module, settings: StageSettings, global_params: dict, device: DeviceChunk,
               numbers: StageNumbers, key: jax.Array) -> dict:
    """The whole device stage for one user and one set of numbers: ``device`` is one user's slice of a
    :class:`DeviceChunk` (no leading user axis); ``numbers`` scalars.

    Trains the sample classifier, keeps candidates, fine-tunes every method of ``settings.methods`` that
    fine-tunes as one lane (lanes share the fine-tuning key: the same local-row draws where the sampling
    allows), scores the test rows.

    Returns a dict (``M`` = methods, in ``settings.methods`` order): ``auc`` float [M] test AUC (NaN where
    undefined or where a test logit is not finite), ``nonfinite`` int32 [M] non-finite test logits,
    ``aug_rows`` float [M] augmented rows each method trained on, ``kept`` bool [Nc] candidates the
    classifier kept, ``mpda_accepted`` bool [matched users], ``aug_own`` float [M] the own-group share of each
    method's augmented rows (NaN for none; planted worlds), ``classifier_auc`` float [2] the classifier's AUC
    own- vs other-group and fresh vs stale candidates (:func:`classifier_aucs`); with ``settings.with_logits``
    also ``logits`` float
    [M, Nt] and ``candidate_score`` float [Nc].
    """
    batch = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], (device, numbers, key))
    out = units_stage(model, settings, global_params, *batch)
    return jax.tree_util.tree_map(lambda x: x[0], out)


def _shard_map(fn, mesh: Mesh, n_in: int):
    """``fn`` run per device on its share of the user axis (the first argument's leading axis)."""
    return shard_map(fn, mesh, (PartitionSpec(USERS),) + (PartitionSpec(),) * (n_in - 1), PartitionSpec(USERS))


@functools.partial(jax.jit, static_argnames=("model", "settings"))
def device_stage(model: nn.Module, settings: StageSettings, global_params: dict, chunk: DeviceChunk,
                 numbers: StageNumbers, keys: jax.Array) -> dict:
    """The device stage for a chunk of ``U`` users, ``P`` sweep points and ``R`` repeats, vmapped and jitted.

    Args:
      model, settings: static (a new value compiles a new program). ``settings.with_logits``: also return the
        test logits and the classifier's candidate scores; ``settings.mesh``: a mesh with axis ``"users"``: the
        user axis is split over its devices (``U`` must be a multiple of their number); None runs on one
        device.
      global_params: the cloud model's parameters.
      chunk: :class:`DeviceChunk` with leading user axis [U].
      numbers: :class:`StageNumbers` of [P] vectors (P sweep points).
      keys: [R] PRNG keys, one per repeat. User ``u``'s key in repeat ``r`` is ``fold_in(keys[r],
        user_index[u])``, so a user's result does not depend on which chunk or slot it runs in.

    Users x points x repeats form one flat axis of units; with ``0 < settings.lockstep_users`` < units per
    device, units go through in groups of that many, each group vmapped (methods as lanes inside), the groups
    one after another inside the program (``lax.map``).

    Returns a dict of :func:`user_stage`'s outputs with leading axes ``[U, P, R]``: ``auc`` / ``aug_rows``
    float [U, P, R, M], ``nonfinite`` int32 [U, P, R, M], ``kept`` bool [U, P, R, Nc], ``mpda_accepted`` bool
    [U, P, R, matched users], ``aug_own`` float [U, P, R, M], ``classifier_auc`` float [U, P, R, 2] (and ``logits`` [U, P, R, M, Nt], ``candidate_score`` [U, P, R, Nc]).
    """

    def users(c: DeviceChunk, params, nums: StageNumbers, ks):
        # Users x points x repeats run as one flat axis of units (and their lanes as one flat axis inside
        # units_stage): one batch dimension keeps XLA's batched products on their fast path. Units go in
        # groups of the lockstep width; each group gathers its own users' rows (never all units at once).
        n_users, n_points, n_keys = c.user_index.shape[0], nums.points, ks.shape[0]
        total = n_users * n_points * n_keys
        width = settings.lockstep_users
        width = width if 0 < width < total else total
        groups = -(-total // width)
        i = jnp.minimum(jnp.arange(groups * width), total - 1).reshape(groups, width)   # the last group repeats
        flat_numbers = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_points,)), nums)

        def group(unit):
            u, p, r = unit // (n_points * n_keys), (unit // n_keys) % n_points, unit % n_keys
            devices = jax.tree_util.tree_map(lambda x: x[u], c)
            keys = jax.vmap(jax.random.fold_in)(ks[r], devices.user_index)
            numbers = jax.tree_util.tree_map(lambda x: x[p], flat_numbers)
            return units_stage(model, settings, params, devices, numbers, keys)

        out = jax.lax.map(group, i) if groups > 1 else jax.tree_util.tree_map(lambda x: x[None], group(i[0]))
        return jax.tree_util.tree_map(
            lambda x: x.reshape((groups * width,) + x.shape[2:])[:total].reshape((n_users, n_points, n_keys)
                                                                                + x.shape[2:]), out)

    if settings.mesh is not None and settings.mesh.size > 1:
        users = _shard_map(users, settings.mesh, 4)
    return users(chunk, global_params, numbers, keys)
