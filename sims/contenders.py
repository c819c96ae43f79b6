"""The scaling benchmark's contenders: the same per-user device stage written the ways research code is.

Every contender does what the engine does for each user (:func:`coda_jax.device.stage.user_stage`): localize
the cloud model, train the sample classifier (full-batch Adam), keep candidates, then fine-tune one lane per
method on the same minibatches (:func:`~coda_jax.device.sampler.epoch_batches` with the same keys), score
the test rows. Only how the work is dispatched differs:

- :func:`user_loop`: a Python loop over users of one jitted single-user stage (the engine's own
  ``user_stage``, so one call per user);
- :func:`step_loop`: a Python loop over users and steps, one jitted call per optimizer step;
- :func:`fedjax_loop`: FedJAX's ``for_each_client`` (its default backend), one client per user for the
  classifier and one per (user, method) lane for fine-tuning, batches built on the host as FedJAX expects.

Each returns test logits float [n, M, Nt] of the first ``n`` users of a chunk (M = methods, in order).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from coda_jax.device.chunk import DeviceChunk
from coda_jax.device.settings import StageNumbers, StageSettings
from coda_jax.device.stage import user_stage
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.device.train import (classifier_loss, classifier_scores, keep_mask, make_optimizer, score,
                                   weighted_loss)
from coda_jax.device.methods import AugmentInputs


def _user(chunk: DeviceChunk, u: int) -> DeviceChunk:
    return jax.tree_util.tree_map(lambda x: x[u], chunk)


@functools.partial(jax.jit, static_argnames=("model", "settings"))
def _one_user(model, settings: StageSettings, params, chunk: DeviceChunk, u, numbers: StageNumbers, key):
    device = jax.tree_util.tree_map(lambda x: x[u], chunk)
    out = user_stage(model, dataclasses.replace(settings, with_logits=True), params, device, numbers,
                     jax.random.fold_in(key, device.user_index))
    return out["logits"]


def user_loop(model, settings: StageSettings, params, chunk: DeviceChunk, numbers: StageNumbers, key,
              n: int) -> np.ndarray:
    """Contender (b): one jitted single-user stage called for each of the first ``n`` users of ``chunk``
    (already on the device; each call slices its user there). ``numbers`` scalars, ``key`` the repeat's key.
    Returns float [n, M, Nt]."""
    out = [_one_user(model, settings, params, chunk, jnp.int32(u), numbers, key) for u in range(n)]
    return np.stack(jax.device_get(out))


class StepPieces:
    """The per-user stage cut into jitted pieces (compiled once for a chunk's shapes): the building blocks
    of :func:`step_loop` and :func:`fedjax_loop`."""

    def __init__(self, model, settings: StageSettings, numbers: StageNumbers, chunk: DeviceChunk):
        self.settings = settings
        cls_cfg, ft_cfg = settings.classifier_config(numbers), settings.finetune_config(numbers)
        self.cls_cfg, self.ft_cfg = cls_cfg, ft_cfg
        self.methods = list(settings.methods)
        clf = settings.classifier_model
        m = self.model = local_model(model, chunk.vocab.shape[1], chunk.user_vocab.shape[1])
        cls_opt, ft_opt = optax.adam(cls_cfg.learning_rate), make_optimizer(ft_cfg)
        trainable = tuple(ft_cfg.trainable)

        def cls_init(key, x):
            p = clf.init(key, x[:1])["params"]
            return p, cls_opt.init(p)

        def cls_step(p, s, x, y, w):
            g = jax.grad(lambda q: classifier_loss(clf, q, x, y, w, cls_cfg.l2))(p)
            u, s = cls_opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        def start(global_params, d, key):
            """Localize; the keys; the classifier's inputs x [Nl + Nc, D], labels and class weights."""
            k_cls, k_ft = jax.random.split(jax.random.fold_in(key, d.user_index))
            p = localize_params(global_params, d.vocab, d.user_vocab)
            x = jnp.concatenate([d.local.vector, d.candidates.vector])
            y = jnp.concatenate([jnp.ones(d.local.width), jnp.zeros(d.candidates.width)])
            pm, nm = d.local.mask, d.candidates.mask
            w = jnp.concatenate([pm / jnp.maximum(pm.sum(), 1), nm / jnp.maximum(nm.sum(), 1)])
            return p, k_cls, k_ft, x, y, w

        def lanes(cls_params, d, k_ft):
            """Kept candidates -> every lane's rows (lists of L features / labels [Nl + Nc]) and minibatches
            idx / weights [L, S, B]."""
            cand_score = classifier_scores(clf, cls_params, d.candidates.vector)
            kept = keep_mask(cand_score, d.candidates.mask, cls_cfg)
            inputs = AugmentInputs(local=d.local, candidates=d.candidates, random=d.random, kept=kept,
                                   candidate_score=cand_score, finetune=ft_cfg)
            feats, labels, idx, weights = [], [], [], []
            for method in self.methods:
                rows, w = method.augment(inputs)
                w = jnp.where(rows.mask, jnp.asarray(w, jnp.float32), 0.0)
                i, rw = _batches(k_ft, d.local.mask.astype(jnp.float32), w, ft_cfg)
                feats.append(jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), d.local.features,
                                                    rows.features))
                labels.append(jnp.concatenate([d.local.label, rows.label]))
                idx.append(i)
                weights.append(rw)
            return feats, labels, jnp.stack(idx), jnp.stack(weights)

        def ft_step(tr, fr, s, feats, labels, i, w):
            """One optimizer step of one lane: gather the step's rows, forward, backward, update."""
            batch = jax.tree_util.tree_map(lambda x: x[i], feats)
            g = jax.grad(lambda t: weighted_loss(m, {**fr, **t}, batch, labels[i], w))(tr)
            u, s = ft_opt.update(g, s, tr)
            return optax.apply_updates(tr, u), s

        self.split = lambda p: split_trainable(p, trainable)
        self.cls_init_fn, self.cls_step_fn, self.ft_step_fn = cls_init, cls_step, ft_step
        self.ft_opt_init_fn = ft_opt.init
        self.cls_init, self.cls_step = jax.jit(cls_init), jax.jit(cls_step)
        self.start, self.lanes, self.ft_step = jax.jit(start), jax.jit(lanes), jax.jit(ft_step)
        self.ft_opt_init = jax.jit(ft_opt.init)
        self.predict = jax.jit(lambda p, rows: score(m, p, rows))


