"""The Dask executor on a real LocalCluster: results come back as tasks finish, a task's error goes
to ``on_error`` (the others finish) or, without it, is raised as the task raised it."""

from __future__ import annotations

import pytest

from coffea_lorentz.run.executors import ClusterSpec, DaskExecutor, open_executor


@pytest.fixture(scope="module")
def executor():
    with open_executor(ClusterSpec(kind="local", n_workers=1)) as executor:
        assert isinstance(executor, DaskExecutor)
        yield executor


def test_results_and_a_failed_task_handed_to_on_error(executor):
    items = ["1", "x", "3", "40"]  # int("x") raises ValueError on the worker
    pairs = dict(executor.map(int, items, on_error=lambda item, err: f"{type(err).__name__}: {err}"))
    assert pairs == {"1": 1, "x": "ValueError: invalid literal for int() with base 10: 'x'", "3": 3, "40": 40}


def test_without_on_error_the_tasks_exception_is_raised(executor):
    with pytest.raises(ValueError, match="'x'"):
        list(executor.map(int, ["1", "x"]))


def test_many_short_tasks_all_come_back(executor):
    items = [str(i) for i in range(500)]
    assert sorted(result for _, result in executor.map(int, items)) == list(range(500))


def test_a_heartbeat_that_finds_the_scheduler_gone_prints_nothing_on_the_runs_console(capfd):
    """When a run ends its scheduler closes; a worker's heartbeat then on the way logs an error with
    a traceback into the run's console (the workers share its terminal). Here a real worker process
    runs its real heartbeat against a scheduler connection that is closed: nothing reaches stderr
    with the filter that ``open_executor`` installs, the traceback does once it is taken away."""

    async def heartbeat_to_a_closed_scheduler(dask_worker, keep_filter: bool) -> None:
        import logging

        from distributed.comm.core import CommClosedError

        class ClosedScheduler:
            address = dask_worker.scheduler.address

            async def heartbeat_worker(self, **kwargs):
                raise CommClosedError("in <TCP (closed) ConnectionPool.heartbeat_worker>: Stream is closed")

        worker_logger = logging.getLogger("distributed.worker")
        filters = list(worker_logger.filters)
        if not keep_filter:
            for installed in filters:
                worker_logger.removeFilter(installed)
        scheduler, dask_worker.scheduler = dask_worker.scheduler, ClosedScheduler()
        try:
            await dask_worker.heartbeat()
        finally:
            dask_worker.scheduler = scheduler
            for installed in filters:
                if installed not in worker_logger.filters:
                    worker_logger.addFilter(installed)

    # Started here, so that the worker processes write into this test's captured stderr.
    with open_executor(ClusterSpec(kind="local", n_workers=1)) as executor:
        capfd.readouterr()
        executor.client.run(heartbeat_to_a_closed_scheduler, keep_filter=True)
        quiet = capfd.readouterr().err
        executor.client.run(heartbeat_to_a_closed_scheduler, keep_filter=False)
        loud = capfd.readouterr().err
    assert "heartbeat" not in quiet
    assert "Failed to communicate with scheduler during heartbeat" in loud
