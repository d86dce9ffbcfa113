"""torch's CPU thread count, set for a scope and restored after it.

torch keeps one intra-op thread count per process; setting it is a process-wide side effect, so
code here sets it only inside :func:`thread_count`, which puts the previous value back on exit
(training, reweighting, the in-process backend with ``n_threads``).

>>> import torch
>>> before = torch.get_num_threads()
>>> with thread_count(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["thread_count"]


@contextlib.contextmanager
def thread_count(n_threads: int | None) -> Iterator[None]:
    """Context: torch uses ``n_threads`` CPU threads inside (None: leave the count alone), the previous count after."""
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
