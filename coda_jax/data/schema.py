"""The host-side data tables every stage of the simulator reads.

Two tables, both plain numpy:

* :class:`Interactions` -- what a reader or the synthetic generator produces: one row per (user, item, time)
  event with a binary label, ids already densified.
* :class:`SampleTable` -- CTR samples built from interactions (:func:`coda_jax.data.features.build_samples`):
  each row carries the target item, its genres and the user's liked / disliked history before that moment.

Id conventions (shared by models and the device-side local vocabulary):

* users are ``0 .. num_users-1``;
* items are ``1 .. num_items``; id ``0`` is padding (empty history slot), so item tables have
  ``num_items + 1`` rows;
* genres are ``1 .. num_genres``; id ``0`` is padding.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interactions:
    """A log of labelled user-item events, ids densified.

    Attributes:
      user: int32 [N], dense user index ``0..num_users-1``.
      item: int32 [N], dense item id ``1..num_items``.
      label: float32 [N], 1.0 positive (e.g. rating >= 4), 0.0 negative.
      time: int64 [N], event timestamp (any monotone unit).
      item_genres: int32 [num_items + 1, G], padded genre ids of every item (row 0 is the padding item).
      user_ids: [num_users] the dataset's own user id of every dense user index (for reporting).
      num_genres: number of distinct genres (ids ``1..num_genres``).
      name: where the data came from (file path or generator name), used in error messages and results.
      dropped_rows: rows the reader dropped, by reason (only with ``data.skip_bad_rows``; else empty).
      logit: float64 [N] the true click logit of every row (planted synthetic world only; else None).
      planted: the planted world's parameters (:class:`coda_jax.data.synthetic.PlantedWorld`; else None).
      user_profile: int32 [num_users] each user's profile attribute, ``1..num_profiles`` (0 = unknown), or None
        when the data has no profile field.
      num_profiles: number of distinct profile attributes (0 without a profile).
    """

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    time: np.ndarray
    item_genres: np.ndarray
    user_ids: np.ndarray
    num_genres: int
    name: str
    dropped_rows: dict = dataclasses.field(default_factory=dict)
    logit: np.ndarray | None = None
    planted: object | None = None
    user_profile: np.ndarray | None = None
    num_profiles: int = 0

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_genres.shape[0] - 1)

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """CTR samples, one row per interaction, sorted by (user, time).

    Attributes:
      user: int32 [N] dense user index.
      item: int32 [N] target item id (``1..num_items``).
      genres: int32 [N, G] padded genre ids of the target item.
      hist_pos: int32 [N, L] the user's last ``L`` liked items before this row, most recent first, 0-padded.
      hist_neg: int32 [N, L] the user's last ``L`` disliked items before this row, most recent first, 0-padded.
      label: float32 [N] click / like label.
      time: int64 [N] timestamp.
      user_ids: [num_users] dataset user id of each dense user index.
      num_items: number of real items (tables have ``num_items + 1`` rows).
      num_genres: number of real genres (tables have ``num_genres + 1`` rows).
      name: dataset name.
      logit: float64 [N] the true click logit (planted synthetic world only; else None).
      planted: the planted world's parameters (planted synthetic world only; else None).
      user_profile: int32 [num_users] each user's profile attribute ``1..num_profiles`` (0 = unknown), or None.
      num_profiles: number of profile attributes (0: the data has no profile; rows then carry no ``profile``).
    """

    user: np.ndarray
    item: np.ndarray
    genres: np.ndarray
    hist_pos: np.ndarray
    hist_neg: np.ndarray
    label: np.ndarray
    time: np.ndarray
    user_ids: np.ndarray
    num_items: int
    num_genres: int
    name: str
    logit: np.ndarray | None = None
    planted: object | None = None
    user_profile: np.ndarray | None = None
    num_profiles: int = 0

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def history_len(self) -> int:
        return int(self.hist_pos.shape[1])

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def features(self, rows: np.ndarray | slice | None = None) -> dict[str, np.ndarray]:
        """The model-input feature dict of the given rows (all rows when ``rows`` is None).

        Returns a dict with ``user`` [n], ``item`` [n], ``genres`` [n, G], ``hist_pos`` [n, L],
        ``hist_neg`` [n, L] (int32) -- the keys every model in :mod:`coda_jax.models` reads -- and, when the
        data has a profile (``num_profiles > 0``), ``profile`` [n]: the row owner's attribute.
        """
        sel = slice(None) if rows is None else rows
        out = {
            "user": self.user[sel],
            "item": self.item[sel],
            "genres": self.genres[sel],
            "hist_pos": self.hist_pos[sel],
            "hist_neg": self.hist_neg[sel],
        }
        if self.num_profiles:
            out["profile"] = self.user_profile[self.user[sel]]
        return out


FEATURE_KEYS = ("user", "item", "genres", "hist_pos", "hist_neg")
"""Keys of a model-input feature dict, in a fixed order (plus ``profile`` where the data has one)."""
