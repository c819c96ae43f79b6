"""Benchmark: how the device stage scales with the number of users, against the ways it is usually written.

  coda-sim bench scaling [--users 1024 4096 16384 65536 131072] [--subset 256] [--out DIR] [--quick]

- **Scaling**: the engine's compiled device stage (:class:`coda_jax.device.engine.StageCompiler`, chunks
  dispatched asynchronously, the user axis over every device) on a synthetic population of each size
  (:mod:`sims.scaling_data`: LR, 32-64 local rows, 10 classifier + 10 fine-tuning steps, 3 methods, users
  packed straight into chunks). Compile and execute apart; time per user; user-steps/s (users x (classifier
  steps + methods x fine-tuning steps) per second); peak host RSS and device memory per point.
- **Contenders** (:mod:`sims.contenders`) doing the same per-user work with the same draws, on the first
  ``--subset`` users, their time per user extrapolated; engine and contenders timed in interleaved rounds;
  per-user AUC and test-logit parity printed.
- **FLOP/s**: the stage's arithmetic (XLA cost analysis, :func:`sims.bench_measure.stage_flops`) over its
  execute time, as a fraction of a plain f32 matmul's FLOP/s measured in the same run.
- **Retrieval** (``--no-retrieval`` skips it): ScaNN against exact search (:mod:`sims.bench_retrieval`).

Writes ``scaling.json`` and ``scaling.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from coda_jax.device.engine import StageCompiler, user_mesh
from coda_jax.device.settings import StageNumbers, StageSettings
from coda_jax.device.stage import USERS, device_stage
from coda_jax.resources import peak_rss_bytes, reset_peak_rss
from kernels.auc import masked_auc
from sims import bench_measure, contenders
from sims.bench_report import print_table, write_plot
from sims.scaling_data import QUICK, Workload, chunk_bytes, global_model, synthetic_chunk

CONTENDERS = ("user_loop", "step_loop", "fedjax")


class Population:
    """The synthetic population as chunks: a bank of ``bank`` distinct packed chunks cycled over the
    population (chunk ``c`` holds users ``c * chunk_users ..`` with their own indices, so their own keys,
    draws and user rows; their rows repeat every ``bank`` chunks), so host packing costs nothing per point
    and the benchmark times the device stage."""

    def __init__(self, w: Workload, chunk_users: int, bank: int, seed: int):
        self.size = chunk_users
        self.bank = [synthetic_chunk(w, c, chunk_users, seed) for c in range(bank)]

    def chunk(self, c: int):
        base = self.bank[c % len(self.bank)]
        index = np.arange(c * self.size, (c + 1) * self.size, dtype=np.int32)
        return base.replace(user_index=index, user_vocab=np.stack([np.zeros_like(index), index], axis=1))

    def first(self, n: int):
        """The first ``n`` users as one chunk [n, ...]."""
        chunks = [self.chunk(c) for c in range(-(-n // self.size))]
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:n], *chunks)


def run_engine(compiler: StageCompiler, params, pop: Population, users: int, numbers, keys, sharding) -> dict:
    """The engine over ``users`` users (a multiple of the chunk size): ``{"seconds", "auc" float [users, M]}``;
    chunk ``c + 1`` is dispatched while chunk ``c`` runs; only per-user AUCs come back."""
    n_chunks = users // pop.size
    auc = []
    t0 = time.perf_counter()
    pending = None
    for c in range(n_chunks):
        out = compiler(params, jax.device_put(pop.chunk(c), sharding), numbers, keys)
        if pending is not None:
            auc.append(np.asarray(pending["auc"])[:, 0, 0])
        pending = out
    auc.append(np.asarray(pending["auc"])[:, 0, 0])
    return {"seconds": time.perf_counter() - t0, "auc": np.concatenate(auc)}


def _auc(logits: np.ndarray, test) -> np.ndarray:
    """Per-user, per-method test AUC of logits float [n, M, Nt] on ``test`` rows [n, Nt]: float [n, M]."""
    n, m, nt = logits.shape
    lab, msk = (np.broadcast_to(x[:, None], logits.shape).reshape(n * m, nt) for x in (test.label, test.mask))
    return np.asarray(masked_auc(logits.reshape(n * m, nt), lab, msk)[0]).reshape(n, m)


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, nargs="+", default=[1024, 4096, 16384, 65536, 131072],
                   help="population sizes (rounded up to whole chunks)")
    p.add_argument("--ratio-users", type=int, default=4096, help="the point the contender ratios are taken at")
    p.add_argument("--subset", type=int, default=256, help="users the slow contenders run on (extrapolated)")
    p.add_argument("--chunk-users", type=int, default=256)
    p.add_argument("--lockstep-users", type=int, default=32, help="units vmapped together (0 = whole chunk)")
    p.add_argument("--bank", type=int, default=16, help="distinct packed chunks cycled over the population")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of engine and contenders")
    p.add_argument("--contenders", nargs="*", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--no-retrieval", action="store_true", help="skip ScaNN vs exact search")
    p.add_argument("--pool-rows", type=int, default=1_000_000, help="retrieval: pool rows")
    p.add_argument("--queries", type=int, default=2000, help="retrieval: queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny workload and sizes, for tests (seconds)")
    p.add_argument("--out", required=True, help="folder for scaling.json and scaling.png")
    args = p.parse_args(argv)
    if args.quick:
        args.users = [u for u in args.users if u <= 256] if args.users != p.get_default("users") else [32, 64]
        args.ratio_users, args.subset, args.chunk_users = min(args.ratio_users, max(args.users)), 8, 16
        args.lockstep_users, args.bank, args.repeats = 8, 2, 1
        args.pool_rows, args.queries = 5000, 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = QUICK if args.quick else Workload()
    size = args.chunk_users
    points = sorted({-(-u // size) * size for u in args.users} | {-(-args.ratio_users // size) * size})
    ratio_users = -(-args.ratio_users // size) * size
    subset = min(args.subset, args.bank * size)
    cfg = w.config(size, args.lockstep_users)
    settings = StageSettings.from_config(cfg)
    settings = dataclasses.replace(settings, lockstep_users=args.lockstep_users)
    model, params = global_model(w, max(points), args.seed)
    numbers, numbers1 = StageNumbers.stack([cfg]), StageNumbers.from_config(cfg)
    key = jax.random.PRNGKey(args.seed)
    keys = key[None]
    mesh = user_mesh()
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(USERS))
    pop = Population(w, size, min(args.bank, max(points) // size), args.seed)
    lanes = len(settings.methods)
    steps_per_user = w.classifier_steps + lanes * w.finetune_steps
    matmul = bench_measure.matmul_flops_per_second(256 if args.quick else 2048)
    fig = {"device": str(jax.devices()[0]), "platform": jax.devices()[0].platform, "devices": len(jax.devices()),
           "workload": dataclasses.asdict(w), "methods": [m.name for m in settings.methods], "chunk_users": size,
           "lockstep_users": args.lockstep_users, "bank_chunks": len(pop.bank), "chunk_bytes": chunk_bytes(pop.bank[0]),
           "steps_per_user": steps_per_user, "matmul": matmul, "ratio_users": ratio_users, "subset_users": subset}

    # --- compile: the engine's program, then each contender's (warm-up on two users)
    compiler = StageCompiler(model, settings, mesh)
    first = jax.device_put(pop.chunk(0), sharding)
    fig["engine_compile_seconds"] = _timed(lambda: jax.block_until_ready(
        compiler(params, first, numbers, keys)))[0]
    sub_chunk = pop.first(subset)
    dev_sub = jax.device_put(sub_chunk)
    pieces = contenders.StepPieces(model, settings, numbers1, sub_chunk)
    runs = {"user_loop": lambda n: contenders.user_loop(model, settings, params, dev_sub, numbers1, key, n),
            "step_loop": lambda n: contenders.step_loop(pieces, params, sub_chunk, key, n),
            "fedjax": lambda n: contenders.fedjax_loop(pieces, params, sub_chunk, key, n)}
    chosen = [c for c in args.contenders if c != "fedjax" or contenders.fedjax_available()]
    if "fedjax" in args.contenders and "fedjax" not in chosen:
        print("note: fedjax is not importable (pip install 'coda-jax[bench]'): FedJAX's for_each_client skipped")
    fig["contenders"] = {c: {"compile_seconds": _timed(lambda c=c: runs[c](2))[0]} for c in chosen}

    # --- interleaved rounds: the engine at the ratio point, each contender on the subset
    engine_times, logits = [], {}
    for _ in range(max(1, args.repeats)):
        engine_times.append(run_engine(compiler, params, pop, ratio_users, numbers, keys, sharding)["seconds"])
        for c in chosen:
            t, logits[c] = _timed(lambda c=c: runs[c](subset))
            fig["contenders"][c].setdefault("seconds", []).append(t)
    engine_per_user = float(np.median(engine_times)) / ratio_users
    fig["engine_at_ratio_point"] = {"seconds": engine_times, "per_user_seconds": engine_per_user}

    # --- parity on the subset: the engine's own program with its test logits
    ref = device_stage(model, dataclasses.replace(settings, with_logits=True), params,
                       jax.device_put(pop.first(subset)), numbers, keys)
    ref_logits = np.asarray(ref["logits"])[:, 0, 0]                                   # [n, M, Nt]
    t = sub_chunk.test
    msk = np.broadcast_to(t.mask[:, None], ref_logits.shape)
    ref_auc = _auc(ref_logits, t)
    for c in chosen:
        auc = _auc(logits[c], t)
        both = np.isfinite(auc) & np.isfinite(ref_auc)
        per_user = float(np.median(fig["contenders"][c]["seconds"])) / subset
        fig["contenders"][c].update(
            per_user_seconds=per_user, extrapolated_seconds_at_ratio_point=per_user * ratio_users,
            engine_speedup=per_user / engine_per_user,
            auc_max_abs_difference=float(np.max(np.abs(auc - ref_auc)[both])) if both.any() else None,
            logit_max_abs_difference=float(np.max(np.abs(np.where(msk, logits[c] - ref_logits, 0.0)))),
            users_timed=subset, extrapolated=True)

    # --- scaling: every point once (the ratio point: its interleaved rounds)
    fig["points"] = []
    for users in points:
        reset_peak_rss()
        if users == ratio_users:
            seconds = float(np.median(engine_times))
        else:
            seconds = run_engine(compiler, params, pop, users, numbers, keys, sharding)["seconds"]
        fig["points"].append({"users": users, "seconds": seconds, "per_user_seconds": seconds / users,
                              "user_steps_per_second": users * steps_per_user / seconds,
                              "peak_rss_bytes": peak_rss_bytes(),
                              "device_memory": bench_measure.device_memory()})
        print(f"  {users:>7} users: {seconds:8.2f} s, {1e3 * seconds / users:.3f} ms/user")
    fig["engine_compiles"] = compiler.compiles

    # --- FLOP/s: the stage's arithmetic over its time at the ratio point
    flops = bench_measure.stage_flops(model, settings, params, pop.chunk(0), numbers, keys, pieces)
    achieved = flops["per_user"] / engine_per_user
    fig["flops"] = {**flops, "achieved_flops_per_second": achieved,
                    "fraction_of_matmul": achieved / matmul["flops_per_second"]}
    by_users = {p["users"]: p for p in fig["points"]}
    # the bar: time per user at 16x the ratio point (64k vs 4k); else the largest point measured
    largest = 16 * ratio_users if 16 * ratio_users in by_users else max(by_users)
    ratio = by_users[largest]["per_user_seconds"] / by_users[ratio_users]["per_user_seconds"]
    fig["per_user_ratio_largest_to_ratio_point"] = {"largest": largest,
                                                    "ratio": ratio if largest > ratio_users else None}
    if not args.no_retrieval:
        from sims.bench_retrieval import retrieval_benchmark  # noqa: PLC0415

        fig["retrieval"] = retrieval_benchmark(args.pool_rows, 32, args.queries, 30, args.seed)
    from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

    write_json_atomic(out_dir / "scaling.json", fig)
    write_plot(fig, out_dir / "scaling.png")
    print_table(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
