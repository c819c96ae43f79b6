"""What the scaling benchmark measures besides time: arithmetic (XLA cost analysis), a matmul's FLOP/s for
reference, and device memory summed over devices (peak host RSS: :mod:`coda_jax.resources`)."""

from __future__ import annotations

import dataclasses
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.device.settings import StageSettings
from coda_jax.device.stage import device_stage
from coda_jax.resources import device_memory_stats
from sims.contenders import StepPieces


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):          # older jax: one dict per module
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))


def _loops(compiled) -> int:
    """``while`` instructions in the optimized HLO (XLA's cost analysis counts a loop body once)."""
    return len(re.findall(r"= \S+ while\(", compiled.as_text()))


def stage_flops(model, settings: StageSettings, params, chunk, numbers, keys, pieces: StepPieces) -> dict:
    """Floating-point operations of the device stage for one chunk, from XLA's cost analysis.

    XLA's cost analysis counts the body of a loop once, whatever its trip count, and the stage runs its
    optimizer steps in ``lax.scan`` loops (and its lockstep groups in ``lax.map``). So the count is taken in
    three loop-free parts: the stage compiled with one classifier step, one fine-tuning step and the whole
    chunk in one group (``F1``); one classifier step of every user of the chunk (``Fc``, vmapped); one
    fine-tuning step of every lane of the chunk (``Ff``, vmapped). The stage's count is
    ``F1 + (Sc - 1) Fc + (Sf - 1) Ff`` for ``Sc`` classifier and ``Sf`` fine-tuning steps.

    Args:
      chunk: a :class:`~coda_jax.device.chunk.DeviceChunk` [U, ...]; numbers: [P = 1]; keys: [R = 1].

    Returns ``{"per_user": flops per user, "one_step_program", "classifier_step", "finetune_step",
    "loops_left"}`` (``loops_left``: while loops XLA kept in the one-step program, e.g. the sampler's
    cycle-walk; their bodies count once).
    """
    u = int(chunk.user_index.shape[0])
    one = dataclasses.replace(settings, lockstep_users=0,
                              classifier=dataclasses.replace(settings.classifier, steps=1),
                              finetune=dataclasses.replace(settings.finetune, steps=1))
    compiled = device_stage.lower(model, one, params, chunk, numbers, keys).compile()
    f1 = _flops(compiled)
    d = jax.tree_util.tree_map(lambda x: jnp.asarray(x), chunk)
    starts = jax.vmap(pieces.start, in_axes=(None, 0, None))(params, d, keys[0])
    p, k_cls, k_ft, x, y, w = starts
    cp, cs = jax.vmap(pieces.cls_init)(k_cls, x)
    fc = _flops(jax.jit(jax.vmap(pieces.cls_step_fn)).lower(cp, cs, x, y, w).compile())
    feats, labels, idx, weights = jax.vmap(pieces.lanes)(cp, d, k_ft)
    lanes = len(feats)
    tr, fr = pieces.split(p)
    rep = _lane_major(lanes)
    ft = jax.jit(jax.vmap(pieces.ft_step_fn))
    all_feats = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *feats)
    args = (rep(tr), rep(fr), jax.vmap(pieces.ft_opt_init_fn)(rep(tr)), all_feats, jnp.concatenate(labels),
            jnp.moveaxis(idx, 1, 0).reshape((lanes * u,) + idx.shape[2:])[:, 0],
            jnp.moveaxis(weights, 1, 0).reshape((lanes * u,) + weights.shape[2:])[:, 0])
    ff = _flops(ft.lower(*args).compile())
    sc, sf = settings.classifier.steps, settings.finetune.steps
    total = f1 + (sc - 1) * fc + (sf - 1) * ff
    return {"per_user": total / u, "one_step_program": f1 / u, "classifier_step": fc / u,
            "finetune_step": ff / u, "loops_left": _loops(compiled)}


def _lane_major(lanes: int):
    """[U, ...] -> [L * U, ...] (lane-major, matching a concatenation of the L lanes' [U, ...] arrays)."""
    return lambda tree: jax.tree_util.tree_map(lambda x: jnp.concatenate([x] * lanes), tree)


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> dict:
    """A plain f32 ``n x n`` matmul on the default device, warmed, timed ``repeats`` times: ``{"n",
    "seconds" (median), "flops_per_second"}`` (2 n^3 per product)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    return {"n": n, "seconds": seconds, "flops_per_second": 2.0 * n ** 3 / seconds}


def device_memory() -> dict | None:
    """Device memory summed over JAX's devices from ``memory_stats()`` (``bytes_in_use``,
    ``peak_bytes_in_use``), or None where the backend reports none (XLA's CPU backend)."""
    stats = device_memory_stats()
    if stats is None:
        return None
    return {k: int(sum(s.get(k, 0) for s in stats)) for k in ("bytes_in_use", "peak_bytes_in_use")}