def _batches(key, local_w, aug_w, ft_cfg):
    from coda_jax.device.sampler import epoch_batches  # noqa: PLC0415

    return epoch_batches(key, local_w, aug_w, ft_cfg)


def step_loop(pieces: StepPieces, params, chunk: DeviceChunk, key, n: int) -> np.ndarray:
    """Contender (c): a Python loop over the first ``n`` users and over every optimizer step (classifier
    and each lane's fine-tuning), one jitted call per step. Returns float [n, M, Nt]."""
    out = []
    for u in range(n):
        d = jax.device_put(_user(chunk, u))
        p, k_cls, k_ft, x, y, w = pieces.start(params, d, key)
        cp, s = pieces.cls_init(k_cls, x)
        for _ in range(pieces.cls_cfg.steps):
            cp, s = pieces.cls_step(cp, s, x, y, w)
        feats, labels, idx, weights = pieces.lanes(cp, d, k_ft)
        idx, weights = np.asarray(idx), np.asarray(weights)         # host slices per step cost no dispatch
        tr0, fr = pieces.split(p)
        logits = []
        for lane in range(len(pieces.methods)):
            tr, s = tr0, pieces.ft_opt_init(tr0)
            for step in range(pieces.ft_cfg.steps):
                tr, s = pieces.ft_step(tr, fr, s, feats[lane], labels[lane], idx[lane, step], weights[lane, step])
            logits.append(pieces.predict({**fr, **tr}, d.test))
        out.append(jnp.stack(logits))
    return np.stack(jax.device_get(out))


def fedjax_available() -> bool:
    """Whether FedJAX imports here (the optional ``bench`` extra)."""
    try:
        import fedjax  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - any import failure means: skip this contender
        return False
    return True


def _fedjax_passes(pieces: StepPieces):
    """FedJAX's two ``for_each_client`` functions over ``pieces`` (built once: each jits its client functions)."""
    if getattr(pieces, "_fedjax", None) is None:
        import fedjax  # noqa: PLC0415

        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        cls_pass = fedjax.for_each_client(
            lambda shared, c: pieces.cls_init_fn(c["key"], c["x"]),
            lambda st, b: pieces.cls_step_fn(st[0], st[1], b["x"], b["y"], b["w"]),
            lambda shared, st: st[0])

        def ft_init(shared, c):
            return {"tr": c["tr"], "opt": pieces.ft_opt_init_fn(c["tr"]), "fr": c["fr"], "test": c["test"]}

        def ft_step(st, b):
            tr, opt = pieces.ft_step_fn(st["tr"], st["fr"], st["opt"], b["x"], b["y"], b["i"], b["w"])
            return {**st, "tr": tr, "opt": opt}

        ft_pass = fedjax.for_each_client(
            ft_init, ft_step, lambda shared, st: score(pieces.model, {**st["fr"], **st["tr"]}, st["test"]))
        pieces._fedjax = (cls_pass, ft_pass)
    return pieces._fedjax


def fedjax_loop(pieces: StepPieces, params, chunk: DeviceChunk, key, n: int) -> np.ndarray:
    """Contender (d): FedJAX's ``for_each_client`` (default backend) over the first ``n`` users: the
    classifier with one client per user (``classifier.steps`` full batches), then fine-tuning with one client
    per (user, method) lane whose batches are gathered on the host (numpy), as FedJAX's client datasets
    give them. Returns float [n, M, Nt]."""
    cls_pass, ft_pass = _fedjax_passes(pieces)
    users = [jax.device_put(_user(chunk, u)) for u in range(n)]
    starts = [pieces.start(params, d, key) for d in users]
    clients = []
    for u, (p, k_cls, k_ft, x, y, w) in enumerate(starts):
        batch = {"x": np.asarray(x), "y": np.asarray(y), "w": np.asarray(w)}
        clients.append((u, [batch] * pieces.cls_cfg.steps, {"key": k_cls, "x": batch["x"]}))
    cls_params = dict(cls_pass(None, clients))
    clients = []
    for u, d in enumerate(users):
        p, _, k_ft = starts[u][:3]
        feats, labels, idx, weights = jax.device_get(pieces.lanes(cls_params[u], d, k_ft))
        tr, fr = pieces.split(p)
        test = jax.tree_util.tree_map(np.asarray, d.test).replace(vector=np.zeros((d.test.width, 0), np.float32))
        for lane in range(len(pieces.methods)):
            rows = feats[lane]
            batches = []
            for step in range(pieces.ft_cfg.steps):
                i = idx[lane, step]
                gathered = {k: v[i] for k, v in rows.items()}          # the step's rows, gathered on the host
                positions = np.arange(len(i), dtype=np.int32)
                batches.append({"x": gathered, "y": labels[lane][i], "i": positions, "w": weights[lane, step]})
            clients.append(((u, lane), batches, {"tr": tr, "fr": fr, "test": test}))
    logits = dict(ft_pass(None, clients))
    m = len(pieces.methods)
    return np.stack([np.stack([np.asarray(logits[(u, lane)]) for lane in range(m)]) for u in range(n)])
