"""The planted world's profile attribute (``synthetic.profile``): how it is drawn, and the AUC of the Bayes filter
that reads it.

Every user carries an attribute ``a`` in ``0..G-1`` (a profile field, as Taobao's user profiles): its group ``g``
with probability ``q`` (``synthetic.profile_signal``), uniform over the ``G`` groups otherwise, so
``P(a = g) = q + (1 - q) / G``. Every row carries its owner's attribute (``profile`` = ``a + 1``; 0 = unknown),
and the models read it as a feature. The derivation of :func:`bayes_filter_auc` is in docs/planted-filter.md.
"""

from __future__ import annotations

import numpy as np


def draw_profile(cfg, group: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each user's profile attribute and each attribute's logit effect: ``(profile int64 [U], effect float [G])``.

    ``cfg``: a :class:`coda_jax.config.SyntheticConfig`. The attribute is the user's group (int [U]) with
    probability ``profile_signal`` and uniform over the ``G`` groups otherwise. The effect is
    ``+profile_effect`` for the first attribute of each pair (even index) and ``-profile_effect`` for the second.
    """
    n_groups = cfg.num_user_groups
    keep = rng.random(group.shape[0]) < cfg.profile_signal
    other = rng.integers(0, n_groups, size=group.shape[0])
    effect = np.where(np.arange(n_groups) % 2 == 0, cfg.profile_effect, -cfg.profile_effect)
    return np.where(keep, group, other).astype(np.int64), effect.astype(np.float64)


def attribute_probabilities(q: float, groups: int) -> tuple[float, float, float]:
    """``(p_own, p_partner, p_rest)``: the probability that a user's attribute names its own group, its
    antithetic partner group, or one of the other ``groups - 2`` groups (together)."""
    p_own = q + (1.0 - q) / groups
    p_partner = (1.0 - q) / groups
    return p_own, p_partner, 1.0 - p_own - p_partner


def bayes_filter_auc(q: float, groups: int) -> dict:
    """AUC of the attribute-only Bayes filter, own-group against partner-group candidates (what
    ``retrieval.matching: planted_purity`` sends): ``{"right": AUC for a user whose own attribute is its group,
    "mean": AUC averaged over users}``.

    The filter knows ``q``, ``G`` and the pairing, sees only attributes (the device's own, which its local rows
    carry, and each candidate's), and ranks a candidate whose attribute equals the device's first, the device's
    partner attribute last, any other in between (the likelihood-ratio order when the device's attribute is
    right). With ``p1, p0, r`` from :func:`attribute_probabilities`: ``right = p1^2 + 2 r p1 + p0 p1 + r^2 / 2``;
    a user whose attribute names its partner group sees the order reversed (``1 - right``), one whose attribute
    names another pair sees no difference (0.5): ``mean = p1 right + p0 (1 - right) + r / 2``. Two groups at
    ``q = 0.9``: 0.95 and 0.905.
    """
    p1, p0, r = attribute_probabilities(q, groups)
    right = p1 * p1 + 2.0 * r * p1 + p0 * p1 + 0.5 * r * r
    return {"right": float(right), "mean": float(p1 * right + p0 * (1.0 - right) + 0.5 * r)}
