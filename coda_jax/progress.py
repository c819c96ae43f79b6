"""Progress bars for stages that take more than a few seconds (tqdm, on stderr)."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(iterable, desc: str, unit: str = "it", disable: bool = False, total: int | None = None):
    """Wrap ``iterable`` in a tqdm bar labelled ``desc``; ``disable`` turns it off (tests, library use)."""
    return tqdm(iterable, desc=desc, unit=unit, disable=disable, total=total, leave=False, dynamic_ncols=True)
