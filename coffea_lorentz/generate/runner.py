"""Parallel generation: fixed-size tasks, one Pythia seed per task, results in task order.

The events of a request are cut into tasks of ``events_per_task`` events. Task ``k`` of a process
gets the ``k``-th seed of :func:`~coffea_lorentz.generate.pythia.task_seeds` for that
(seed, process, variation) stream — a configuration with extra settings has a stream of its own —
and numbers its events from ``k * events_per_task + 1``. The
output therefore depends on the seed and ``events_per_task`` only, never on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInputError
from .clustering import quiet_fastjet_banner, show_fastjet_banner
from .pythia import PROCESSES, GeneratorConfig, task_seeds

__all__ = ["Task", "TaskOutput", "GenerationSummary", "make_tasks", "run_tasks"]


@dataclass(frozen=True, kw_only=True)
class Task:
    """One worker's share: ``n_events`` events of ``generator`` seeded with ``seed``, numbered from ``first_event``."""

    generator: GeneratorConfig
    n_events: int
    seed: int
    first_event: int
    index: int


@dataclass(frozen=True, kw_only=True)
class TaskOutput:
    """What a task returns: its payload, how many jets it kept, and the CPU seconds it used."""

    payload: Any
    n_events: int
    n_jets: int
    cpu_s: float


@dataclass(frozen=True, kw_only=True)
class GenerationSummary:
    """Counts and rates of one generation run.

    Attributes:
        path: the file written.
        n_events: events generated, per process.
        n_jets: jets produced, per process (dataset: in the pT window, matched, before balancing).
        wall_s: wall-clock seconds of the whole run, writing included.
        core_s: CPU seconds summed over tasks (generation + clustering, measured in the workers,
            so the per-core rates hold on a shared machine too).
        size_bytes: size of the file written.
        workers: worker processes used.
        n_written: jets written per process where that differs from ``n_jets`` (dataset balancing).
    """

    path: str
    n_events: dict[str, int]
    n_jets: dict[str, int]
    wall_s: float
    core_s: float
    size_bytes: int
    workers: int
    n_written: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s_per_core(self) -> float:
        return sum(self.n_events.values()) / self.core_s if self.core_s > 0 else 0.0

    @property
    def jets_per_s_per_core(self) -> float:
        return sum(self.n_jets.values()) / self.core_s if self.core_s > 0 else 0.0

    def lines(self) -> list[str]:
        """A human-readable summary, one fact per line."""
        lines = [f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB)"]
        for process in self.n_events:
            line = f"  {process}: {self.n_events[process]} events, {self.n_jets.get(process, 0)} jets"
            if process in self.n_written:
                line += f" ({self.n_written[process]} written)"
            lines.append(line)
        lines.append(
            f"  {self.wall_s:.1f} s wall, {self.core_s:.1f} CPU-s on {self.workers} worker(s): "
            f"{self.events_per_s_per_core:.1f} events/s per core, {self.jets_per_s_per_core:.1f} jets/s per core"
        )
        return lines


def make_tasks(
    generator: GeneratorConfig, *, n_events: int, seed: int, events_per_task: int
) -> list[Task]:
    """Cut ``n_events`` of ``generator`` into tasks with seeds from the (seed, process, variation) stream."""
    if n_events < 1:
        raise InvalidInputError(f"n_events: expected >= 1, got {n_events}")
    if events_per_task < 1:
        raise InvalidInputError(f"events_per_task: expected >= 1, got {events_per_task}")
    n_tasks = -(-n_events // events_per_task)
    stream: tuple[int, ...] = (PROCESSES.index(generator.process), int(generator.alternative))
    if generator.extra_settings:  # another configuration: its own random stream
        stream += (zlib.crc32("\n".join(generator.extra_settings).encode()),)
    seeds = task_seeds(seed, n_tasks, stream=stream)
    return [
        Task(
            generator=generator,
            n_events=min(events_per_task, n_events - k * events_per_task),
            seed=seeds[k],
            first_event=k * events_per_task + 1,
            index=k,
        )
        for k in range(n_tasks)
    ]


def _timed(args: tuple[Callable[..., TaskOutput], Task, tuple]) -> TaskOutput:
    function, task, extra = args
    start = time.process_time()
    output = function(task, *extra)
    return TaskOutput(
        payload=output.payload, n_events=output.n_events, n_jets=output.n_jets, cpu_s=time.process_time() - start
    )


def run_tasks(
    function: Callable[..., TaskOutput],
    tasks: Sequence[Task],
    *,
    workers: int,
    extra: tuple = (),
    progress: Callable[[int, int], None] | None = None,
) -> list[TaskOutput]:
    """``function(task, *extra)`` for every task, on ``workers`` processes; results in task order.

    ``function`` must be a module-level function (it is pickled to spawned workers). With
    ``workers == 1`` everything runs in this process. ``progress(done, total)`` is called after
    each task. FastJet's banner appears once, from this process, never from the workers.
    """
    if workers < 1:
        raise InvalidInputError(f"workers: expected >= 1, got {workers}")
    jobs = [(function, task, extra) for task in tasks]
    workers = max(1, min(workers, len(jobs)))
    outputs: list[TaskOutput] = []
    if workers == 1:
        results = map(_timed, jobs)
        for output in results:
            outputs.append(output)
            if progress is not None:
                progress(len(outputs), len(jobs))
        return outputs
    show_fastjet_banner()  # once, here: the workers keep theirs quiet
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=workers, initializer=quiet_fastjet_banner) as pool:
        for output in pool.imap(_timed, jobs, chunksize=1):
            outputs.append(output)
            if progress is not None:
                progress(len(outputs), len(jobs))
    return outputs
