"""Benchmark: the compiled device stage on the paper's model (DIN) against the ways per-user code is written.

Every side does the same per-user work with the same random draws (the ``coda`` method by default): train
the sample classifier (full-batch Adam), keep the top fraction of candidates, fine-tune the model copy on
local + kept rows (the minibatches of :func:`~coda_jax.device.sampler.epoch_batches`), score the test rows.

- ``engine``: the compiled device stage (:func:`~coda_jax.device.engine.run_chunks`), the user axis over
  every device JAX sees (``engine-1dev``: the same on one device, with ``--one-device``);
- ``loop``: a Python loop over users and optimizer steps, one jitted call per step
  (:func:`sims.contenders.step_loop`), on one device;
- ``fedjax``: FedJAX's ``for_each_client`` (:func:`sims.contenders.fedjax_loop`), one client per user, on
  one device (its ``pmap`` backend needs ``jax.device_put_sharded``, which jax 0.10 removed).

Every side runs every user (nothing is extrapolated). Each side is compiled first (its compile time is the
warm-up call minus its own execute time for the warm-up's users), then the sides run in ``--repeats``
interleaved rounds (engine, loop, fedjax, engine, ...), and each ratio is the median of the per-round ratios,
executing alone and counting each side's compilation. Parity: per-user AUCs of every side against the
engine's, and test logits against the engine's own program on the first ``--parity-users`` users.

  coda-sim bench engine --users 1024 --steps 50 [--model lr] [--out FILE]
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

from coda_jax.cloud.stage import cloud_stage
from coda_jax.config import Config
from coda_jax.data.dataset import make_dataset
from coda_jax.device.chunk import ChunkSpec, make_chunk
from coda_jax.device.engine import StageCompiler, device_keys, plan_chunks, run_chunks, user_mesh
from coda_jax.device.settings import StageNumbers, StageSettings
from coda_jax.device.stage import device_stage
from kernels.auc import masked_auc
from sims import contenders

BARS = {("fedjax", "execute"): 6.0, ("fedjax", "with_compile"): 3.0, ("loop", "execute"): 6.0}
"""The issue's bars: the engine's speedup over each contender (median of interleaved rounds)."""


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


def step_hlo_ops(pieces: contenders.StepPieces, params, chunk) -> dict:
    """Instructions of one compiled fine-tuning step (gather, forward, backward, update) of one lane: the
    optimized HLO's instructions by opcode (fusions count once)."""
    d = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), chunk)
    p = pieces.start(params, d, jax.random.PRNGKey(0))[0]
    tr, fr = pieces.split(p)
    b = pieces.ft_cfg.batch_size
    rows = d.local.features
    text = pieces.ft_step.lower(tr, fr, pieces.ft_opt_init(tr), rows, d.local.label, jnp.arange(b) % d.local.width,
                                jnp.ones(b)).compile().as_text()
    ops = collections.Counter(m.group(1) for m in re.finditer(r"= \S+ ([a-z][\w\-]*)\(", text))
    skip = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
    return {"ops": int(sum(v for k, v in ops.items() if k not in skip)), "fusions": int(ops.get("fusion", 0)),
            "dots": int(ops.get("dot", 0))}


def _auc(logits: np.ndarray, test) -> np.ndarray:
    """Per-user AUC of the first method's test logits float [n, M, Nt]: float [n]."""
    n = logits.shape[0]
    return np.asarray(masked_auc(logits[:, 0], np.asarray(test.label)[:n], np.asarray(test.mask)[:n])[0])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1024)
    p.add_argument("--steps", type=int, default=50, help="fine-tuning steps per user")
    p.add_argument("--loop-users", type=int, default=0,
                   help="users the contenders run (0 = all; fewer makes their figures per-user rates)")
    p.add_argument("--chunk-users", type=int, default=0, help="users per compiled chunk (0 = the config's)")
    p.add_argument("--lockstep-users", type=int, default=-1,
                   help="units vmapped together inside a chunk (0 = the whole chunk; default: the config's)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds of every side")
    p.add_argument("--contenders", nargs="*", default=["loop", "fedjax"], choices=["loop", "fedjax", "user_loop"])
    p.add_argument("--one-device", action="store_true", help="also time the engine on one device")
    p.add_argument("--parity-users", type=int, default=64, help="users whose test logits are compared")
    p.add_argument("--model", default="din", help="the CTR model (din, lr, deepfm, wide_deep, pnn)")
    p.add_argument("--out", help="write the figures as JSON here")
    return p.parse_args(argv)


