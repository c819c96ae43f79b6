"""Benchmark: the vmapped device stage vs a plain per-user loop over a jitted per-minibatch step.

Both run the same work for the same users: train the sample classifier (full-batch Adam steps), keep the
top fraction of candidates, fine-tune the model copy on local + kept rows (minibatch Adam steps, drawn as
finetune.sampling says), score the test rows. The loop version is how per-user research code is usually
written: one user at a time, one jitted step call per step, minibatches drawn on the host.

  python -m sims.bench_engine --users 1024 --steps 50      (or: coda-sim bench engine)

Prints the device, both times (the engine with and without its one compilation) and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from coda_jax.config import Config
from coda_jax.data.dataset import make_dataset
from coda_jax.device.chunk import DeviceChunk, make_chunk
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.cloud.pretrain import bce_loss
from coda_jax.device.train import StageSettings, classifier_loss, classifier_scores, device_stage, keep_mask
from coda_jax.models.classifier import SampleClassifier
from coda_jax.simulate import cloud_stage


def bench_config(users: int, steps: int) -> Config:
    """The benchmark's config: the default model and device settings, ``users`` synthetic users, coda only."""
    cfg = Config()
    return dataclasses.replace(
        cfg, methods=("coda",),
        synthetic=dataclasses.replace(cfg.synthetic, num_users=users),
        cloud=dataclasses.replace(cfg.cloud, epochs=1),
        retrieval=dataclasses.replace(cfg.retrieval, recall_queries=0),
        finetune=dataclasses.replace(cfg.finetune, steps=steps))


