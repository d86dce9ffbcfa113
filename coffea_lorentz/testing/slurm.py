"""A real one-node Slurm cluster for tests: Debian's ``munged``, ``slurmctld`` and ``slurmd`` on loopback."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ServerStartError
from ..serve import free_port
from .processes import PROCESS_LOG_TAIL_LINES, PROCESS_POLL_S, die_with_parent, log_tail, spawn, terminate

__all__ = ["SLURM_ENV_VARIABLE", "LocalSlurmCluster", "require_slurm", "slurm_unavailable_reason",
           "slurm_cluster_fixture"]

#: Set to 1 (``make test`` does) to make the Slurm fixture fail instead of skip when Slurm is missing.
SLURM_ENV_VARIABLE = "COFFEA_LORENTZ_REQUIRE_SLURM"
#: The programs the cluster needs: the daemons and the client commands dask-jobqueue calls.
_PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")
#: ``sun_path`` of a unix socket holds 108 bytes; munged's socket must fit.
_MAX_SOCKET_PATH = 100
_MUNGE_KEY_BYTES = 1024
_CLIENT_TIMEOUT_S = 30


def require_slurm() -> bool:
    """True where a missing Slurm must fail the tests instead of skipping them (``make test`` sets
    ``COFFEA_LORENTZ_REQUIRE_SLURM=1``)."""
    return os.environ.get(SLURM_ENV_VARIABLE) == "1"


def slurm_unavailable_reason() -> str | None:
    """Why :class:`LocalSlurmCluster` cannot run here, or None.

    Needs Debian's ``slurm-wlm`` (``slurmctld``, ``slurmd`` and the client commands) and ``munge``
    (``apt-get install -y slurm-wlm munge``, done by ``make system-deps``), and root: ``slurmd``
    starts every job as its submitting user.
    """
    missing = [program for program in _PROGRAMS if shutil.which(program) is None]
    if missing:
        return (f"missing {', '.join(missing)} (as root: apt-get install -y --no-install-recommends slurm-wlm munge, "
                "or: make system-deps)")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as their user; run the tests as root"
    return None


def _memory_mb() -> int:
    """This machine's memory in MB (what ``slurmd -C`` reports as RealMemory)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


