"""The figures' shared look and output (:mod:`sims.report` and :mod:`sims.report_filter` draw with it): colours,
reference-row styles, formats, titles naming dataset, model and seed, and atomic saving in every format."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from coda_jax.config import ConfigError

CODA = "coda"
CODA_COLOR = "#c0392b"       # coda: red
METHOD_COLOR = "#1f4e79"     # the other methods: dark blue
SWEEP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# reference rows: each its own grey, line style and marker, so oracle, group-oracle, ... tell apart in print
REFERENCE_STYLES = (("#8c8c8c", "--", "s"), ("#4d4d4d", ":", "^"), ("#a6a6a6", "-.", "D"),
                    ("#333333", (0, (5, 1, 1, 1)), "v"), ("#bdbdbd", (0, (1, 1)), "P"), ("#666666", "--", "X"),
                    ("#7f7f7f", (0, (3, 1, 1, 1, 1, 1)), "*"), ("#262626", (0, (2, 2)), "p"))
FORMATS = ("png", "pdf", "svg")
DPI = 200


# ----------------------------------------------------------------------------------------------- drawing

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - only when drawing
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write the figure once per format (``path`` with that suffix) through a temporary file and ``os.replace``
    (never a half-written file); returns the files."""
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA.get(fmt))
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}   # no timestamps: the same input, the same file


def formats_of(text: str) -> tuple[str, ...]:
    """``--format png,pdf`` -> ``("png", "pdf")``; an unknown or repeated format is a :class:`ConfigError`."""
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"--format: unknown format {f!r}; known: {', '.join(FORMATS)} (comma-separated)")
    if not formats or len(set(formats)) != len(formats):
        raise ConfigError(f"--format: give each of {', '.join(FORMATS)} at most once, e.g. png,pdf; got {text!r}")
    return formats


def _styles(names: list[str], reference: dict[str, bool]) -> dict[str, tuple]:
    """``name -> (color, line style, marker)``: coda red, methods blue (sweeps: a palette), each reference row
    its own grey, line style and marker (:data:`REFERENCE_STYLES`, in order of appearance)."""
    refs = [n for n in names if reference.get(n)]
    out = {n: REFERENCE_STYLES[refs.index(n) % len(REFERENCE_STYLES)] for n in refs}
    out.update({n: (CODA_COLOR if n == CODA else METHOD_COLOR, "-", "o") for n in names if n not in out})
    return out


def _label(name: str, reference: bool) -> str:
    return f"{name} (reference)" if reference else name


def _dataset(results: dict) -> str:
    """The dataset's name: the config's ``data.source``, or ``DataFrame`` for a log given from Python."""
    cfg = results.get("config") if isinstance(results.get("config"), dict) else {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    given = results.get("data", {}).get("source") if isinstance(results.get("data"), dict) else None
    return "DataFrame" if given == "DataFrame" else str(data.get("source", ""))


def _title(runs: dict | list[dict], what: str) -> str:
    """``what`` over a line naming the dataset, model, seed(s) and evaluation rows of one run or several."""
    runs = runs if isinstance(runs, list) else [runs]
    cfgs = [r.get("config") if isinstance(r.get("config"), dict) else {} for r in runs]

    def values(section: str, key: str) -> list[str]:
        got = [c.get(section, {}).get(key) if isinstance(c.get(section), dict) else None for c in cfgs]
        return sorted({str(v) for v in got if v not in (None, "")})

    seeds = sorted({c["seed"] for c in cfgs if isinstance(c.get("seed"), int)})
    seed = "" if not seeds else f"seed {seeds[0]}" if len(seeds) == 1 else (
        f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else
        "seeds " + ", ".join(map(str, seeds)))
    bits = [", ".join(sorted({_dataset(r) for r in runs} - {""})), ", ".join(values("model", "name")), seed,
            " / ".join(values("data", "eval_on")) + " rows" if values("data", "eval_on") else ""]
    where = ", ".join(b for b in bits if b)
    return f"{what}\n({where})" if where else what