def per_user_loop(model, params, chunk: DeviceChunk, cfg: Config, seed: int = 0) -> np.ndarray:
    """The same device stage, one user at a time; returns test logits [U, Nt] of the coda method."""
    cls_cfg, ft_cfg = cfg.classifier, cfg.finetune
    clf = SampleClassifier(kind=cls_cfg.kind, hidden=cls_cfg.hidden)
    m = local_model(model, chunk.vocab.shape[1], chunk.user_vocab.shape[1])
    cls_opt, ft_opt = optax.adam(cls_cfg.learning_rate), optax.adam(ft_cfg.learning_rate)

    @jax.jit
    def cls_step(p, s, x, y, w):
        u, s = cls_opt.update(jax.grad(lambda q: classifier_loss(clf, q, x, y, w, cls_cfg.l2))(p), s, p)
        return optax.apply_updates(p, u), s

    cls_score = jax.jit(lambda p, x: classifier_scores(p, x, cls_cfg))

    @jax.jit
    def ft_step(tr, fr, s, batch, labels, weights):
        u, s = ft_opt.update(jax.grad(lambda t: bce_loss(m, {**fr, **t}, batch, labels, weights))(tr), s, tr)
        return optax.apply_updates(tr, u), s

    @jax.jit
    def predict(p, feats):
        return m.apply({"params": p}, feats)[0]

    c = jax.tree_util.tree_map(np.asarray, chunk)
    rng = np.random.default_rng(seed)
    out = []
    for u in range(c.user_mask.shape[0]):
        # (a) classifier: local rows vs candidates, class-balanced, full batch
        x = np.concatenate([c.local.vector[u], c.candidates.vector[u]])
        y = np.concatenate([np.ones(c.local.width), np.zeros(c.candidates.width)]).astype(np.float32)
        pm, nm = c.local.mask[u], c.candidates.mask[u]
        w = np.concatenate([pm / max(pm.sum(), 1), nm / max(nm.sum(), 1)]).astype(np.float32)
        p = clf.init(jax.random.PRNGKey(u), x[:1])["params"]
        s = cls_opt.init(p)
        for _ in range(cls_cfg.steps):
            p, s = cls_step(p, s, x, y, w)
        kept = np.asarray(keep_mask(cls_score(p, c.candidates.vector[u]), jnp.asarray(nm), cls_cfg))
        # (b) fine-tune on local + kept rows, minibatches drawn on the host
        local_rows, kept_rows = np.flatnonzero(pm), c.local.width + np.flatnonzero(kept)
        feats = {k: np.concatenate([c.local.features[k][u], c.candidates.features[k][u]]) for k in c.local.features}
        labels = np.concatenate([c.local.label[u], c.candidates.label[u]])
        local_p = localize_params(params, jnp.asarray(c.vocab[u]), jnp.asarray(c.user_vocab[u]))
        tr, fr = split_trainable(local_p, tuple(ft_cfg.trainable))
        s = ft_opt.init(tr)
        b, b_aug = ft_cfg.batch_size, ft_cfg.aug_batch_size or ft_cfg.batch_size
        pool = np.concatenate([local_rows, kept_rows])
        share = len(kept_rows) / max(len(pool), 1)           # stratified: the augmented stratum's weight
        weights = (np.concatenate([np.full(b, (1 - share) / b), np.full(b_aug, share / b_aug)]).astype(np.float32)
                   if ft_cfg.sampling == "stratified" else np.full(b, 1.0 / b, np.float32))
        for _ in range(ft_cfg.steps):
            if ft_cfg.sampling == "stratified":
                idx = np.concatenate([rng.choice(local_rows, b), rng.choice(kept_rows if len(kept_rows) else local_rows, b_aug)])
            else:
                idx = rng.choice(pool, b)
            tr, s = ft_step(tr, fr, s, {k: v[idx] for k, v in feats.items()}, labels[idx], weights)
        out.append(np.asarray(predict({**fr, **tr}, {k: v[u] for k, v in c.test.features.items()})))
    return np.stack(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50, help="fine-tuning steps per user")
    parser.add_argument("--loop-users", type=int, default=0,
                        help="time the loop on this many users and scale to --users (0 = all users)")
    parser.add_argument("--chunk-users", type=int, default=0, help="users per vmapped chunk (0 = the config's)")
    parser.add_argument("--lockstep-users", type=int, default=-1,
                        help="users vmapped together inside a chunk (0 = the whole chunk; default: the config's)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    cfg = bench_config(args.users, args.steps)
    data = make_dataset(cfg)
    model, params, vectors, rows, _ = cloud_stage(cfg, data, show_progress=False)
    owners = np.arange(len(data.users))
    chunk = make_chunk(data.table, vectors, rows, owners, data.users, cfg.retrieval.max_candidates,
                       cfg.engine.min_bucket, cfg.finetune.row_users)
    settings = StageSettings.from_config(cfg)
    if args.lockstep_users >= 0:
        settings = dataclasses.replace(settings, lockstep_users=args.lockstep_users)
    size = args.chunk_users or cfg.engine.chunk_users
    # The engine as the simulator runs it: chunks of `size` users, one compiled shape.
    chunks = [jax.device_put(jax.tree_util.tree_map(lambda x, s=s: x[s:s + size], chunk))
              for s in range(0, len(owners), size)]
    if len(chunks) > 1 and chunks[-1].user_mask.shape[0] != size:
        raise SystemExit(f"--users ({len(owners)}) must be a multiple of the chunk size ({size})")

    def engine(key):
        for i, c in enumerate(chunks):     # one chunk at a time, as the simulator runs them (it reads each back)
            jax.block_until_ready(device_stage(model, settings, params, c, jax.random.fold_in(key, i)))

    t0 = time.perf_counter()
    engine(jax.random.PRNGKey(0))
    engine_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine(jax.random.PRNGKey(1))
    engine_warm = time.perf_counter() - t0
    n_loop = args.loop_users or len(owners)
    sub = jax.tree_util.tree_map(lambda x: x[:n_loop], chunk)
    t0 = time.perf_counter()
    per_user_loop(model, params, sub, cfg)
    loop = (time.perf_counter() - t0) * len(owners) / n_loop
    figures = {
        "device": str(jax.devices()[0]), "platform": jax.devices()[0].platform, "users": int(len(owners)),
        "chunk_users": size, "lockstep_users": min(settings.lockstep_users or size, size),
        "finetune_steps": cfg.finetune.steps, "classifier_steps": cfg.classifier.steps,
        "shapes": {"local": chunk.local.width, "candidates": chunk.candidates.width, "test": chunk.test.width,
                   "vocab": int(chunk.vocab.shape[1])},
        "engine_seconds_with_compile": engine_cold, "engine_seconds": engine_warm,
        "loop_seconds": loop, "loop_users_timed": n_loop,
        "speedup": loop / engine_warm, "speedup_with_compile": loop / engine_cold,
    }
    print(f"device: {figures['device']} ({figures['platform']})")
    print(f"users: {figures['users']} in chunks of {size} ({figures['lockstep_users']} in lockstep)  classifier steps: {cfg.classifier.steps}  fine-tune steps: {cfg.finetune.steps}"
          f"  batch: {cfg.finetune.batch_size}  shapes: {figures['shapes']}")
    print(f"vmapped engine: {engine_warm:.2f} s ({engine_cold:.2f} s with its compilation)")
    print(f"per-user loop:  {loop:.2f} s" + ("" if n_loop == len(owners) else f" (timed on {n_loop} users, scaled)"))
    print(f"speedup: {figures['speedup']:.1f}x ({figures['speedup_with_compile']:.1f}x counting compilation)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
