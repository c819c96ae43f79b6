"""What the device stage's compile spends its time on: every program a run compiles, and the size of its parts.

For a run's config: the data and cloud stages, the chunk plan (:func:`~coda_jax.device.engine.plan_chunks`),
then every distinct chunk shape's program lowered and compiled one after another with nothing else running:
wall and CPU seconds of each (CPU time is what a loaded, shared machine does not distort), optimized HLO
instructions and fusions. Then the size of the stage's parts for one user, lowered alone (StableHLO ops):
the sample classifier's training, the minibatch sampler, one fine-tuning step, MPDA's trials (where the run
has mpda), scoring with the AUC. It uses only APIs older commits have, so the same script measures a
``git worktree`` of the previous commit (``PYTHONPATH=that/worktree python -m sims.bench_compile``).

  python -m sims.bench_compile [--config FILE ...] [--set KEY=VALUE ...] [--data-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re
import time

import jax
import jax.numpy as jnp

from sims.common import build_config


def _optimized_ops(text: str) -> dict:
    ops = collections.Counter(m.group(1) for m in re.finditer(r"= \S+ ([a-z][\w\-]*)\(", text))
    skip = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
    return {"ops": int(sum(v for k, v in ops.items() if k not in skip)), "fusions": int(ops.get("fusion", 0))}


def _stablehlo_ops(fn, *args) -> int:
    return len(re.findall(r"= (?:stablehlo|chlo)\.|\bstablehlo\.\w+ ", jax.jit(fn).lower(*args).as_text()))


def _pack(cfg, data, cloud, owners, matched: int, widths: dict):
    """:func:`~coda_jax.device.chunk.make_chunk` across versions (a ``ChunkSpec`` since the DeviceOutput
    hand-off; positional packing arguments before)."""
    from coda_jax.device import chunk as ch  # noqa: PLC0415

    if hasattr(ch, "ChunkSpec"):
        spec = ch.ChunkSpec(cfg.retrieval.max_candidates, cfg.engine.min_bucket, cfg.finetune.row_users, matched,
                            widths)
        return ch.make_chunk(data.table, cloud.vectors, cloud.rows, owners, data.users, spec)
    return ch.make_chunk(data.table, cloud.vectors, cloud.rows, owners, data.users, cfg.retrieval.max_candidates,
                         cfg.engine.min_bucket, cfg.finetune.row_users, matched, widths=widths)


def programs(cfg, data, cloud) -> list[dict]:
    """Lower and compile every distinct chunk program of the run, one after another: a dict per program."""
    from coda_jax.device.engine import device_keys, plan_chunks, user_mesh  # noqa: PLC0415
    from coda_jax.device.settings import StageNumbers, StageSettings  # noqa: PLC0415
    from coda_jax.device.stage import device_stage  # noqa: PLC0415

    mesh = user_mesh()
    size, slots, plan = plan_chunks(cfg, cloud.rows, 1 if mesh is None else mesh.size)
    settings = StageSettings.from_config(cfg)
    matched = cfg.mpda.rows_per_user if "mpda" in settings.methods else 0
    numbers, keys = StageNumbers.stack([cfg]), device_keys(cfg)
    out, seen, shapes = [], {}, set()
    for c in range(len(slots) // size):          # as run_chunks packs them: a new shape is a new program
        lw = int(plan["local"][c])
        vw = seen.get(lw, (0, 0))
        chunk = _pack(cfg, data, cloud, slots[c * size:(c + 1) * size], matched,
                      {"local": lw, "test": plan["test"], "vocab": vw[0], "user_vocab": vw[1]})
        seen[lw] = (chunk.vocab.shape[1], chunk.user_vocab.shape[1])
        shape = jax.tree_util.tree_map(jnp.shape, chunk)
        sig = str(jax.tree_util.tree_leaves(shape))
        if sig in shapes:
            continue
        shapes.add(sig)
        w0, c0 = time.perf_counter(), time.process_time()
        if "mesh" in {f.name for f in dataclasses.fields(settings)}:      # the mesh in the settings since api-core
            lowered = device_stage.lower(cloud.model, dataclasses.replace(settings, mesh=mesh), cloud.params, chunk,
                                         numbers, keys)
        else:
            lowered = device_stage.lower(cloud.model, settings, cloud.params, chunk, numbers, keys, mesh=mesh)
        w1, c1 = time.perf_counter(), time.process_time()
        exe = lowered.compile()
        w2, c2 = time.perf_counter(), time.process_time()
        out.append({"local_width": lw, "vocab": int(chunk.vocab.shape[1]), "lower_seconds": w1 - w0,
                    "lower_cpu_seconds": c1 - c0, "compile_seconds": w2 - w1, "compile_cpu_seconds": c2 - c1,
                    **_optimized_ops(exe.as_text())})
    return out


def parts(cfg, data, cloud) -> dict:
    """StableHLO ops of the stage's parts for one user of the run's first chunk, each lowered alone (the
    signatures since the DeviceOutput hand-off, the older ones as a fallback)."""
    import inspect  # noqa: PLC0415

    from coda_jax.device import train  # noqa: PLC0415
    from coda_jax.device.engine import plan_chunks  # noqa: PLC0415
    from coda_jax.device.sampler import epoch_batches  # noqa: PLC0415
    from coda_jax.device.settings import StageNumbers, StageSettings  # noqa: PLC0415
    from coda_jax.device.stage import user_stage  # noqa: PLC0415
    from coda_jax.device.submodel import local_model, localize_params, split_trainable  # noqa: PLC0415
    from coda_jax.models.losses import weighted_loss  # noqa: PLC0415
    from kernels.auc import masked_auc  # noqa: PLC0415

    size, slots, plan = plan_chunks(cfg, cloud.rows, 1)
    settings = StageSettings.from_config(cfg)
    matched = cfg.mpda.rows_per_user if "mpda" in cfg.methods else 0
    chunk = _pack(cfg, data, cloud, slots[:size], matched, {"local": int(plan["local"][0]), "test": plan["test"]})
    d = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), chunk)
    nums, key = StageNumbers.from_config(cfg), jax.random.PRNGKey(0)
    ccfg, fcfg = settings.classifier_config(nums), settings.finetune_config(nums)
    m = local_model(cloud.model, d.vocab.shape[0], d.user_vocab.shape[0])
    p = localize_params(cloud.params, d.vocab, d.user_vocab)
    tr, fr = split_trainable(p, tuple(fcfg.trainable))
    opt = train.make_optimizer(fcfg)
    b = fcfg.batch_size
    new = "classifier" in inspect.signature(train.train_classifier).parameters
    lw, aw = d.local.mask.astype(jnp.float32), d.candidates.mask.astype(jnp.float32)

    def classifier(d, k):
        if new:
            return train.train_classifier(settings.classifier_model, (d.local.vector, d.local.mask),
                                          (d.candidates.vector, d.candidates.mask), k, ccfg)
        return train.train_classifier(d.local.vector, d.local.mask, d.candidates.vector, d.candidates.mask, k, ccfg)

    def sampler(k, a, c):
        if len(inspect.signature(epoch_batches).parameters) == 4:
            return epoch_batches(k, a, c, fcfg)
        return epoch_batches(k, a, c, fcfg.steps, b, fcfg.aug_batch_size, fcfg.sampling)

    def step(tr, s, rows, i):
        batch = jax.tree_util.tree_map(lambda x: x[i], rows.features)
        g = jax.grad(lambda t: weighted_loss(m, {**fr, **t}, batch, rows.label[i], jnp.ones(b) / b))(tr)
        u, s = opt.update(g, s, tr)
        return jax.tree_util.tree_map(lambda a, c: a + c, tr, u), s

    out = {"whole user stage": _stablehlo_ops(lambda d, k: user_stage(cloud.model, settings, cloud.params, d, nums, k),
                                              d, key),
           "classifier (training)": _stablehlo_ops(classifier, d, key),
           "sampler (one lane)": _stablehlo_ops(sampler, key, lw, aw),
           "fine-tuning step": _stablehlo_ops(step, tr, opt.init(tr), d.local, jnp.arange(b) % d.local.width),
           "score + AUC": _stablehlo_ops(lambda p, d: masked_auc(train.score(m, p, d.test)[None], d.test.label[None],
                                                                 d.test.mask[None]), p, d)}
    if matched:
        if "device" in inspect.signature(train.mpda_trials).parameters:
            trials = lambda p, d, k: train.mpda_trials(m, p, d, k, fcfg, settings.mpda)  # noqa: E731
        else:
            trials = lambda p, d, k: train.mpda_trials(m, p, d.local, d.matched, settings.matched_users,  # noqa: E731
                                                       k, fcfg, settings.mpda)
        out["mpda trials"] = _stablehlo_ops(trials, p, d, key)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--data-dir")
    parser.add_argument("--no-parts", action="store_true", help="programs only")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from coda_jax.cloud.stage import cloud_stage  # noqa: PLC0415
    from coda_jax.data.dataset import make_dataset  # noqa: PLC0415

    cfg = build_config(args)
    data = make_dataset(cfg)
    cloud = cloud_stage(cfg, data, show_progress=False)
    fig = {"devices": len(jax.devices()), "programs": programs(cfg, data, cloud)}
    for p in fig["programs"]:
        print(f"program (local width {p['local_width']}, vocab {p['vocab']}): lower {p['lower_seconds']:.2f} s "
              f"(CPU {p['lower_cpu_seconds']:.2f}), compile {p['compile_seconds']:.2f} s (CPU "
              f"{p['compile_cpu_seconds']:.2f}); {p['ops']} HLO ops, {p['fusions']} fusions")
    total = {k: sum(p[k] for p in fig["programs"]) for k in ("lower_seconds", "lower_cpu_seconds",
                                                             "compile_seconds", "compile_cpu_seconds")}
    fig["total"] = total
    print(f"total: {len(fig['programs'])} program(s), lower + compile {total['lower_seconds'] + total['compile_seconds']:.2f}"
          f" s wall, {total['lower_cpu_seconds'] + total['compile_cpu_seconds']:.2f} s CPU")
    if not args.no_parts:
        fig["parts_stablehlo_ops"] = parts(cfg, data, cloud)
        for k, v in fig["parts_stablehlo_ops"].items():
            print(f"  {k:<24} {v:6d} StableHLO ops")
    if args.out:
        from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

        write_json_atomic(args.out, fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
