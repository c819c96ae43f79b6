"""Benchmark: ScaNN (settings derived from the pool, calibrated) against exact search on the same pool.

The pool is ``pool_rows`` unit vectors of width ``dim`` drawn around ``pool_rows / 1000`` random centres (at
least 16; each vector = centre + N(0, 1/dim) noise, normalised), like the cloud's sample vectors: clustered
by the kind of user and item. The queries are fresh draws from the same mixture. Both searchers answer the
same queries; ScaNN's recall@k is measured against the exact answers.

  python -m sims.bench_retrieval --rows 1000000 --dim 32 --queries 2000 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import numpy as np

from coda_jax.cloud.search import ExactSearcher, ScannSearcher, platform, recall_at_k


def clustered_pool(rows: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(pool float32 [rows, dim], queries float32 [queries, dim])``: unit vectors of one Gaussian mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(16, rows // 1000), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n: int) -> np.ndarray:
        out = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return draw(rows), draw(queries)


def retrieval_benchmark(pool_rows: int = 1_000_000, dim: int = 32, queries: int = 2000, k: int = 30,
                        seed: int = 0, target_recall: float = 0.95) -> dict:
    """ScaNN vs exact search on a clustered pool (:func:`clustered_pool`) of ``pool_rows`` x ``dim``.

    Returns a dict: ``exact`` {``place_s`` (database onto the devices), ``compile_s`` (first block, compile
    included), ``qps``}, ``scann`` {``build_s`` (index build + calibration), ``settings``, ``calibration``,
    ``qps``}, ``recall_at_k`` of ScaNN against exact on the same ``queries`` queries, ``speedup`` (ScaNN
    qps / exact qps), and the platform, device count and host cores.
    """
    pool, q = clustered_pool(pool_rows, dim, queries, seed)
    block = max(1, min(500, queries))
    t = time.perf_counter()
    exact = ExactSearcher(pool)
    exact.index._blocks(k)
    place = time.perf_counter() - t
    t = time.perf_counter()
    exact.index.search(q[:block], k, query_block=block)[0].block_until_ready()
    first = time.perf_counter() - t
    t = time.perf_counter()
    _, e_idx = exact.index.search(q, k, query_block=block)
    e_idx = np.asarray(e_idx)
    exact_s = time.perf_counter() - t

    t = time.perf_counter()
    scann = ScannSearcher(pool, k, target_recall, seed)
    build = time.perf_counter() - t
    scann.search(q[:block], k)                        # warm the threads
    t = time.perf_counter()
    a_idx, _ = scann.search(q, k)
    scann_s = time.perf_counter() - t
    return {"pool_rows": pool_rows, "dim": dim, "queries": queries, "k": k, "seed": seed,
            "platform": platform(), "devices": len(jax.devices()), "host_cores": os.cpu_count(),
            "exact": {"place_s": place, "compile_s": first, "seconds": exact_s, "qps": queries / exact_s},
            "scann": {"build_s": build, **{f"index_{name}": v for name, v in scann.timings.items()}, "settings": dataclasses.asdict(scann.settings),
                      "calibration": scann.calibration, "seconds": scann_s, "qps": queries / scann_s},
            "recall_at_k": recall_at_k(a_idx, e_idx), "speedup": exact_s / scann_s}


def main(argv: list[str] | None = None) -> int:
    """Command line: run :func:`retrieval_benchmark`, print its JSON (and write it to ``--out``)."""
    p = argparse.ArgumentParser(prog="bench_retrieval", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    res = retrieval_benchmark(a.rows, a.dim, a.queries, a.k, a.seed)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
