"""Dask workers that share no disk with the client: ``dask worker`` processes in private mount namespaces."""

from __future__ import annotations

import atexit
import functools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import InvalidInputError, ServerStartError
from .processes import PROCESS_LOG_TAIL_LINES, PROCESS_POLL_S, die_with_parent, log_tail, require_storage, spawn, terminate

__all__ = ["IsolatedDaskCluster", "isolation_unavailable_reason", "isolated_dask_cluster_fixture"]


@functools.cache
def isolation_unavailable_reason() -> str | None:
    """Why :class:`IsolatedDaskCluster` cannot hide directories from its workers here, or None.

    Needs root and util-linux's ``unshare``; probed once per process by mounting a tmpfs over a
    fresh directory inside a private mount namespace and checking that a file in it disappears
    there and stays visible outside.
    """
    if os.geteuid() != 0:
        return f"hiding directories from workers needs root (unshare --mount, mount -t tmpfs); running as uid {os.geteuid()}"
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare not found (apt-get install -y util-linux)"
    with tempfile.TemporaryDirectory(prefix="coffea-lorentz-isolation-probe-") as probe:
        marker = Path(probe) / "visible-to-the-client"
        marker.touch()
        script = f"mount -t tmpfs tmpfs {shlex.quote(probe)} && test ! -e {shlex.quote(str(marker))}"
        try:
            result = subprocess.run(
                [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
                capture_output=True, text=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"unshare --mount failed to run: {err}"
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip() or "the client's file stayed visible"
            return f"a tmpfs over a directory in a private mount namespace does not hide it here ({detail})"
        if not marker.exists():
            return "a tmpfs mounted in a private mount namespace leaked into the client's namespace"
    return None


def _dask_command(subcommand: str) -> list[str]:
    """``dask scheduler`` / ``dask worker`` of this interpreter's environment."""
    script = Path(sys.executable).parent / "dask"
    if script.is_file():
        return [str(script), subcommand]
    return [sys.executable, "-m", f"distributed.cli.dask_{subcommand}"]


class IsolatedDaskCluster:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes whose workers share no disk
    with the client under the ``hidden`` directories; a context manager.

    >>> with IsolatedDaskCluster(2, hidden=[tmp_path]) as cluster:  # doctest: +SKIP
    ...     with distributed.Client(cluster.scheduler_address) as client:
    ...         assert not any(client.run(os.path.exists, str(tmp_path / "input.root")).values())

    Each worker starts as ``unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs DIR
    && … && exec dask worker …'``: in its own mount namespace an empty tmpfs lies over every hidden
    directory, so it sees none of the client's files there, and what it writes there lives in its
    own memory and is gone when it exits — as on a host without a shared disk. Workers run with
    ``--nthreads 1``, ``--no-nanny`` (one process each, the pid that :meth:`stop` kills) and the
    working directory ``/`` (a working directory inside a hidden one would still reach the client's
    files). The network is shared: workers reach the scheduler and servers on 127.0.0.1. A hidden
    directory must exist and must not hold this Python environment (the workers import from it).

    ``start()`` returns once all workers registered with the scheduler and raises
    :class:`~coffea_lorentz.errors.ServerStartError` with the end of the failing log otherwise;
    ``stop()`` kills every process, confirms from /proc that none is left, and is idempotent and
    registered with ``atexit``. Logs go to ``log_dir`` (default: a temporary directory removed at stop).
    """

    def __init__(
        self,
        n_workers: int = 2,
        *,
        hidden: Iterable[str | Path] = (),
        host: str = "127.0.0.1",
        startup_timeout_s: float = 60.0,
        stop_grace_s: float = 5.0,
        log_dir: str | Path | None = None,
        worker_options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        if n_workers < 1:
            raise InvalidInputError(f"IsolatedDaskCluster needs n_workers >= 1, got {n_workers}")
        self.n_workers = n_workers
        self.hidden = tuple(Path(directory).expanduser().resolve() for directory in hidden)
        needed = {"the Python environment": Path(sys.prefix).resolve(), "this package": Path(__file__).resolve().parent}
        for directory in self.hidden:
            if not directory.is_dir():
                raise InvalidInputError(f"hidden directory {directory} does not exist or is not a directory")
            for what, path in needed.items():
                if path == directory or directory in path.parents:
                    raise InvalidInputError(
                        f"hiding {directory} would hide {what} ({path}) that the workers import from"
                    )
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.worker_options = tuple(worker_options)
        self.env = dict(os.environ if env is None else env)
        self._requested_log_dir = None if log_dir is None else Path(log_dir).expanduser().resolve()
        self.log_dir: Path | None = None
        self.scheduler_address: str | None = None
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.startup_s: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> IsolatedDaskCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the scheduler and the workers (each also its process group id)."""
        return [process.pid for process in ([self.scheduler] if self.scheduler else []) + self.workers]

    def start(self) -> IsolatedDaskCluster:
        """Start the scheduler, then the workers; return once ``n_workers`` registered."""
        if self.scheduler is not None:
            return self
        reason = isolation_unavailable_reason() if self.hidden else None
        if reason is not None:
            raise ServerStartError(f"cannot start isolated Dask workers: {reason}")
        if self._requested_log_dir is not None:
            self.log_dir = self._requested_log_dir
            self.log_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.log_dir = Path(tempfile.mkdtemp(prefix="coffea-lorentz-dask-"))
        started = time.monotonic()
        atexit.register(self.stop)
        try:
            self._start_scheduler(started + self.startup_timeout_s)
            for index in range(self.n_workers):
                self.workers.append(self._spawn_worker(index))
            self._wait_for_workers(started + self.startup_timeout_s)
        except BaseException:
            self.stop(remove_logs=False)
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _start_scheduler(self, deadline: float) -> None:
        scheduler_file = self.log_dir / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        log_path = self.log_dir / "scheduler.log"
        command = die_with_parent() + _dask_command("scheduler") + [
            "--host", self.host, "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file),
        ]
        # Port 0 and the scheduler file: the scheduler binds a free port itself and says which.
        self.scheduler = spawn(command, log_path, cwd=self.log_dir, env=self.env)
        while True:
            if self.scheduler.poll() is not None:
                raise ServerStartError(
                    f"dask scheduler exited with status {self.scheduler.returncode} during startup; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            address = _read_scheduler_address(scheduler_file)
            if address is not None:
                self.scheduler_address = address
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"dask scheduler wrote no address to {scheduler_file} within {self.startup_timeout_s:g} s; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(PROCESS_POLL_S)

    def _spawn_worker(self, index: int) -> subprocess.Popen:
        worker = _dask_command("worker") + [
            self.scheduler_address,
            "--name", f"isolated-{index}",
            "--host", self.host,
            "--nthreads", "1",
            "--no-nanny",
            "--no-dashboard",
            "--death-timeout", "60",
            *self.worker_options,
        ]
        log_path = self.log_dir / f"worker-{index}.log"
        if not self.hidden:
            return spawn(die_with_parent() + worker, log_path, cwd="/", env=self.env)
        mounts = [f"mount -t tmpfs tmpfs {shlex.quote(str(directory))}" for directory in self.hidden]
        script = " && ".join(mounts + ["exec " + shlex.join(worker)])
        command = die_with_parent() + [
            shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "sh", "-c", script,
        ]
        return spawn(command, log_path, cwd="/", env=self.env)

    def _wait_for_workers(self, deadline: float) -> None:
        import distributed

        remaining_s = max(1.0, deadline - time.monotonic())
        with distributed.Client(self.scheduler_address, timeout=f"{remaining_s:.0f}s") as client:
            while True:
                for index, process in enumerate([self.scheduler] + self.workers):
                    if process.poll() is not None:
                        what = "scheduler" if index == 0 else f"worker {index - 1}"
                        log_path = self.log_dir / ("scheduler.log" if index == 0 else f"worker-{index - 1}.log")
                        raise ServerStartError(
                            f"dask {what} exited with status {process.returncode} during startup; "
                            f"log {log_path}:\n{log_tail(log_path)}"
                        )
                try:
                    client.wait_for_workers(self.n_workers, timeout=1.0)
                    return
                except TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    registered = len(client.scheduler_info().get("workers", {}))
                    raise ServerStartError(
                        f"{registered} of {self.n_workers} dask workers registered at {self.scheduler_address} "
                        f"after {self.startup_timeout_s:g} s; log {self.log_dir / 'worker-0.log'}:\n"
                        f"{log_tail(self.log_dir / 'worker-0.log')}"
                    )

    def is_running(self) -> bool:
        """Whether the scheduler and every worker process are alive."""
        processes = ([self.scheduler] if self.scheduler else []) + self.workers
        return bool(processes) and all(process.poll() is None for process in processes)

    def stop(self, *, remove_logs: bool = True) -> None:
        """Kill the workers, then the scheduler (SIGTERM, SIGKILL of each process group after
        ``stop_grace_s`` seconds) and confirm none is left; safe to repeat. ``remove_logs`` removes
        the temporary log directory made at start (never a ``log_dir`` given)."""
        if self.scheduler is None and not self.workers:
            return
        atexit.unregister(self.stop)
        left = terminate(self.workers, self.stop_grace_s)
        if self.scheduler is not None:
            left += terminate([self.scheduler], self.stop_grace_s)
        self.workers, self.scheduler = [], None
        if left:
            raise ServerStartError(f"dask processes {left} are still alive after SIGKILL")
        if remove_logs and self._requested_log_dir is None and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def log_tail(self, which: str = "scheduler", n_lines: int = PROCESS_LOG_TAIL_LINES) -> str:
        """The end of a log: ``"scheduler"`` or ``"worker-<i>"``."""
        return "" if self.log_dir is None else log_tail(self.log_dir / f"{which}.log", n_lines)

    def __repr__(self) -> str:
        state = f"scheduler={self.scheduler_address}, pids={self.pids}" if self.is_running() else "stopped"
        hidden = ", ".join(str(directory) for directory in self.hidden)
        return f"IsolatedDaskCluster(n_workers={self.n_workers}, hidden=[{hidden}], {state})"


def _read_scheduler_address(scheduler_file: Path) -> str | None:
    import json

    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def isolated_dask_cluster_fixture(
    n_workers: int = 2,
    *,
    scope: str = "module",
    name: str | None = None,
    hidden: Callable[[object], Iterable[str | Path]] | None = None,
    skip_if_unavailable: bool | None = None,
    startup_timeout_s: float = 60.0,
):
    """A pytest fixture yielding a running :class:`IsolatedDaskCluster`.

    ``hidden`` receives pytest's ``tmp_path_factory`` and returns the directories to hide; by
    default the whole pytest base temporary directory is hidden, so no test's ``tmp_path`` is
    visible to the workers. Skipped with the reason where isolation is unavailable
    (:func:`isolation_unavailable_reason`), or failed: ``skip_if_unavailable=None`` means fail
    under ``make test`` (:func:`require_storage`), skip elsewhere.
    """
    import pytest

    skip = (not require_storage()) if skip_if_unavailable is None else skip_if_unavailable

    @pytest.fixture(scope=scope, name=name)
    def _isolated_dask_cluster(tmp_path_factory) -> Iterator[IsolatedDaskCluster]:
        reason = isolation_unavailable_reason()
        if reason is not None:
            (pytest.skip if skip else pytest.fail)(f"no isolated Dask workers: {reason}")
        directories = list(hidden(tmp_path_factory)) if hidden is not None else [tmp_path_factory.getbasetemp()]
        cluster = IsolatedDaskCluster(n_workers, hidden=directories, startup_timeout_s=startup_timeout_s)
        with cluster:
            yield cluster
        if cluster.pids:
            raise ServerStartError(f"dask processes {cluster.pids} still tracked after stop()")

    return _isolated_dask_cluster
