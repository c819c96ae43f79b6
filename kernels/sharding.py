"""``shard_map`` across jax versions: ``jax.shard_map`` (newer jax, ``check_vma``) or
``jax.experimental.shard_map.shard_map`` (older jax, ``check_rep``), replication checks off."""

from __future__ import annotations

import jax
from jax.sharding import Mesh


def shard_map(fn, mesh: Mesh, in_specs: tuple, out_specs):
    """``fn`` run once per device of ``mesh`` on the shards ``in_specs`` name; outputs assembled by ``out_specs``."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map as legacy  # noqa: PLC0415 - older jax

    return legacy(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)