class LocalSlurmCluster:
    """A one-node Slurm cluster on loopback; a context manager.

    >>> with LocalSlurmCluster(tmp_path / "slurm") as slurm, slurm.activated():  # doctest: +SKIP
    ...     subprocess.run(["sbatch", "--wrap", "hostname"], check=True)
    ...     slurm.wait_until_empty()

    Everything lives in ``state_dir``: a fresh munge key and ``munged`` with its own socket (started
    with ``--force``, which lets it run as root), ``slurm.conf``, the controller's state, the node's
    spool and the logs. ``slurm.conf`` names this host as the only node (``CPUs=cpus``, its whole
    memory), free ports for ``SlurmctldPort``/``SlurmdPort``, ``proctrack/linuxproc`` and
    ``task/none`` (no cgroups), ``select/cons_tres`` with cores and memory as resources, and one
    default partition ``debug``. ``slurmctld -D`` and ``slurmd -D`` run in the foreground as child
    processes in their own sessions.

    The client commands find this cluster through ``SLURM_CONF`` (:attr:`env`; :meth:`activated`
    sets it in ``os.environ``, which the programs a test starts, like dask-jobqueue's ``sbatch``,
    inherit). ``start()`` returns once ``sinfo`` shows the node idle and raises
    :class:`~coffea_lorentz.errors.ServerStartError` with the end of the logs otherwise;
    ``stop()`` cancels the jobs left, waits for them to end, stops the daemons and is idempotent
    (registered with ``atexit``).
    """

    def __init__(
        self,
        state_dir: str | Path,
        *,
        cpus: int = 2,
        startup_timeout_s: float = 60.0,
        stop_grace_s: float = 10.0,
    ):
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.cpus = cpus
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.node_name = socket.gethostname()
        self.partition = "debug"
        self.config_path = self.state_dir / "slurm.conf"
        self.log_dir = self.state_dir / "log"
        self.controller_port: int | None = None
        self.node_port: int | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.startup_s: float | None = None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False

    # -- the environment of the client commands ---------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this cluster's ``slurm.conf``."""
        return {**os.environ, "SLURM_CONF": str(self.config_path)}

    @contextlib.contextmanager
    def activated(self) -> Iterator[LocalSlurmCluster]:
        """``SLURM_CONF`` set in ``os.environ`` inside the block (restored after)."""
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.config_path)
        try:
            yield self
        finally:
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous

    def command(self, *args: str, check: bool = True) -> str:
        """Run a Slurm client command (``sinfo``, ``squeue``, ...) against this cluster; its stdout."""
        answer = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=_CLIENT_TIMEOUT_S)
        if check and answer.returncode != 0:
            raise ServerStartError(f"{' '.join(args)} failed with status {answer.returncode}: "
                                   f"{(answer.stderr or answer.stdout).strip()[:300]}")
        return answer.stdout

    def jobs(self) -> list[dict[str, str]]:
        """The jobs ``squeue`` lists: dicts with ``id``, ``name``, ``state``, ``node``."""
        rows = self.command("squeue", "-h", "-o", "%i|%j|%T|%N").splitlines()
        return [dict(zip(("id", "name", "state", "node"), row.split("|"))) for row in rows if row.strip()]

    def node_state(self) -> str:
        """The node's state as ``sinfo`` says it (``idle``, ``mixed``, ``allocated``, ...), '' when unknown."""
        answer = self.command("sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T", check=False)
        return answer.strip().lower()

    def wait_until_empty(self, timeout_s: float = 60.0) -> list[dict[str, str]]:
        """Wait until ``squeue`` lists no job; returns the jobs still listed at the timeout (else [])."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = self.jobs()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalSlurmCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> LocalSlurmCluster:
        """Start munged, slurmctld and slurmd and wait until the node is idle."""
        if self.processes:
            return self
        reason = slurm_unavailable_reason()
        if reason is not None:
            raise ServerStartError(f"cannot start a Slurm cluster in {self.state_dir}: {reason}")
        started = time.monotonic()
        atexit.register(self.stop)
        try:
            for directory in ("munge", "state", "spool", "log"):
                (self.state_dir / directory).mkdir(parents=True, exist_ok=True)
            self._start_munged()
            self._write_config()
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.config_path)])
            self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.config_path)])
            self._wait(lambda: self.node_state() == "idle", started,
                       f"node {self.node_name} idle in sinfo")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    @property
    def munge_socket(self) -> Path:
        if self._socket_dir is None:
            raise ServerStartError(f"Slurm cluster in {self.state_dir} is not started; no munge socket")
        return self._socket_dir / "munge.socket"

    def _start_munged(self) -> None:
        munge_dir = self.state_dir / "munge"
        munge_dir.chmod(0o700)
        key = munge_dir / "munge.key"
        key.unlink(missing_ok=True)
        key.write_bytes(os.urandom(_MUNGE_KEY_BYTES))
        key.chmod(0o400)
        # munged wants its socket's directory searchable by everyone, and the path must fit sun_path.
        socket_dir = self.state_dir / "munge-socket"
        if len(str(socket_dir / "munge.socket")) > _MAX_SOCKET_PATH:
            self._socket_dir, self._own_socket_dir = Path(tempfile.mkdtemp(prefix="munge-")), True
        else:
            socket_dir.mkdir(exist_ok=True)
            self._socket_dir, self._own_socket_dir = socket_dir, False
        self._socket_dir.chmod(0o755)
        # --force: munged refuses to run as root, or with a socket left by a dead daemon, without it.
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                               f"--seed-file={munge_dir / 'munged.seed'}", f"--log-file={self.log_dir / 'munged.log'}"])
        self._wait(self.munge_socket.exists, time.monotonic(), f"munge socket {self.munge_socket}")

    def _write_config(self) -> None:
        self.controller_port = free_port("127.0.0.1")
        self.node_port = free_port("127.0.0.1")
        while self.node_port == self.controller_port:
            self.node_port = free_port("127.0.0.1")
        state = self.state_dir
        lines = {
            "ClusterName": f"cl{os.getpid()}",
            "SlurmctldHost": f"{self.node_name}(127.0.0.1)",
            "SlurmctldPort": self.controller_port,
            "SlurmdPort": self.node_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": state / "state",
            "SlurmdSpoolDir": state / "spool",
            "SlurmctldPidFile": state / "slurmctld.pid",
            "SlurmdPidFile": state / "slurmd.pid",
            "SlurmctldLogFile": self.log_dir / "slurmctld.log",
            "SlurmdLogFile": self.log_dir / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "ReturnToService": 2,
            # the time-limit check runs every 30 s by default; ending over-time jobs promptly
            # lets a test with a one-minute --time finish in about a minute
            "OverTimeLimit": 0,
            "KillWait": 5,
            "MinJobAge": 2,
            "InactiveLimit": 0,
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 30,
        }
        text = "# written by coffea_lorentz.testing.LocalSlurmCluster\n"
        text += "".join(f"{key}={value}\n" for key, value in lines.items())
        text += (f"NodeName={self.node_name} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mb()} "
                 "State=UNKNOWN\n")
        text += f"PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP\n"
        self.config_path.write_text(text)

    def _spawn(self, name: str, command: list[str]) -> None:
        command[0] = shutil.which(command[0]) or command[0]
        log = self.log_dir / f"{name}.out"
        log.unlink(missing_ok=True)
        self.processes[name] = spawn(die_with_parent() + command, log, cwd=self.state_dir, env=self.env)

    def _wait(self, ready, started: float, what: str) -> None:
        deadline = started + self.startup_timeout_s
        while not ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ServerStartError(f"{name} of the Slurm cluster in {self.state_dir} exited with status "
                                           f"{process.returncode} during startup:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"Slurm cluster in {self.state_dir}: no {what} after "
                                       f"{self.startup_timeout_s:g} s:\n{self.log_tail()}")
            time.sleep(PROCESS_POLL_S)

    def is_running(self) -> bool:
        """Whether all three daemons are alive."""
        return bool(self.processes) and all(process.poll() is None for process in self.processes.values())

    def stop(self) -> None:
        """Cancel the jobs left, stop slurmd, slurmctld and munged (SIGTERM, then SIGKILL of their
        process groups after ``stop_grace_s``); safe to repeat."""
        if not self.processes:
            return
        atexit.unregister(self.stop)
        if self.is_running():
            with contextlib.suppress(ServerStartError, subprocess.TimeoutExpired):
                if self.jobs():
                    self.command("scancel", "--full", "-p", self.partition, check=False)
                    self.wait_until_empty(timeout_s=self.stop_grace_s * 3)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in self.processes:
                terminate([self.processes[name]], self.stop_grace_s)
        self.processes = {}
        if self._own_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def log_tail(self, n_lines: int = PROCESS_LOG_TAIL_LINES) -> str:
        """The ends of the daemons' logs, each under its name ('' before start)."""
        parts = []
        for name in ("munged", "slurmctld", "slurmd"):
            for path in (self.log_dir / f"{name}.log", self.log_dir / f"{name}.out"):
                tail = log_tail(path, n_lines)
                if tail:
                    parts.append(f"--- {path.name}\n{tail}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = f"SLURM_CONF={self.config_path}" if self.is_running() else "stopped"
        return f"LocalSlurmCluster({str(self.state_dir)!r}, {state})"


def slurm_cluster_fixture(
    *,
    scope: str = "module",
    name: str | None = None,
    skip_if_unavailable: bool | None = None,
    cpus: int = 2,
):
    """A pytest fixture yielding a running :class:`LocalSlurmCluster` in a fresh pytest temporary
    directory, with ``SLURM_CONF`` set in ``os.environ`` for the fixture's scope.

    When Slurm cannot run here (:func:`slurm_unavailable_reason`) the tests using it are skipped with
    the reason, or fail where ``skip_if_unavailable`` is False; None (the default) means: fail under
    ``make test`` (:func:`require_slurm`), skip elsewhere. Afterwards it checks that no job is left
    and that the daemons stopped.
    """
    import pytest

    skip = (not require_slurm()) if skip_if_unavailable is None else skip_if_unavailable

    @pytest.fixture(scope=scope, name=name)
    def _slurm_cluster(tmp_path_factory) -> Iterator[LocalSlurmCluster]:
        reason = slurm_unavailable_reason()
        if reason is not None:
            (pytest.skip if skip else pytest.fail)(f"no local Slurm cluster: {reason}")
        cluster = LocalSlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=cpus)
        with cluster, cluster.activated():
            yield cluster
            left = cluster.wait_until_empty(timeout_s=30)
        if left:
            raise ServerStartError(f"Slurm jobs left after the tests: {left}")
        if cluster.is_running():
            raise ServerStartError(f"Slurm daemons still run after stop(): {cluster}")

    return _slurm_cluster
