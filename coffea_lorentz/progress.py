"""Progress on stderr: a tqdm bar when tqdm is installed, else one plain line per step.

:func:`progress_bar` is a context manager yielding ``advance(n)``; nothing is printed when
``enabled`` is False. No state is kept between bars.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: int, description: str, *, unit: str = "it", enabled: bool = True
                 ) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` moving a bar of ``total`` steps named ``description`` on stderr.

    With tqdm a bar is drawn; without it, a line ``description: done/total unit (s)`` is printed
    at most every 5 seconds and once at the end.
    """
    if not enabled:
        yield lambda n=1: None
        return
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm

        with tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
            yield bar.update
        return
    start = last = time.perf_counter()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if now - last >= 5.0 or done >= total:
            last = now
            print(f"{description}: {done}/{total} {unit} ({now - start:.0f} s)", file=sys.stderr, flush=True)

    yield advance