class Sides:
    """Every side of the benchmark as a callable returning per-user AUCs float [n] of its users, plus the
    packed chunk of all contender users (the engine's first chunk's widths, so every side draws alike)."""

    def __init__(self, args, cfg: Config):
        self.cfg = cfg
        self.data = make_dataset(cfg)
        self.cloud = cloud = cloud_stage(cfg, self.data, show_progress=False)
        self.model, self.params, self.vectors, self.rows = cloud.model, cloud.params, cloud.vectors, cloud.rows
        self.numbers, self.keys = StageNumbers.stack([cfg]), device_keys(cfg)
        self.settings = StageSettings.from_config(cfg)
        self.compilers = {"engine": StageCompiler(self.model, self.settings, user_mesh())}
        if args.one_device:
            self.compilers["engine-1dev"] = StageCompiler(self.model, self.settings, None)
        mesh = self.compilers["engine"].mesh
        size, slots, plan = plan_chunks(cfg, self.rows, 1 if mesh is None else mesh.size)
        self.n = min(args.loop_users or len(self.data.users), len(self.data.users))
        self.owners = slots[:self.n]
        spec = dataclasses.replace(ChunkSpec.from_config(cfg), widths={"local": int(plan["local"][0]),
                                                                       "test": plan["test"]})
        self.chunk = make_chunk(self.data.table, self.vectors, self.rows, self.owners, self.data.users, spec)
        self.pieces = contenders.StepPieces(self.model, self.settings, StageNumbers.from_config(cfg), self.chunk)
        self.dev_chunk = jax.device_put(self.chunk)
        self.engine_out: dict = {}

    def engine(self, name: str):
        def run(n=None):
            out = run_chunks([self.cfg], self.data, self.cloud, self.compilers[name], False)
            self.engine_out[name] = out
            return out.auc[0, 0, 0]                                      # [S] users in data.users order
        return run

    def contender(self, name: str):
        key, p, c = self.keys[0], self.pieces, self.chunk
        fns = {"loop": lambda n: contenders.step_loop(p, self.params, c, key, n),
               "fedjax": lambda n: contenders.fedjax_loop(p, self.params, c, key, n),
               "user_loop": lambda n: contenders.user_loop(self.model, self.settings, self.params, self.dev_chunk,
                                                           StageNumbers.from_config(self.cfg), key, n)}
        return lambda n=None: fns[name](self.n if n is None else n)

    def engine_logits(self, n: int) -> np.ndarray:
        """The engine's own program's test logits of the first ``n`` contender users: float [n, M, Nt]."""
        part = jax.tree_util.tree_map(lambda x: x[:n], self.dev_chunk)
        out = device_stage(self.model, dataclasses.replace(self.settings, lockstep_users=0, with_logits=True),
                           self.params, part, self.numbers, self.keys)
        return np.asarray(out["logits"])[:, 0, 0]


def _timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t0, out


def measure(args, sides: Sides) -> dict:
    """Compile every side, run the interleaved rounds, compare; returns the figures."""
    names = list(sides.compilers) + [c for c in args.contenders
                                     if c != "fedjax" or contenders.fedjax_available()]
    if "fedjax" in args.contenders and "fedjax" not in names:
        print("note: fedjax is not importable (pip install 'coda-jax[bench]'): FedJAX's for_each_client skipped")
    run = {k: (sides.engine(k) if k in sides.compilers else sides.contender(k)) for k in names}
    first = {}
    for k in names:                                   # warm-up: compiles (the engine all users; contenders one)
        first[k] = _timed(run[k])[0] if k in sides.compilers else _timed(run[k], 1)[0]
    times, aucs = {k: [] for k in names}, {}
    for _ in range(max(1, args.repeats)):
        for k in names:
            t, out = _timed(run[k])
            times[k].append(t)
            aucs[k] = out
    fig = {"sides": {}}
    for k in names:
        med = float(np.median(times[k]))
        if k in sides.compilers:
            c = sides.compilers[k]
            comp, programs = c.seconds, c.compiles
            devices = 1 if c.mesh is None else c.mesh.size
        else:
            comp, programs, devices = max(first[k] - med / sides.n, 0.0), None, 1
        fig["sides"][k] = {"seconds": times[k], "median_seconds": med, "compile_seconds": comp,
                           "programs": programs, "devices": devices, "users": int(len(aucs[k]) if k in sides.compilers
                                                                                  else sides.n)}
    eng = fig["sides"]["engine"]
    engine_auc = np.asarray(aucs["engine"])[sides.owners]
    for k in names:
        s = fig["sides"][k]
        if k != "engine":
            # the contenders run sides.n users; the engine all: compare per user of the same work
            scale = eng["users"] / s["users"]
            s["speedup_execute"] = float(np.median([scale * t / e for t, e in zip(s["seconds"], eng["seconds"])]))
            s["speedup_with_compile"] = float(np.median([(scale * t + s["compile_seconds"]) / (e + eng["compile_seconds"])
                                                         for t, e in zip(s["seconds"], eng["seconds"])]))
            if k in sides.compilers:
                ref, other = np.asarray(aucs[k]), np.asarray(aucs["engine"])
            else:
                ref, other = _auc(np.asarray(aucs[k]), sides.chunk.test), engine_auc
            both = np.isfinite(ref) & np.isfinite(other)
            s["auc_max_abs_difference"] = float(np.max(np.abs(ref - other)[both])) if both.any() else None
            s["auc_users_compared"] = int(both.sum())
    n_par = min(args.parity_users, sides.n)
    if n_par:
        ref_logits = sides.engine_logits(n_par)
        msk = np.broadcast_to(np.asarray(sides.chunk.test.mask)[:n_par, None], ref_logits.shape)
        for k in names:
            if k not in sides.compilers:
                lg = np.asarray(run[k](n_par))
                fig["sides"][k]["logit_max_abs_difference"] = float(np.max(np.abs(np.where(msk, lg - ref_logits, 0))))
    return fig


