"""The package version (one place: ``coda_jax.__version__``, pyproject.toml and CITATION.cff agree, tested)."""

__version__ = "0.1.0"
