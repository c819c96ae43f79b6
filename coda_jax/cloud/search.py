"""Nearest-neighbour search over a pool of vectors: exact (JAX, sharded over devices) or ScaNN, chosen for the
pool size, the vector width, the query count and the platform; ScaNN's settings derived from the pool.

How the settings were chosen (measurements in docs/retrieval.md):

- a k-means tree of ``sqrt(N)`` leaves (pools under 2,000 rows are searched exactly: ScaNN brute force);
- ``max(32, 5% of the leaves)`` leaves searched per query;
- in the searched leaves, vectors up to 64 wide are scored exactly in float32 (no quantisation: on MovieLens
  100K's 32-wide sample vectors, neighbours' scores differ by ~2e-4, below what 2-dim anisotropic hashing
  resolves, and exact scoring was as fast); wider vectors by anisotropic hashing (2 dims per 4-bit block)
  with the best ``max(300, 10 k)`` re-scored exactly;
- then, with ``target_recall > 0``, a calibration: ``recall@k`` of 500 pool rows used as queries against exact
  search; while it is below the target, the leaves searched (and the re-scored depth) double.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from coda_jax.config import RetrievalConfig
from kernels.topk import TopK

SCANN_MIN_ROWS = 2000          # smaller pools: ScaNN brute force (partitioning does not pay off)
CALIBRATION_QUERIES = 500
QUERY_BLOCK = 65536            # queries per call: bounds the [block, k] results and ScaNN's scratch memory
# Exact search costs 2 Q N D flops. auto picks it while that is at most this many flops for the platform
# (on this project's 2-core CPU, exact search ran at ~12 GFLOP/s: 2e10 is ~2 s; an H200 in float32 ~50 TFLOP/s).
EXACT_FLOPS = {"cpu": 2e10, "gpu": 2e16, "tpu": 2e16}


def scann_available() -> bool:
    """Whether the ``scann`` package imports here (it has no wheels for every platform)."""
    try:
        import scann  # noqa: F401, PLC0415 - optional heavy import
    except ImportError:
        return False
    return True


def platform() -> str:
    """JAX's default platform: ``cpu``, ``gpu`` or ``tpu``."""
    import jax  # noqa: PLC0415

    return jax.default_backend()


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids found in its approximate top-k ids ([Q, k] each)."""
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=1)
    return float(hits.mean())


@dataclasses.dataclass(frozen=True)
class ScannSettings:
    """ScaNN's index and search settings for one pool (``num_leaves == 0``: brute force, exact)."""

    num_leaves: int
    leaves_to_search: int
    quantize: bool             # anisotropic hashing + exact re-scoring (else exact float scores in the leaves)
    dims_per_block: int
    reorder: int               # candidates re-scored exactly (quantize only)


def derive_scann_settings(n: int, d: int, k: int) -> ScannSettings:
    """Settings for a pool of ``n`` rows of width ``d`` searched for ``k`` neighbours (module docstring)."""
    if n < SCANN_MIN_ROWS:
        return ScannSettings(0, 0, False, 0, 0)
    leaves = round(math.sqrt(n))
    search = min(leaves, max(32, math.ceil(0.05 * leaves)))
    quantize = d > 64
    return ScannSettings(leaves, search, quantize, 2 if quantize else 0, min(n, max(300, 10 * k)) if quantize else 0)


