"""Benchmark: the compiled device stage vs a per-user loop doing the same work.

Both sides run the ``coda`` method for the same users with the same random draws: train the sample
classifier (full-batch Adam), keep the top fraction of candidates, fine-tune the model copy on local + kept
rows (the minibatches of :func:`~coda_jax.device.sampler.epoch_batches`), score the test rows, AUC. The
loop is how per-user research code is usually written: one user at a time, one jitted step call per
optimizer step. Both sides are warmed up (compiled) before they are timed; compile and execute times are
reported apart, with the spread over ``--repeats`` timed runs, and the two sides' per-user AUCs compared.

  python -m sims.bench_engine --users 1024 --steps 50      (or: coda-sim bench engine)
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from coda_jax.cloud.stage import cloud_stage
from coda_jax.config import Config
from coda_jax.data.dataset import make_dataset
from coda_jax.device.chunk import ChunkSpec, DeviceChunk, make_chunk
from coda_jax.device.engine import StageCompiler, device_keys, plan_chunks, run_chunks, user_mesh
from coda_jax.device.sampler import epoch_batches
from coda_jax.device.settings import StageSettings
from coda_jax.device.submodel import local_model, localize_params, split_trainable
from coda_jax.device.train import classifier_scores, keep_mask, make_optimizer, score
from coda_jax.models.registry import make_classifier
from coda_jax.models.losses import classifier_loss, weighted_loss
from kernels.auc import masked_auc


def bench_config(users: int, steps: int, chunk_users: int = 0, lockstep: int = -1, model: str = "din") -> Config:
    """The benchmark's config: ``users`` users of the synthetic default world, coda only, ``model`` (DIN by
    default: the MovieLens configs' model) fine-tuned as the MovieLens configs do (dense layers and user
    embeddings, augmented rows keeping their users) with Adam at 1e-3, matched by exact sample search."""
    cfg = Config()
    engine = cfg.engine
    if chunk_users:
        engine = dataclasses.replace(engine, chunk_users=chunk_users)
    if lockstep >= 0:
        engine = dataclasses.replace(engine, lockstep_users=lockstep)
    return dataclasses.replace(
        cfg, methods=("coda",), engine=engine,
        synthetic=dataclasses.replace(cfg.synthetic, num_users=users),
        model=dataclasses.replace(cfg.model, name=model),
        cloud=dataclasses.replace(cfg.cloud, epochs=1),
        retrieval=dataclasses.replace(cfg.retrieval, recall_queries=0, backend="exact", matching="sample"),
        classifier=dataclasses.replace(cfg.classifier, keep_fraction=0.3),
        finetune=dataclasses.replace(cfg.finetune, steps=steps, learning_rate=1e-3, optimizer="adam",
                                     trainable=("dense", "user"), row_users="original"))


class PerUserLoop:
    """The same device stage for one user at a time, one jitted call per optimizer step (compiled once for
    the chunk's shapes). ``run(chunk, u, key)`` returns user ``u``'s test logits [Nt]."""

    def __init__(self, model, params, chunk: DeviceChunk, cfg: Config):
        self.cfg, self.params = cfg, params
        cls_cfg, ft_cfg = cfg.classifier, cfg.finetune
        self.clf = make_classifier(cls_cfg)
        self.model = local_model(model, chunk.vocab.shape[1], chunk.user_vocab.shape[1])
        cls_opt, ft_opt = optax.adam(cls_cfg.learning_rate), make_optimizer(ft_cfg)
        m, clf = self.model, self.clf

        @jax.jit
        def cls_step(p, s, x, y, w):
            u, s = cls_opt.update(jax.grad(lambda q: classifier_loss(clf, q, x, y, w, cls_cfg.l2))(p), s, p)
            return optax.apply_updates(p, u), s

        @jax.jit
        def ft_step(tr, fr, s, batch, labels, weights):
            u, s = ft_opt.update(jax.grad(lambda t: weighted_loss(m, {**fr, **t}, batch, labels, weights))(tr), s, tr)
            return optax.apply_updates(tr, u), s

        self.cls_step, self.ft_step = cls_step, ft_step
        self.cls_init = jax.jit(lambda k, x: clf.init(k, x[:1])["params"])
        self.cls_opt_init, self.ft_opt_init = jax.jit(cls_opt.init), jax.jit(ft_opt.init)
        self.kept = jax.jit(lambda p, x, mask: keep_mask(classifier_scores(clf, p, x), mask, cls_cfg))
        self.batches = jax.jit(lambda k, wl, wa: epoch_batches(k, wl, wa, ft_cfg))
        self.localize = jax.jit(localize_params)
        self.predict = jax.jit(lambda p, r: score(m, p, r))

    def run(self, c: DeviceChunk, u: int, key: jax.Array) -> np.ndarray:
        cfg = self.cfg
        d = jax.tree_util.tree_map(lambda x: jnp.asarray(x[u]), c)
        k_cls, k_ft = jax.random.split(jax.random.fold_in(key, d.user_index))
        p = self.localize(self.params, d.vocab, d.user_vocab)
        local_x, cand_x = d.local.vector, d.candidates.vector
        x = jnp.concatenate([local_x, cand_x])
        y = jnp.concatenate([jnp.ones(d.local.width), jnp.zeros(d.candidates.width)])
        pm, nm = d.local.mask, d.candidates.mask
        w = jnp.concatenate([pm / jnp.maximum(pm.sum(), 1), nm / jnp.maximum(nm.sum(), 1)])
        cp = self.cls_init(k_cls, x)
        s = self.cls_opt_init(cp)
        for _ in range(cfg.classifier.steps):
            cp, s = self.cls_step(cp, s, x, y, w)
        kept = self.kept(cp, cand_x, nm)
        aug_w = (kept * cfg.finetune.aug_weight).astype(jnp.float32)
        idx, row_w = self.batches(k_ft, pm.astype(jnp.float32), aug_w)
        idx, row_w = np.asarray(idx), np.asarray(row_w)
        feats = {k: np.concatenate([np.asarray(d.local.features[k]), np.asarray(d.candidates.features[k])])
                 for k in d.local.features}
        labels = np.concatenate([np.asarray(d.local.label), np.asarray(d.candidates.label)])
        tr, fr = split_trainable(p, tuple(cfg.finetune.trainable))
        s = self.ft_opt_init(tr)
        for i, rw in zip(idx, row_w):
            tr, s = self.ft_step(tr, fr, s, {k: v[i] for k, v in feats.items()}, labels[i], rw)
        return np.asarray(self.predict({**fr, **tr}, d.test))


def step_hlo_ops(loop: PerUserLoop, c: DeviceChunk) -> dict:
    """Instructions of one compiled fine-tuning step (gather, forward, backward, update) for one user: the
    optimized HLO's instructions by opcode (fusions count once)."""
    d = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), c)
    p = localize_params(loop.params, d.vocab, d.user_vocab)
    tr, fr = split_trainable(p, tuple(loop.cfg.finetune.trainable))
    b = loop.cfg.finetune.batch_size
    batch = jax.tree_util.tree_map(lambda x: x[:b], d.local.features)
    text = loop.ft_step.lower(tr, fr, loop.ft_opt_init(tr), batch, d.local.label[:b], jnp.ones(b)).compile().as_text()
    ops = collections.Counter(m.group(1) for m in re.finditer(r"= \S+ ([a-z][\w\-]*)\(", text))
    skip = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
    return {"ops": int(sum(v for k, v in ops.items() if k not in skip)), "fusions": int(ops.get("fusion", 0)),
            "dots": int(ops.get("dot", 0))}


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50, help="fine-tuning steps per user")
    parser.add_argument("--loop-users", type=int, default=64,
                        help="time the loop on this many users and scale to --users (0 = all users)")
    parser.add_argument("--chunk-users", type=int, default=0, help="users per compiled chunk (0 = the config's)")
    parser.add_argument("--lockstep-users", type=int, default=-1,
                        help="units vmapped together inside a chunk (0 = the whole chunk; default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (after a warm-up)")
    parser.add_argument("--model", default="din", help="the CTR model (din, lr, deepfm, wide_deep, pnn)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    cfg = bench_config(args.users, args.steps, args.chunk_users, args.lockstep_users, args.model)
    data = make_dataset(cfg)
    cloud = cloud_stage(cfg, data, show_progress=False)
    model, params, vectors, rows = cloud.model, cloud.params, cloud.vectors, cloud.rows
    keys = device_keys(cfg)
    compiler = StageCompiler(model, StageSettings.from_config(cfg), user_mesh())

    def engine():
        return run_chunks([cfg], data, cloud, compiler, False)

    t0 = time.perf_counter()
    engine_out = engine()                                                 # warm-up: compiles
    engine_cold = time.perf_counter() - t0
    engine_times = _timed(engine, args.repeats)
    # The loop, on the first loop_users users (in the engine's order), packed as one chunk of their shapes.
    # Packed at the widths of the engine's first chunk, so both sides draw the same minibatches.
    size, slots, plan = plan_chunks(cfg, rows, 1 if compiler.mesh is None else compiler.mesh.size)
    n_loop = min(args.loop_users or len(data.users), len(data.users))
    owners = slots[:n_loop]
    spec = dataclasses.replace(ChunkSpec.from_config(cfg), widths={"local": int(plan["local"][0]), "test": plan["test"]})
    chunk = make_chunk(data.table, vectors, rows, owners, data.users, spec)
    loop = PerUserLoop(model, params, chunk, cfg)
    t0 = time.perf_counter()
    loop.run(chunk, 0, keys[0])                                           # warm-up: compiles every jitted step
    loop_compile = time.perf_counter() - t0
    logits = []
    loop_times = _timed(lambda: logits.__setitem__(slice(None), [loop.run(chunk, u, keys[0]) for u in range(n_loop)]),
                        args.repeats)
    scale = len(data.users) / n_loop
    loop_auc, loop_valid = masked_auc(np.stack(logits), chunk.test.label, chunk.test.mask)
    engine_auc = engine_out.auc[0, 0, 0, owners]
    both = np.asarray(loop_valid) & np.isfinite(engine_auc)
    agreement = float(np.max(np.abs(np.asarray(loop_auc)[both] - engine_auc[both]))) if both.any() else float("nan")
    engine_warm, loop_warm = float(np.median(engine_times)), float(np.median(loop_times)) * scale
    engine_compile = engine_out.compile.seconds
    hlo = step_hlo_ops(loop, chunk)
    figures = {
        "device": str(jax.devices()[0]), "platform": jax.devices()[0].platform, "devices": len(jax.devices()),
        "users": int(len(data.users)), "model": cfg.model.name, "chunk_users": cfg.engine.chunk_users,
        "lanes": engine_out.compile.lanes,
        "finetune_steps": cfg.finetune.steps, "classifier_steps": cfg.classifier.steps,
        "engine_seconds": engine_warm, "engine_seconds_spread": [min(engine_times), max(engine_times)],
        "engine_compile_seconds": engine_compile, "engine_compiles": engine_out.compile.compiles,
        "engine_seconds_first_run": engine_cold,
        "loop_seconds": loop_warm, "loop_seconds_spread": [min(loop_times) * scale, max(loop_times) * scale],
        "loop_compile_seconds": loop_compile, "loop_users_timed": n_loop,
        "speedup": loop_warm / engine_warm,
        "speedup_with_compile": (loop_warm + loop_compile) / (engine_warm + engine_compile),
        "auc_max_abs_difference": agreement, "auc_users_compared": int(both.sum()),
        "step_hlo": hlo,
    }
    print(f"device: {figures['device']} ({figures['platform']}, {figures['devices']} device(s))")
    print(f"model: {cfg.model.name}; users: {figures['users']} in chunks of {cfg.engine.chunk_users}, lanes "
          f"{figures['lanes']}; classifier "
          f"steps {cfg.classifier.steps}, fine-tune steps {cfg.finetune.steps}, batch {cfg.finetune.batch_size}")
    print(f"engine:        {engine_warm:.2f} s (spread {min(engine_times):.2f}-{max(engine_times):.2f} over "
          f"{args.repeats} runs), compile {engine_compile:.2f} s ({engine_out.compile.compiles} program(s))")
    print(f"per-user loop: {loop_warm:.2f} s (spread {figures['loop_seconds_spread'][0]:.2f}-"
          f"{figures['loop_seconds_spread'][1]:.2f}; timed on {n_loop} users, scaled), compile {loop_compile:.2f} s")
    print(f"speedup: {figures['speedup']:.1f}x executing, {figures['speedup_with_compile']:.1f}x counting each "
          f"side's compilation")
    print(f"AUC agreement: max |engine - loop| = {agreement:.2e} over {both.sum()} users")
    print(f"one fine-tuning step: {hlo['ops']} HLO ops ({hlo['fusions']} fusions, {hlo['dots']} dots)")
    if args.out:
        from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

        write_json_atomic(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
