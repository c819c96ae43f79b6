"""What the cloud stage hands to the devices: :class:`CloudOutput` (the model, its parameters, the sample
vectors, every simulated user's row lists and the retrieval report) and its row lists, :class:`UserRows`."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import numpy as np

from coda_jax.data.packing import offsets_from_counts, pad_rows


@dataclasses.dataclass(frozen=True)
class UserRows:
    """CSR row lists of the simulated users (``0..num_users-1`` in simulation order).

    ``local``, ``candidates``, ``random``, ``test``: ``(offsets int64 [S + 1], rows int64 [total])`` of table
    rows. ``matched_users``: int64 [S, M] global index of each simulated user's matched users, best first
    (``-1`` pads). ``pool``: ``(offsets int64 [num_users + 1], rows)`` every user's pool rows in time order.
    """

    local: tuple[np.ndarray, np.ndarray]
    candidates: tuple[np.ndarray, np.ndarray]
    random: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    matched_users: np.ndarray | None = None
    pool: tuple[np.ndarray, np.ndarray] | None = None

    def counts(self, field: str) -> np.ndarray:
        return np.diff(getattr(self, field)[0])

    def subset(self, users: np.ndarray) -> "UserRows":
        """The row lists of the simulated users ``users`` (int [S'], indices into this object's users), in
        that order; ``pool`` (every user's pool rows) is kept whole."""
        users = np.asarray(users, np.int64)

        def pick(field: str) -> tuple[np.ndarray, np.ndarray]:
            offsets, rows = getattr(self, field)
            index, mask = pad_rows(offsets, rows, users, int(self.counts(field)[users].max(initial=0)))
            return offsets_from_counts(mask.sum(axis=1)), index[mask]

        return UserRows(local=pick("local"), candidates=pick("candidates"), random=pick("random"),
                        test=pick("test"),
                        matched_users=None if self.matched_users is None else self.matched_users[users],
                        pool=self.pool)


@dataclasses.dataclass(frozen=True)
class CloudOutput:
    """Everything the cloud stage produced for one dataset and config (see :func:`coda_jax.cloud.stage.cloud_stage`).

    Attributes:
      model: the CTR model (a flax module).
      params: its pretrained parameter dict (the global model every device copies).
      vectors: float32 [N, D] the sample vector of every table row (centred on the pool, L2-normalised).
      rows: every simulated user's local / candidate / random / test rows, its matched users and every user's
        pool rows (:class:`UserRows`, S simulated users).
      retrieval: the retrieval report: backend, matching, k, recall@k and its query count, pool rows, queries,
        mean candidates and matched users per user, the cloud's training loss per epoch.
      timings: stage name -> seconds (``cloud_pretrain``, ``sample_vectors``, ``index_build``, ``coarse_match``,
        ``recall_check``; those the run went through).

    Unpacks as the 5-tuple ``cloud_stage`` returned before: ``model, params, vectors, rows, report`` (``report``:
    ``retrieval`` with ``timings`` under ``"timings"``).
    """

    model: nn.Module
    params: Any
    vectors: np.ndarray
    rows: UserRows
    retrieval: dict
    timings: dict = dataclasses.field(default_factory=dict)

    @property
    def matched_users(self) -> np.ndarray | None:
        """int64 [S, M] each simulated user's matched users (global user index, best first, ``-1`` pads)."""
        return self.rows.matched_users

    def __iter__(self):
        return iter((self.model, self.params, self.vectors, self.rows, dict(self.retrieval, timings=self.timings)))
