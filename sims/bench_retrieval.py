"""ScaNN against exact search on a large pool: recall@k and queries per second at matched recall.

A local stand-in: another change (``coda_jax/cloud/search.py``) brings the cloud's own
``retrieval_benchmark(pool_rows, dim, queries, k, seed) -> dict``; the scaling benchmark may call that one
instead (same arguments; it reads ``recall``, ``speedup_at_target`` and the two searches' queries/s).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from coda_jax.cloud.retrieval import recall_at_k
from kernels.topk import exact_topk


def clustered_vectors(rows: int, dim: int, seed: int, clusters: int | None = None,
                      spread: float = 0.5) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (sample vectors of a recommender cluster by taste and
    item; uniform random vectors in ``dim`` dimensions have no neighbours worth the name): float32 [rows, dim]."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(16, rows // 1000)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, size=rows)] + spread * rng.normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _qps(fn, queries: np.ndarray, repeats: int = 2) -> tuple[float, object]:
    jax.block_until_ready(fn(queries[:8]))                               # warm-up (compiles the exact search)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(queries))
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best, out


def retrieval_benchmark(pool_rows: int = 1_000_000, dim: int = 32, queries: int = 2000, k: int = 30,
                        seed: int = 0, target: float = 0.9,
                        leaves_to_search: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)) -> dict:
    """Exact blocked search (:func:`kernels.topk.exact_topk`, JAX) against ScaNN (tree + AH + reorder,
    multi-threaded batched queries) over ``pool_rows`` clustered unit vectors of width ``dim``.

    ScaNN is built once (``sqrt(pool_rows)`` leaves) and searched with each fraction of ``leaves_to_search``;
    each setting's recall@k (against the exact top-k) and queries/s are reported. ``speedup_at_target``:
    the fastest setting reaching ``target`` recall, as ScaNN's queries/s over exact search's (exact search has
    recall 1); None if no setting reaches it.

    Returns a dict: ``pool_rows``, ``dim``, ``queries``, ``k``, ``exact_qps``, ``scann_build_seconds``,
    ``settings`` (list of ``{leaves_to_search, leaves_searched, recall, qps}``), ``recall`` and
    ``scann_qps`` (the chosen setting's), ``speedup_at_target``, ``target``, ``backend_note``.
    """
    import scann  # noqa: PLC0415 - heavy; only for this section

    pool = clustered_vectors(pool_rows, dim, seed)
    q = clustered_vectors(queries, dim, seed + 1)
    exact_qps, (_, exact_idx) = _qps(lambda x: exact_topk(x, pool, k), q)
    exact_idx = np.asarray(exact_idx)
    leaves = int(max(16, round(np.sqrt(pool_rows))))
    t0 = time.perf_counter()
    index = (scann.scann_ops_pybind.builder(pool, k, "dot_product")
             .tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 10),
                   training_sample_size=min(pool_rows, 100_000), random_init=False)
             .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(max(100, 10 * k)).build())
    build = time.perf_counter() - t0
    search = getattr(index, "search_batched_parallel", index.search_batched)
    settings = []
    for frac in leaves_to_search:
        n = max(1, int(round(leaves * frac)))
        qps, (idx, _) = _qps(lambda x, n=n: search(x, final_num_neighbors=k, leaves_to_search=n), q)
        settings.append({"leaves_to_search": frac, "leaves_searched": n,
                         "recall": recall_at_k(np.asarray(idx), exact_idx), "qps": qps})
    good = [s for s in settings if s["recall"] >= target]
    chosen = max(good, key=lambda s: s["qps"]) if good else max(settings, key=lambda s: s["recall"])
    return {"pool_rows": pool_rows, "dim": dim, "queries": queries, "k": k, "exact_qps": exact_qps,
            "scann_build_seconds": build, "scann_leaves": leaves, "settings": settings,
            "recall": chosen["recall"], "scann_qps": chosen["qps"], "target": target,
            "speedup_at_target": chosen["qps"] / exact_qps if good else None,
            "backend_note": "sims.bench_retrieval (local stand-in for coda_jax.cloud.search.retrieval_benchmark)"}
