"""Where a run's tasks execute: a Dask cluster — local, given by address, from a dask-gateway server
or from a batch pool through dask-jobqueue — or this process.

:class:`ClusterSpec` reads what ``--cluster`` says::

    local                    a LocalCluster of n_workers processes (the default)
    tcp://HOST:PORT          an existing scheduler (left running at the end)
    gateway[:URL]            a new cluster from a dask-gateway server (URL, else the dask config's
                             gateway.address), scaled to n_workers or adaptive
    htcondor | slurm         a dask-jobqueue cluster: worker jobs with cores, memory, walltime from
                             the options or the user's dask config (jobqueue.htcondor / jobqueue.slurm)
    futures                  a pool of n_workers local processes (``concurrent.futures``), no Dask
    in-process               every task in this process, one after the other

:func:`open_executor` starts (and at the end closes) the cluster, waits for workers — reporting
them as they join — and checks, before any chunk, that every worker imports coffea-lorentz at this
version and reaches the Triton server (:meth:`DaskExecutor.check_workers`). An executor maps a
function over items and yields ``(item, result)`` pairs as they finish; Dask does the scheduling.
A task that raises (or whose worker dies) is handed to ``on_error``, which turns it into a result,
so one lost task never loses the others; without ``on_error`` the first error cancels the rest.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["ClusterSpec", "InProcessExecutor", "FuturesExecutor", "DaskExecutor", "open_executor", "job_script",
           "check_worker"]

_KINDS = ("local", "address", "gateway", "htcondor", "slurm", "futures", "in-process")
_JOBQUEUE_CLASSES = {"htcondor": "HTCondorCluster", "slurm": "SLURMCluster"}
_DEFAULT_HTCONDOR_DISK = "2GB"


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A Dask cluster to run on.

    Attributes:
        kind: one of ``local``, ``address``, ``gateway``, ``htcondor``, ``slurm``, ``in-process``.
        address: the scheduler address (``address``) or the gateway URL (``gateway``; None: dask config).
        n_workers: workers to start (local, gateway, jobqueue: one worker per job).
        adapt: ``(minimum, maximum)`` workers for adaptive scaling instead of ``n_workers``.
        cores, memory, walltime, disk: resources of one worker job (jobqueue; None: dask config).
        worker_wait_s: how long to wait for the first worker before giving up.
        environment: shell lines a batch job runs before the worker starts; None activates the
            client's own environment (``source <sys.prefix>/bin/activate``): a shared software area.
    """

    kind: str = "local"
    address: str | None = None
    n_workers: int = 2
    adapt: tuple[int, int] | None = None
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    disk: str | None = None
    worker_wait_s: float = 600.0
    environment: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(f"cluster kind {self.kind!r}: expected one of {', '.join(_KINDS)}")
        if self.adapt is not None and not 0 <= self.adapt[0] <= self.adapt[1]:
            raise ConfigurationError(f"adaptive workers: expected 0 ≤ MIN ≤ MAX, got {self.adapt}")

    @classmethod
    def parse(cls, text: str, **options) -> "ClusterSpec":
        """``--cluster`` text → spec; ``options`` fill the other fields."""
        text = text.strip()
        if text.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            return cls(kind="address", address=text, **options)
        if text == "gateway" or text.startswith("gateway:"):
            url = text.partition(":")[2] or None
            return cls(kind="gateway", address=url, **options)
        if text in _KINDS and text != "address":
            return cls(kind=text, **options)
        raise ConfigurationError(
            f"--cluster {text!r}: expected local, tcp://HOST:PORT, gateway[:URL], htcondor, slurm, futures or in-process"
        )

    @property
    def owned(self) -> bool:
        """Whether the run starts this cluster (and so closes it at the end)."""
        return self.kind != "address"

    def job_environment(self) -> list[str]:
        """Shell lines run in a batch job before the worker (the client's environment by default)."""
        if self.environment is not None:
            return list(self.environment)
        activate = Path(sys.prefix) / "bin" / "activate"
        return [f"source {activate}"] if activate.is_file() else []


