"""The cloud stage: pretrain the global model, embed every sample, match users, and hand each simulated user
its rows (local, coarse candidates, random pool rows, test) as one :class:`~coda_jax.cloud.output.CloudOutput`.

Coarse matching is either sample-level (ScaNN / exact search over sample vectors, :mod:`coda_jax.cloud.retrieval`)
or user-level (:mod:`coda_jax.cloud.matching`; ``planted_purity``: :mod:`coda_jax.cloud.purity`), as
``retrieval.matching`` says.
"""

from __future__ import annotations

import json

import numpy as np

from coda_jax.cloud.matching import MatchInputs, candidates_from_users, pool_by_user, users_from_candidates
from coda_jax.cloud.matchings import get_matching
from coda_jax.cloud.output import CloudOutput, UserRows
from coda_jax.cloud.pretrain import pretrain, sample_vectors
from coda_jax.cloud.purity import planted_groups
from coda_jax.cloud.retrieval import Candidates, Queries, coarse_match, make_searcher
from coda_jax.cloud.search import search_report
from coda_jax.config import Config, to_dict
from coda_jax.data.dataset import Dataset
from coda_jax.data.packing import csr_from_owner
from coda_jax.models import make_model
from coda_jax.timing import Timer


def random_rows(pool_rows: np.ndarray, row_user: np.ndarray, users: np.ndarray, count: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random pool rows per simulated user, none of them its own, in random order.

    Returns a CSR ``(offsets [S + 1], rows)``; a user keeps fewer than ``count`` only when the redraws keep
    hitting its own rows (a pool dominated by that user).
    """
    rng = np.random.default_rng(seed)
    draw = pool_rows[rng.integers(0, len(pool_rows), size=(len(users), count))]
    for _ in range(8):                                   # redraw own rows; rare
        own = row_user[draw] == users[:, None]
        if not own.any():
            break
        draw[own] = pool_rows[rng.integers(0, len(pool_rows), size=int(own.sum()))]
    keep = row_user[draw] != users[:, None]
    owner = np.broadcast_to(np.arange(len(users))[:, None], draw.shape)[keep]
    return csr_from_owner(owner, draw[keep], len(users))


def cloud_stage(cfg: Config, data: Dataset, show_progress: bool = True) -> CloudOutput:
    """Pretrain the global model and run coarse matching for every simulated user.

    Returns a :class:`~coda_jax.cloud.output.CloudOutput`: the model and its parameters, vectors [N, D], the
    simulated users' :class:`~coda_jax.cloud.output.UserRows`, the retrieval report and the cloud's timings.
    """
    timer = Timer()
    table = data.table
    model = make_model(cfg.model, table.num_users, table.num_items, table.num_genres,
                       table.num_profiles)                                                # names -> values, once
    matching = get_matching(cfg.retrieval.matching)
    pool = np.flatnonzero(data.pool)
    with timer("cloud_pretrain"):
        params, losses = pretrain(model, table, np.flatnonzero(data.cloud_rows), cfg.cloud, cfg.seed, show_progress)
    with timer("sample_vectors"):
        vectors = sample_vectors(model, params, table, center_rows=pool)
    sim_index = np.full(table.num_users, -1)
    sim_index[data.users] = np.arange(len(data.users))
    local_rows = np.flatnonzero(data.train & (sim_index[table.user] >= 0))
    local_owner = sim_index[table.user[local_rows]]                      # simulated user of each local row
    r_cfg = cfg.retrieval
    pool_lists = pool_by_user(table.user, pool, table.num_users)
    report = {"backend": None, "matching": r_cfg.matching, "k": min(r_cfg.neighbors, len(pool)),
              "recall_at_k": None, "recall_queries": 0, "pool_rows": int(len(pool)),
              "queries": int(len(local_rows)), "cloud_train_loss": losses}
    if matching.sample_level:
        with timer("index_build"):
            searcher = make_searcher(vectors[pool], r_cfg, cfg.seed, queries=len(local_rows))
        with timer("coarse_match"):
            cands: Candidates = coarse_match(searcher, vectors, pool, table.user,
                                             Queries(local_rows, local_owner, len(data.users)), r_cfg)
            matched, _ = users_from_candidates(cands, table.user, r_cfg.matched_users)
        with timer("recall_check"):
            report.update(search_report(searcher, vectors, report["k"], r_cfg.recall_queries, cfg.seed, local_rows))
    else:
        with timer("coarse_match"):
            x = MatchInputs(r_cfg, params, vectors, table.item, table.num_items, pool_lists, data.users,
                            r_cfg.matched_users, cfg.seed + 3, report, planted_groups(table))
            matched, sim = matching.match(x)
            cands = (matching.candidates(x, matched, sim) if matching.candidates is not None
                     else candidates_from_users(matched, sim, pool_lists, r_cfg.max_candidates))
    report["mean_candidates"] = float(cands.counts().mean())
    report["mean_matched_users"] = float((matched >= 0).sum(axis=1).mean())
    heldout_rows = np.flatnonzero(data.heldout & (sim_index[table.user] >= 0))
    rows = UserRows(
        local=csr_from_owner(local_owner, local_rows, len(data.users)),
        candidates=(cands.offsets, cands.rows),
        random=random_rows(pool, table.user, data.users, cfg.retrieval.max_candidates, cfg.seed + 1),
        test=csr_from_owner(sim_index[table.user[heldout_rows]], heldout_rows, len(data.users)),
        matched_users=matched, pool=pool_lists)
    return CloudOutput(model=model, params=params, vectors=vectors, rows=rows, retrieval=report, timings=timer.timings)


CLOUD_SECTIONS = ("seed", "data", "synthetic", "model", "cloud", "retrieval")
"""Config sections the dataset and the cloud stage depend on; runs that differ elsewhere can share them."""


def cloud_key(cfg: Config) -> str:
    """A key equal for two configs exactly when their dataset and cloud stage are the same."""
    d = to_dict(cfg)
    return json.dumps({k: d[k] for k in CLOUD_SECTIONS}, sort_keys=True)
