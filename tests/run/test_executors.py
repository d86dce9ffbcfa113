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