def print_figures(fig: dict) -> None:
    """The table: each side's median time, spread, compile, devices, ratios and parity; then the bars."""
    print(f"device: {fig['device']} ({fig['platform']}, {fig['devices']} device(s) visible)")
    print(f"model: {fig['model']}; {fig['users']} users in chunks of {fig['chunk_users']}, lanes {fig['lanes']}; "
          f"classifier steps {fig['classifier_steps']}, fine-tune steps {fig['finetune_steps']}, "
          f"batch {fig['batch_size']}; {fig['rounds']} interleaved rounds")
    print(f"{'side':<12} {'devices':>7} {'users':>6} {'execute s':>10} {'spread':>13} {'compile s':>10} "
          f"{'x exec':>7} {'x w/comp':>8} {'|dAUC|':>8} {'|dlogit|':>8}")
    for k, s in fig["sides"].items():
        spread = f"{min(s['seconds']):.2f}-{max(s['seconds']):.2f}"
        ratio = (f"{s['speedup_execute']:>6.1f}x {s['speedup_with_compile']:>7.1f}x" if "speedup_execute" in s
                 else f"{'-':>7} {'-':>8}")
        dauc = s.get("auc_max_abs_difference")
        dlog = s.get("logit_max_abs_difference")
        print(f"{k:<12} {s['devices']:>7} {s['users']:>6} {s['median_seconds']:>10.2f} {spread:>13} "
              f"{s['compile_seconds']:>10.2f} {ratio} {'-' if dauc is None else f'{dauc:.1e}':>8} "
              f"{'-' if dlog is None else f'{dlog:.1e}':>8}")
    print("ratios: the median over rounds of (contender time / engine time) in the same round; with compile: "
          "each side's compile time added to its round time")
    for (k, what), bar in BARS.items():
        s = fig["sides"].get(k)
        if s is not None:
            v = s["speedup_execute" if what == "execute" else "speedup_with_compile"]
            print(f"  engine / {k} ({what.replace('_', ' ')}): {v:.1f}x, bar >= {bar:.0f}x: "
                  f"{'meets' if v >= bar else 'MISSES'}")
    h = fig["step_hlo"]
    print(f"one fine-tuning step: {h['ops']} HLO ops ({h['fusions']} fusions, {h['dots']} dots)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = bench_config(args.users, args.steps, args.chunk_users, args.lockstep_users, args.model)
    sides = Sides(args, cfg)
    fig = {"device": str(jax.devices()[0]), "platform": jax.devices()[0].platform, "devices": len(jax.devices()),
           "users": int(len(sides.data.users)), "model": cfg.model.name, "chunk_users": cfg.engine.chunk_users,
           "finetune_steps": cfg.finetune.steps, "classifier_steps": cfg.classifier.steps,
           "batch_size": cfg.finetune.batch_size, "rounds": max(1, args.repeats), "contender_users": sides.n}
    fig.update(measure(args, sides))
    fig["lanes"] = sides.engine_out["engine"].compile.lanes
    fig["step_hlo"] = step_hlo_ops(sides.pieces, sides.params, sides.chunk)
    print_figures(fig)
    if args.out:
        from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

        write_json_atomic(args.out, fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
