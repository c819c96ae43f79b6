"""One fine-tuning step of the device stage, taken apart: where a DIN (or LR) step spends its time on this
machine, and its achieved FLOP/s against a plain matmul measured in the same run.

The step is the engine's: ``W`` lanes (``--lanes``, the CPU's lockstep width) vmapped over one flat axis,
each lane gathering its 32-row minibatch from its rows, forward, backward, optimizer update. Each variant
runs ``--steps`` steps in one ``lax.scan`` (one dispatch), timed after a warm-up, median of ``--repeats``:

- ``gather``: the minibatch gather alone; ``forward``: gather + loss; ``grad``: gather + loss + gradient;
  ``step``: the whole step (+ the optimizer's update).

FLOPs from XLA's cost analysis of one step (loop-free), so FLOP/s = FLOPs per step / time per step.

  python -m sims.bench_step [--model din|lr] [--lanes 8] [--steps 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from sims.bench_compile import _pack
from sims.bench_engine import bench_config
from sims.bench_measure import _flops, matmul_flops_per_second


def _median_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="din")
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args(argv)
    from coda_jax.cloud.stage import cloud_stage  # noqa: PLC0415
    from coda_jax.data.dataset import make_dataset  # noqa: PLC0415
    from coda_jax.device.engine import plan_chunks  # noqa: PLC0415
    from coda_jax.device.settings import StageNumbers, StageSettings  # noqa: PLC0415
    from sims.contenders import StepPieces  # noqa: PLC0415

    cfg = bench_config(max(64, args.lanes), args.steps, model=args.model)
    data = make_dataset(cfg)
    cloud = cloud_stage(cfg, data, show_progress=False)
    size, slots, plan = plan_chunks(cfg, cloud.rows, 1)
    chunk = _pack(cfg, data, cloud, slots[:args.lanes], 0, {"local": int(plan["local"][0]), "test": plan["test"]})
    settings = StageSettings.from_config(cfg)
    pieces = StepPieces(cloud.model, settings, StageNumbers.from_config(cfg), chunk)
    d = jax.tree_util.tree_map(jnp.asarray, chunk)
    key = jax.random.PRNGKey(0)
    p0, k_cls, k_ft, x, y, w = jax.vmap(pieces.start, in_axes=(None, 0, None))(cloud.params, d, key)
    cp, _ = jax.vmap(pieces.cls_init)(k_cls, x)
    feats, labels, idx, weights = jax.vmap(pieces.lanes)(cp, d, k_ft)          # one lane per user (coda)
    feats, labels, idx, weights = feats[0], labels[0], idx[:, 0], weights[:, 0]  # [W, ...], idx [W, S, B]
    tr, fr = jax.vmap(pieces.split)(p0)
    opt = jax.vmap(pieces.ft_opt_init_fn)(tr)
    model = pieces.model
    from coda_jax.models.losses import weighted_loss  # noqa: PLC0415

    def lane(part):
        def one(tr, fr, s, f, lab, i, wt):
            batch = jax.tree_util.tree_map(lambda a: a[i], f)
            if part == "gather":
                return tr, s, sum(jnp.sum(v) for v in jax.tree_util.tree_leaves(batch)).astype(jnp.float32)
            loss = lambda t: weighted_loss(model, {**fr, **t}, batch, lab[i], wt)  # noqa: E731
            if part == "forward":
                return tr, s, loss(tr)
            if part == "grad":
                g = jax.grad(loss)(tr)
                return tr, s, sum(jnp.sum(v) for v in jax.tree_util.tree_leaves(g))
            tr2, s2 = pieces.ft_step_fn(tr, fr, s, f, lab, i, wt)
            return tr2, s2, jnp.float32(0)
        return jax.vmap(one)

    fig = {"model": args.model, "lanes": args.lanes, "steps": args.steps, "device": str(jax.devices()[0]),
           "parts": {}}
    for part in ("gather", "forward", "grad", "step"):
        f = lane(part)

        def run(tr, s, f=f):
            def body(c, xs):
                i, wt = xs
                tr, s, acc = c
                tr, s, v = f(tr, fr, s, feats, labels, i, wt)
                return (tr, s, acc + v), None
            return jax.lax.scan(body, (tr, s, jnp.zeros(args.lanes)), (jnp.moveaxis(idx, 1, 0),
                                                                       jnp.moveaxis(weights, 1, 0)))[0]

        seconds = _median_time(jax.jit(run), (tr, opt), args.repeats)
        one = jax.jit(f).lower(tr, fr, opt, feats, labels, idx[:, 0], weights[:, 0]).compile()
        flops = _flops(one)
        fig["parts"][part] = {"ms_per_step": 1e3 * seconds / args.steps, "flops_per_step": flops,
                              "flops_per_second": flops * args.steps / seconds}
        print(f"{part:<8} {1e3 * seconds / args.steps:8.3f} ms per step of {args.lanes} lanes "
              f"({1e6 * seconds / args.steps / args.lanes:7.1f} us per lane-step), {flops:.3g} FLOPs, "
              f"{flops * args.steps / seconds / 1e9:6.2f} GFLOP/s")
    mm = matmul_flops_per_second(2048)
    fig["matmul"] = mm
    step = fig["parts"]["step"]
    fig["fraction_of_matmul"] = step["flops_per_second"] / mm["flops_per_second"]
    print(f"matmul 2048^2: {mm['flops_per_second'] / 1e9:.1f} GFLOP/s; the step reaches "
          f"{100 * fig['fraction_of_matmul']:.1f}% of it")
    if args.out:
        from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

        write_json_atomic(args.out, fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
