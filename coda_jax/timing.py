"""Wall-clock timings of named stages: ``with timer("stage"): ...`` adds the seconds to ``timer.timings``."""

from __future__ import annotations

import time


class Timer:
    """Stage name -> seconds, summed over every span of that name."""

    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = timer.timings.get(name, 0.0) + time.perf_counter() - self.t

        return _Span()