class ExactSearcher:
    """Exact maximum inner product search (:class:`kernels.topk.TopK`, the pool split over every device)."""

    approximate = False

    def __init__(self, database: np.ndarray, reason: str = "", devices=None):
        self.database = np.asarray(database, dtype=np.float32)
        self.index = TopK(self.database, devices)
        self.backend, self.reason = "exact", reason

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows of the database for each query [Q, D]: ``(indices int64 [Q, k], scores float32 [Q, k])``."""
        scores, idx = self.index.search(np.asarray(queries, np.float32), k)
        return np.asarray(idx, dtype=np.int64), np.asarray(scores)


class ScannSearcher:
    """ScaNN over ``database`` float32 [N, D] by dot product, with settings from :func:`derive_scann_settings`.

    ``target_recall > 0``: calibrated after the build (module docstring); ``calibration`` records the recall
    measured at each step, ``timings`` the seconds of the build and of the calibration. Queries run in blocks of ``QUERY_BLOCK`` on all cores (``search_batched_parallel``).
    """

    approximate = True

    def __init__(self, database: np.ndarray, k: int, target_recall: float = 0.0, seed: int = 0,
                 settings: ScannSettings | None = None, reason: str = ""):
        try:
            import scann  # noqa: PLC0415 - optional heavy import, only when this backend is used
        except ImportError as err:  # pragma: no cover - depends on the platform
            raise ImportError("the scann package is not importable; install scann or use retrieval.backend: "
                              "exact") from err
        self.database = np.ascontiguousarray(database, dtype=np.float32)
        n, d = self.database.shape
        self.k = min(int(k), n)
        self.settings = s = settings or derive_scann_settings(n, d, self.k)
        self.backend, self.reason = "scann", reason
        builder = scann.scann_ops_pybind.builder(self.database, self.k, "dot_product")
        if s.num_leaves:
            builder = builder.tree(num_leaves=s.num_leaves, num_leaves_to_search=s.leaves_to_search,
                                   training_sample_size=min(n, 100_000),
                                   random_init=False)   # k-means++ centres: the same index on every build
            if s.quantize:
                builder = builder.score_ah(s.dims_per_block, anisotropic_quantization_threshold=0.2).reorder(s.reorder)
            else:
                builder = builder.score_brute_force()
        else:
            builder = builder.score_brute_force()
        t = time.perf_counter()
        self.index = builder.build()
        self.timings = {"build_s": time.perf_counter() - t, "calibrate_s": 0.0}
        self.calibration: list[dict] = []
        if target_recall > 0 and s.num_leaves:
            t = time.perf_counter()
            self._calibrate(target_recall, seed)
            self.timings["calibrate_s"] = time.perf_counter() - t

    def _calibrate(self, target: float, seed: int) -> None:
        n = self.database.shape[0]
        rows = np.random.default_rng(seed).choice(n, size=min(CALIBRATION_QUERIES, n), replace=False)
        exact, _ = ExactSearcher(self.database).search(self.database[rows], self.k)
        s = self.settings
        while True:
            got = recall_at_k(self.search(self.database[rows], self.k)[0], exact)
            self.calibration.append({"leaves_to_search": s.leaves_to_search, "reorder": s.reorder, "recall": got})
            if got >= target or s.leaves_to_search >= s.num_leaves:
                return
            s = dataclasses.replace(s, leaves_to_search=min(s.num_leaves, 2 * s.leaves_to_search),
                                    reorder=min(n, 2 * s.reorder) if s.quantize else 0)
            self.settings = s

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows of the database for each query [Q, D]: ``(indices int64 [Q, k], scores float32 [Q, k])``.

        Brute-force pools return missing neighbours as ids >= N (ScaNN's unsigned -1).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        s = self.settings
        extra = {}
        if s.num_leaves:
            extra["leaves_to_search"] = s.leaves_to_search
            if s.quantize:
                extra["pre_reorder_num_neighbors"] = max(s.reorder, k)
        idx = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        for s0 in range(0, len(queries), QUERY_BLOCK):
            i, d = self.index.search_batched_parallel(queries[s0:s0 + QUERY_BLOCK], final_num_neighbors=k, **extra)
            idx[s0:s0 + len(i)], scores[s0:s0 + len(i)] = i.astype(np.int64), d
        return idx, scores


def choose_backend(n: int, d: int, queries: int, on: str | None = None,
                   scann_ok: bool | None = None) -> tuple[str, str]:
    """``("exact" | "scann", why)`` for ``queries`` searches of a pool ``n`` x ``d`` on platform ``on``.

    Exact while its ``2 Q N D`` flops fit the platform's budget (``EXACT_FLOPS``) or the pool is under
    ``SCANN_MIN_ROWS``; otherwise ScaNN where it imports, else exact.
    """
    on = platform() if on is None else on
    scann_ok = scann_available() if scann_ok is None else scann_ok
    flops, budget = 2.0 * queries * n * d, EXACT_FLOPS.get(on, EXACT_FLOPS["cpu"])
    if n < SCANN_MIN_ROWS:
        return "exact", f"pool of {n} rows < {SCANN_MIN_ROWS}"
    if flops <= budget:
        return "exact", f"exact search is {flops:.2g} flops <= {budget:.0e} on {on}"
    if not scann_ok:
        return "exact", f"exact search is {flops:.2g} flops on {on}, but scann is not importable"
    return "scann", f"exact search would be {flops:.2g} flops > {budget:.0e} on {on}"


def make_searcher(database: np.ndarray, cfg: RetrievalConfig, seed: int = 0, queries: int | None = None):
    """The searcher ``cfg.backend`` names (``auto``: :func:`choose_backend`) over ``database`` float32 [N, D].

    ``queries``: how many queries will be run (default N). ``scann`` where scann does not import falls back
    to exact. The searcher's ``backend`` and ``reason`` say what runs and why.
    """
    n, d = database.shape
    if cfg.backend == "auto":
        backend, reason = choose_backend(n, d, n if queries is None else queries)
    elif cfg.backend == "scann" and not scann_available():
        backend, reason = "exact", "retrieval.backend is scann, but scann is not importable"
    else:
        backend, reason = cfg.backend, f"retrieval.backend is {cfg.backend}"
    if backend == "scann":
        return ScannSearcher(database, min(cfg.neighbors, n), cfg.target_recall, seed, reason=reason)
    return ExactSearcher(database, reason)


def search_report(searcher, vectors: np.ndarray, k: int, max_queries: int, seed: int = 0,
                  rows: np.ndarray | None = None) -> dict:
    """Retrieval report fields of a run: ``backend``, ``backend_reason``, ``k``, ``recall_at_k`` (None for exact
    search), ``recall_queries`` and, for a calibrated ScaNN, ``calibration``.

    The recall is the approximate searcher's against exact search for at most ``max_queries`` queries drawn
    (with ``seed``) from ``vectors[rows]`` (``vectors`` float32 [M, D]; ``rows`` int [Q], default all M).
    """
    report = {"backend": searcher.backend, "backend_reason": searcher.reason, "k": int(k), "recall_at_k": None,
              "recall_queries": 0}
    if getattr(searcher, "calibration", None):
        report["calibration"] = searcher.calibration
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    if searcher.approximate and max_queries > 0 and len(rows):
        q = vectors[np.random.default_rng(seed).choice(rows, size=min(max_queries, len(rows)), replace=False)]
        approx, _ = searcher.search(q, k)
        exact, _ = ExactSearcher(searcher.database).search(q, k)
        report["recall_at_k"], report["recall_queries"] = recall_at_k(approx, exact), int(len(q))
    return report


def report_line(report: dict) -> str | None:
    """The terminal line of a run's retrieval report (see :func:`search_report`), or None without a backend."""
    if not report.get("backend"):
        return None
    line = f"retrieval: {report['backend']} ({report.get('backend_reason') or 'configured'})"
    if report.get("recall_at_k") is not None:
        line += f"; recall@{report['k']} = {report['recall_at_k']:.3f} over {report['recall_queries']} queries"
    return line
