"""The matching registry: ``retrieval.matching`` names and what they do.

A user-level matching is a function of the cloud's view (:class:`~coda_jax.cloud.matching.MatchInputs`:
the model's parameters, every row's sample vector and item, every user's pool rows, the simulated users,
how many to match, a seed, a report dict) returning each simulated user's matched users, best first::

    match(x: MatchInputs) -> (users int [S, count] global user index, -1 pads; scores float [S, count])

The coarse candidates are then the matched users' pool rows (best-matched user first, each user's latest
rows first, up to ``retrieval.max_candidates``), and the matched users are what ``mpda`` goes through.
``sample`` is the one sample-level entry: each local sample's nearest pool samples (ScaNN / exact), whose
owners become the matched users (:func:`coda_jax.cloud.stage.cloud_stage` runs it).

:func:`register_matching` runs the function once on a tiny pool (host arrays: it is not compiled) and names
the matching in every error.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from coda_jax.cloud.matching import MatchInputs, by_item_overlap, by_random_users, by_user_embedding
from coda_jax.cloud.purity import by_planted_purity, planted_purity_candidates
from coda_jax.config import RetrievalConfig
from coda_jax.registry import Registry, check_callable, expect, on_tiny_input


@dataclasses.dataclass(frozen=True)
class Matching:
    """One registry entry: ``match`` (None for the sample-level ``sample``), whether it is sample-level, one
    line of description, and ``candidates``: optional ``(MatchInputs, users [S, M], scores [S, M]) ->
    Candidates`` where the matching picks its candidates itself (None: the matched users' latest pool rows,
    :func:`~coda_jax.cloud.matching.candidates_from_users`)."""

    name: str
    match: Callable | None
    sample_level: bool = False
    description: str = ""
    candidates: Callable | None = None


REGISTRY: Registry[Matching] = Registry("register_matching", "retrieval.matching", "matching")


def tiny_inputs() -> MatchInputs:
    """A tiny cloud: 6 users with 2 pool rows each (12 rows, 5 items), users 0, 2 and 4 simulated, 2 matched each
    (planted groups 0, 1, 0, 1, 0, 1: one antithetic pair)."""
    rng = np.random.default_rng(0)
    counts = np.full(6, 2)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    vectors = rng.normal(size=(12, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return MatchInputs(cfg=RetrievalConfig(backend="exact", recall_queries=0), params={}, vectors=vectors,
                       item=(np.arange(12) % 5 + 1).astype(np.int64), num_items=5,
                       pool=(offsets, np.arange(12, dtype=np.int64)), sim_users=np.array([0, 2, 4]), count=2, seed=0,
                       groups=np.array([0, 1, 0, 1, 0, 1]))


def check_matching(where: str, match: Callable) -> None:
    """``match`` on :func:`tiny_inputs`: it must return ``(users int [3, 2] in [-1, 6), scores [3, 2])``."""
    check_callable(where, "match", match, 1)
    out = on_tiny_input(where, "match", lambda: match(tiny_inputs()))
    expect(where, isinstance(out, tuple) and len(out) == 2, f"match must return (users, scores), got "
                                                            f"{type(out).__name__}")
    users, scores = (np.asarray(a) for a in out)
    expect(where, users.shape == (3, 2) and scores.shape == (3, 2),
           f"match must return users and scores of shape [S, count] ([3, 2] here), got {users.shape} and "
           f"{scores.shape}")
    expect(where, np.issubdtype(users.dtype, np.integer) and ((users >= -1) & (users < 6)).all(),
           f"match's users must be integer global user indices (-1 pads), got {users.dtype} {users.tolist()}")


def register_matching(name: str, match: Callable, *, description: str = "", replace: bool = False) -> Matching:
    """Register a user-level matching ``MatchInputs -> (users [S, count], scores [S, count])`` (see the module
    docstring) as ``retrieval.matching: <name>``; checked on a tiny pool first. Returns its entry."""
    check_matching(REGISTRY.where(name), match)
    return REGISTRY.add(name, Matching(name, match, description=description), replace)


def get_matching(name: str) -> Matching:
    """The registry entry of ``name`` (a :class:`~coda_jax.config.ConfigError` naming the known ones otherwise)."""
    return REGISTRY.get(name)


def match_users(x: MatchInputs) -> tuple[np.ndarray, np.ndarray]:
    """User-level matching by ``x.cfg.matching`` (not ``sample``): ``(users, scores)`` int64 / float32
    [S, count], best first, ``-1`` / ``-inf`` padding."""
    entry = get_matching(x.cfg.matching)
    if entry.sample_level:
        raise ValueError(f"retrieval.matching: {entry.name!r} is sample-level, not a user-level matching")
    users, scores = entry.match(x)
    return np.asarray(users, np.int64), np.asarray(scores, np.float32)


REGISTRY.add("sample", Matching("sample", None, sample_level=True,
                                 description="each local sample's nearest pool samples (ScaNN / exact)"))
REGISTRY.add("user_embedding", Matching("user_embedding", by_user_embedding,
                                         description="nearest users by the cloud model's user vectors"))
REGISTRY.add("item_overlap", Matching("item_overlap", by_item_overlap,
                                       description="nearest users by the cosine of their item sets"))
REGISTRY.add("random_users", Matching("random_users", by_random_users, description="users drawn at random"))
REGISTRY.add("planted_purity", Matching("planted_purity", by_planted_purity, candidates=planted_purity_candidates,
                                         description="own-group and partner-group users in a set share "
                                                     "(retrieval.purity; planted worlds with antithetic pairs)"))
