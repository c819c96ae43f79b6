"""One module per public dataset, each a thin mapping onto the ingest core (:mod:`coda_jax.data.ingest`,
:mod:`~coda_jax.data.parse`, :mod:`~coda_jax.data.stream`, :mod:`~coda_jax.data.tables`).

Every source module has ``KIND`` (``"dir"``: read from ``data.data_dir``; ``"file"``: from ``data.path``),
``NEEDS`` (what that path must hold, for errors) and ``load(data_config, seed) -> Interactions`` (rows it
dropped with ``data.skip_bad_rows`` counted in the log's ``dropped_rows``). A source's own options sit in its
own block of the data config (``data.csv``, ``data.taobao``, ``data.amazon``).
"""

from __future__ import annotations

from types import ModuleType

from coda_jax.config import ConfigError
from coda_jax.data.schema import Interactions
from coda_jax.data.sources import amazon, csv, movielens1m, movielens100k, movielens_csv, taobao

SOURCES: dict[str, ModuleType] = {"movielens100k": movielens100k, "movielens1m": movielens1m,
                                  "movielens_csv": movielens_csv, "amazon": amazon, "taobao": taobao, "csv": csv}
"""``data.source`` -> its module (``synthetic`` is generated, not read)."""


def load_source(d, seed: int) -> Interactions:
    """Returns the interaction log of ``d.source`` (a :class:`~coda_jax.config.DataConfig`), read from
    ``d.data_dir`` or ``d.path``; raises :class:`ConfigError` naming the key when that path is not set."""
    if d.source not in SOURCES:
        raise ConfigError(f"data.source: unknown source {d.source!r}")
    src = SOURCES[d.source]
    if src.KIND == "dir" and not d.data_dir:
        raise ConfigError(f"data.data_dir: the {d.source} source needs {src.NEEDS} (pass --data-dir PATH)")
    if src.KIND == "file" and not d.path:
        raise ConfigError(f"data.path: the {d.source} source reads one file, {src.NEEDS} (pass --set data.path=FILE)")
    return src.load(d, seed)
