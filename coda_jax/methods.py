"""Moved to :mod:`coda_jax.device.methods` (beside the stage that runs them); this name stays for research code
that imports ``coda_jax.methods``."""

from coda_jax.device.methods import *  # noqa: F401,F403 - the public names of coda_jax.device.methods
from coda_jax.device.methods import __all__  # noqa: F401