def check_worker(server_url: str | None, timeout_s: float = 10.0, tls=None, token=None) -> dict:
    """Run on a worker: the coffea-lorentz version it imports and whether it reaches ``server_url``
    (over TLS and with the bearer token the run's client uses: a
    :class:`~coffea_lorentz.infer.security.TlsConfig` and a
    :class:`~coffea_lorentz.infer.security.BearerToken`, or None)."""
    import socket

    import coffea_lorentz

    report = {"version": coffea_lorentz.__version__, "host": socket.gethostname(), "server": None}
    if server_url:
        # Several servers: the client balances over those that answer, so one reachable is enough.
        urls = [url for url in server_url.split(",") if url.strip()]
        errors = [error for error in (_server_problem(url, timeout_s, tls, token) for url in urls) if error]
        if len(errors) == len(urls):
            report["server"] = "; ".join(errors)
    return report


def _server_problem(url: str, timeout_s: float, tls=None, token=None) -> str | None:
    """Why this worker cannot use the Triton server at ``url`` (with ``tls`` and ``token`` as the
    run's client), or None."""
    try:
        from ..infer.security import open_client, resolve_tls
        from ..infer.triton_client import normalise_url

        address = normalise_url(url.strip())
        client = open_client(address, tls=resolve_tls(url.strip(), tls), token=token)
        try:
            if not client.is_server_ready(client_timeout=timeout_s):
                return f"Triton server at {address} answers but is not ready"
        finally:
            client.close()
    except Exception as err:  # noqa: BLE001 - any failure is this worker's, reported in one line
        from ..infer.outage import _status

        if _status(err) == "RESOURCE_EXHAUSTED":
            return None  # a rate-limited front door answered (after checking the token): reachable
        return f"cannot reach the Triton server at {url.strip()}: {' '.join(str(err).split())[:200]}"
    return None


def _results(completed: Iterator, item_of: Callable, on_error: Callable | None) -> Iterator[tuple[object, object]]:
    """``(item, result)`` for futures in the order they complete; a task's error (or its lost
    worker) goes to ``on_error``, or is raised when there is none."""
    for future in completed:
        item = item_of(future)
        try:
            result = future.result()
        except Exception as err:  # noqa: BLE001 - a task error or a lost worker
            if on_error is None:
                raise
            result = on_error(item, err)
        yield item, result


def _task_error(future, outcome) -> BaseException | None:
    """The exception of a finished Dask ``future`` whose ``outcome`` came from ``as_completed(...,
    with_results=True, raise_errors=False)`` (an error's ``(type, exception, traceback)``, a
    cancelled task's CancelledError), or None when it succeeded."""
    if future.status == "error":
        _, exception, traceback = outcome
        return exception.with_traceback(traceback)
    if future.cancelled():
        return outcome if isinstance(outcome, BaseException) else future.exception()
    return None


class InProcessExecutor:
    """Runs tasks one after the other in this process."""

    scheduler_address: str | None = None

    def map(self, function: Callable, items: Sequence, *, on_error: Callable | None = None,
            key_prefix: str = "task") -> Iterator[tuple[object, object]]:
        for item in items:
            try:
                yield item, function(item)
            except Exception as err:  # noqa: BLE001 - handed to on_error, or raised
                if on_error is None:
                    raise
                yield item, on_error(item, err)

    def check_workers(self, server_url: str | None, *, tls=None, token=None) -> None:
        """Nothing to check: the tasks run here."""


class FuturesExecutor:
    """Runs tasks in a pool of local processes (``concurrent.futures``, started with ``spawn``)."""

    scheduler_address: str | None = None

    def __init__(self, pool):
        self.pool = pool

    def map(self, function: Callable, items: Sequence, *, on_error: Callable | None = None,
            key_prefix: str = "task") -> Iterator[tuple[object, object]]:
        from concurrent.futures import as_completed

        futures = {self.pool.submit(function, item): item for item in items}
        try:
            yield from _results(as_completed(futures), futures.__getitem__, on_error)
        finally:
            for future in futures:
                future.cancel()

    def check_workers(self, server_url: str | None, *, tls=None, token=None) -> None:
        """The pool's processes run this environment on this machine: nothing to check."""


