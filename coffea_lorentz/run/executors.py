"""Where a run's tasks execute: Dask (an existing scheduler or a LocalCluster) or this process.

An executor maps a function over items and yields ``(item, result)`` pairs as they finish — Dask
does the scheduling, this module only submits and collects. A task that raises (or a worker
that dies under it) is handed to ``on_error``, which turns it into a result, so one lost task never
loses the others; without ``on_error`` the first error cancels what is left and is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

__all__ = ["InProcessExecutor", "DaskExecutor", "open_executor"]


class InProcessExecutor:
    """Runs tasks one after the other in this process."""

    workers = 1

    def map(self, function: Callable, items: Sequence, *, on_error: Callable | None = None,
            key_prefix: str = "task") -> Iterator[tuple[object, object]]:
        for item in items:
            try:
                yield item, function(item)
            except Exception as err:  # noqa: BLE001 - handed to on_error, or raised
                if on_error is None:
                    raise
                yield item, on_error(item, err)


class DaskExecutor:
    """Submits tasks to a ``distributed.Client``; results come back as they complete."""

    def __init__(self, client):
        self.client = client

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, function: Callable, items: Sequence, *, on_error: Callable | None = None,
            key_prefix: str = "task") -> Iterator[tuple[object, object]]:
        from distributed import as_completed

        if not items:
            return
        futures = self.client.map(function, list(items), pure=False, retries=0, key=[
            f"{key_prefix}-{i}-{id(items)}" for i in range(len(items))])
        item_of = {future.key: item for future, item in zip(futures, items)}
        try:
            for future in as_completed(futures):
                item = item_of[future.key]
                try:
                    result = future.result()
                except Exception as err:  # noqa: BLE001 - a task error or a lost worker
                    if on_error is None:
                        raise
                    result = on_error(item, err)
                future.release()
                yield item, result
        finally:
            pending = [future for future in futures if not future.done()]
            if pending:
                self.client.cancel(pending)


@contextlib.contextmanager
def open_executor(*, scheduler: str | None, n_workers: int) -> Iterator[InProcessExecutor | DaskExecutor]:
    """An executor for a run: the scheduler at ``scheduler``, else a LocalCluster of ``n_workers``
    processes (one thread each), else (``n_workers`` ≤ 0) this process. A cluster started here is
    closed on exit; one given by address is left running."""
    if scheduler is None and n_workers <= 0:
        yield InProcessExecutor()
        return
    import logging

    from distributed import Client, LocalCluster

    # Port-in-use and nanny chatter of a LocalCluster is not the user's concern.
    for name in ("distributed.scheduler", "distributed.nanny", "distributed.worker", "distributed.core",
                 "distributed.http.proxy", "distributed.deploy.spec"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler is not None:
        with Client(scheduler) as client:
            yield DaskExecutor(client)
        return
    # ":0": any free port for the scheduler's HTTP server, never the "8787 is in use" warning.
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield DaskExecutor(client)