class DaskExecutor:
    """Submits tasks to a ``distributed.Client``; results come back as they complete."""

    def __init__(self, client):
        self.client = client

    @property
    def scheduler_address(self) -> str:
        return self.client.scheduler.address

    def map(self, function: Callable, items: Sequence, *, on_error: Callable | None = None,
            key_prefix: str = "task") -> Iterator[tuple[object, object]]:
        from distributed import as_completed

        if not items:
            return
        keys = [f"{key_prefix}-{i}-{id(items):x}" for i in range(len(items))]
        futures = self.client.map(function, list(items), pure=False, retries=0, key=keys)
        item_of = {future.key: item for future, item in zip(futures, items)}
        # Results are fetched on the client's event loop as tasks finish, not by one blocking
        # ``future.result()`` per task from this thread: that costs a round trip through the loop
        # each, which made the client, not the workers, the limit of short tasks (inspecting files).
        completed = as_completed(futures, loop=self.client.loop, with_results=True, raise_errors=False)
        try:
            for future, outcome in completed:
                item = item_of[future.key]
                error = _task_error(future, outcome)
                if error is None:
                    yield item, outcome
                elif on_error is None:
                    raise error
                else:
                    yield item, on_error(item, error)
        finally:
            pending = [future for future in futures if not future.done()]
            if pending:
                self.client.cancel(pending)

    def check_workers(self, server_url: str | None, *, tls=None, token=None) -> None:
        """Raise :class:`ConfigurationError`, one line per worker, for a worker that does not import
        coffea-lorentz at this version or cannot reach ``server_url`` (with the client's ``tls`` and ``token``)."""
        import coffea_lorentz

        answers = self.client.run(check_worker, server_url, 10.0, tls, token, on_error="return")
        problems = []
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                problems.append(f"worker {worker}: cannot run coffea-lorentz ({type(answer).__name__}: "
                                f"{' '.join(str(answer).split())[:200]}); install it there (see the README)")
            elif answer["version"] != coffea_lorentz.__version__:
                problems.append(f"worker {worker} ({answer['host']}): coffea-lorentz {answer['version']}, "
                                f"the client runs {coffea_lorentz.__version__}")
            elif answer["server"]:
                problems.append(f"worker {worker} ({answer['host']}): {answer['server']}")
        if problems:
            raise ConfigurationError("workers not ready for this run:\n  " + "\n  ".join(problems))


def _ignore_interrupts() -> None:
    """In a worker process this run starts: Ctrl-C is for the run, which stops its workers itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _interrupts_ignored_by_children():
    """Processes started inside ignore SIGINT (an ignored signal stays ignored across ``exec``, and
    Python then installs no KeyboardInterrupt handler); this process's own handler is restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _closed_for_good(gateway) -> None:
    """Close a dask-gateway ``Gateway`` now and make its later close from ``__del__`` a no-op: that
    one runs after the gateway's event loop stopped and prints a RuntimeError."""
    if gateway is None:
        return
    gateway.close()
    gateway.close = lambda *args, **kwargs: None


def _wait_for_workers(client, minimum: int, timeout_s: float, report: Callable[[str], None]) -> None:
    """Wait until ``minimum`` workers joined, reporting each change; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while True:
        count = len(client.scheduler_info().get("workers", {}))
        if count != seen:
            report(f"workers: {count} joined, waiting for {minimum}" if count < minimum else f"workers: {count} joined")
            seen = count
        if count >= minimum:
            return
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"only {count} of {minimum} Dask workers joined the scheduler {client.scheduler.address} within "
                f"{timeout_s:g} s; check the cluster (batch queue, gateway limits) or lower --workers"
            )
        time.sleep(0.5)


def _jobqueue_cluster(spec: ClusterSpec):
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigurationError(f"--cluster {spec.kind} needs dask-jobqueue: pip install 'coffea-lorentz[facilities]'") from None
    options: dict = {"processes": 1, "job_script_prologue": spec.job_environment(),
                     "scheduler_options": {"dashboard_address": ":0"}}
    for name in ("cores", "memory"):
        if getattr(spec, name) is not None:
            options[name] = getattr(spec, name)
    if spec.walltime is not None and spec.kind == "slurm":
        options["walltime"] = spec.walltime
    elif spec.walltime is not None:  # HTCondor pools read a job's wall time from +MaxRuntime (seconds)
        options["job_extra_directives"] = {"+MaxRuntime": str(_seconds(spec.walltime))}
    if spec.kind == "htcondor":
        import dask

        # HTCondor jobs must state their scratch disk; the worker itself needs little.
        disk = spec.disk or dask.config.get("jobqueue.htcondor.disk", None) or _DEFAULT_HTCONDOR_DISK
        options["disk"] = disk
    try:
        return getattr(dask_jobqueue, _JOBQUEUE_CLASSES[spec.kind])(**options)
    except ValueError as err:  # a resource neither given nor in the dask config
        raise ConfigurationError(f"--cluster {spec.kind}: {err} (give --worker-cores/--worker-memory, or set them "
                                 f"in the dask config under jobqueue.{spec.kind})") from None


def _seconds(walltime: str) -> int:
    """``HH:MM:SS`` (or ``MM:SS``, or seconds) → seconds."""
    try:
        parts = [int(part) for part in walltime.split(":")]
    except ValueError:
        raise ConfigurationError(f"wall time {walltime!r}: expected HH:MM:SS") from None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def job_script(spec: ClusterSpec) -> str:
    """The batch job script a ``htcondor`` / ``slurm`` cluster would submit for one worker."""
    if spec.kind not in _JOBQUEUE_CLASSES:
        raise ConfigurationError(f"cluster kind {spec.kind!r} submits no job scripts")
    cluster = _jobqueue_cluster(spec)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _scale(cluster, spec: ClusterSpec, *, replace_ended_jobs: bool = False) -> int:
    """Scale ``cluster`` as ``spec`` says; returns the workers to wait for.

    ``replace_ended_jobs`` (batch pools): a fixed number of workers is kept by adaptive scaling
    between that number and itself, which submits a new job for each one that ended (wall time
    reached, cancelled, preempted) once the scheduler lost its worker; a plain ``scale`` submits
    the jobs once, and a run whose jobs all ended would wait for workers forever.
    """
    if spec.adapt is not None:
        cluster.adapt(minimum=spec.adapt[0], maximum=spec.adapt[1])
        return max(1, spec.adapt[0])
    if replace_ended_jobs and spec.n_workers > 0:
        cluster.adapt(minimum=spec.n_workers, maximum=spec.n_workers)
        return spec.n_workers
    cluster.scale(spec.n_workers)
    return max(1, spec.n_workers)


@contextlib.contextmanager
def open_executor(spec: ClusterSpec, *, report: Callable[[str], None] = lambda line: None
                  ) -> Iterator[InProcessExecutor | DaskExecutor]:
    """The executor of ``spec``; a cluster started here is closed on exit, one given by address is not."""
    if spec.kind == "in-process" or (spec.kind in ("local", "futures") and spec.n_workers <= 0):
        yield InProcessExecutor()
        return
    if spec.kind == "futures":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=spec.n_workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_ignore_interrupts) as pool:
            yield FuturesExecutor(pool)
        return
    import logging

    from distributed import Client, LocalCluster

    # Port-in-use and nanny chatter of a LocalCluster is not the user's concern.
    for name in ("distributed.scheduler", "distributed.nanny", "distributed.worker", "distributed.core",
                 "distributed.http.proxy", "distributed.deploy.spec", "distributed.deploy.adaptive"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if spec.kind == "address":
        with Client(spec.address) as client:
            _wait_for_workers(client, 1, spec.worker_wait_s, report)
            yield DaskExecutor(client)
        return
    if spec.kind == "local":
        # ":0": any free port for the scheduler's HTTP server, never the "8787 is in use" warning.
        # The workers are stopped by this process: they ignore Ctrl-C (which the terminal sends to
        # them too), so it ends the run with one line, not a traceback per worker; their warnings
        # about tasks cancelled on the way out are not the user's concern either.
        with _interrupts_ignored_by_children():
            cluster = LocalCluster(n_workers=spec.n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            from .worker_logging import QuietSchedulerGone

            client.register_plugin(QuietSchedulerGone())
            yield DaskExecutor(client)
        return
    if spec.kind == "gateway":
        try:
            from dask_gateway import Gateway
        except ImportError:
            raise ConfigurationError("--cluster gateway needs dask-gateway: pip install 'coffea-lorentz[facilities]'") from None
        gateway = Gateway(spec.address) if spec.address else Gateway()
        try:
            cluster = gateway.new_cluster()
            report(f"gateway cluster {cluster.name} started at {gateway.address}")
            try:
                minimum = _scale(cluster, spec)
                with cluster.get_client(set_as_default=False) as client:
                    _wait_for_workers(client, minimum, spec.worker_wait_s, report)
                    yield DaskExecutor(client)
            finally:
                cluster.shutdown()
                _closed_for_good(getattr(cluster, "gateway", None))
        finally:
            _closed_for_good(gateway)
        return
    cluster = _jobqueue_cluster(spec)
    try:
        minimum = _scale(cluster, spec, replace_ended_jobs=True)
        with Client(cluster) as client:
            _wait_for_workers(client, minimum, spec.worker_wait_s, report)
            yield DaskExecutor(client)
    finally:
        cluster.close()
