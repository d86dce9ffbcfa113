"""Real helper processes for tests: start in their own session with a log, stop the whole group, and
whether tests must fail rather than skip when a part is missing."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


__all__ = ["STORAGE_ENV_VARIABLE", "require_storage", "spawn", "terminate", "log_tail", "port_accepts", "die_with_parent",
           "wait_for_chunk_files", "interrupted_run", "PROCESS_LOG_TAIL_LINES", "PROCESS_POLL_S", "START_ATTEMPTS"]


#: Set to 1 (``make test`` does) to make the storage and isolation fixtures fail instead of skip.
STORAGE_ENV_VARIABLE = "COFFEA_LORENTZ_REQUIRE_STORAGE"
PROCESS_LOG_TAIL_LINES = 30
PROCESS_POLL_S = 0.1
START_ATTEMPTS = 3


def require_storage() -> bool:
    """True where a missing XRootD server or worker isolation must fail the tests instead of
    skipping them (``make test`` sets ``COFFEA_LORENTZ_REQUIRE_STORAGE=1``)."""
    return os.environ.get(STORAGE_ENV_VARIABLE) == "1"


def spawn(command: Sequence[str], log_path: Path, *, cwd: Path | str, env: Mapping[str, str] | None = None
           ) -> subprocess.Popen:
    """Start ``command`` in its own session (its pid is the process group id), output into ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + shlex.join(command) + "\n").encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd),
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that are not zombies (read from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def terminate(processes: Sequence[subprocess.Popen], grace_s: float) -> list[int]:
    """SIGTERM every process, wait up to ``grace_s`` seconds for all, then SIGKILL their process
    groups and reap them. Returns the pids of group members still alive afterwards (normally none)."""
    for process in processes:
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
    deadline = time.monotonic() + grace_s
    while True:
        left = [pid for process in processes for pid in _live_group_members(process.pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(PROCESS_POLL_S)


def log_tail(log_path: Path | None, n_lines: int = PROCESS_LOG_TAIL_LINES) -> str:
    if log_path is None or not log_path.is_file():
        return ""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-n_lines:])


def port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def die_with_parent() -> list[str]:
    """A ``setpriv --pdeathsig`` prefix: the child gets SIGTERM when this process dies (else [])."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def wait_for_chunk_files(output: Path, at_least: int, timeout_s: float = 120.0) -> int:
    """Wait until the run's ``output`` folder holds ``at_least`` chunk files (``*/*.root``); their number."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = len(list(output.glob("*/*.root")))
        if found >= at_least:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} chunk files in {output} after {timeout_s} s")


def interrupted_run(command: Sequence[str], output: Path, *, after_chunk_files: int, timeout_s: float = 240.0
                    ) -> tuple[int, str]:
    """Start ``coffea-lorentz run`` as ``command`` in its own session, press Ctrl-C once ``output``
    holds ``after_chunk_files`` chunk files (SIGINT to the whole process group, as a terminal does)
    and return its exit status and what it printed (stdout and stderr together)."""
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        wait_for_chunk_files(output, after_chunk_files, timeout_s=timeout_s)
        if process.poll() is not None:
            raise AssertionError(f"the run finished before it could be interrupted: {process.communicate()[0]}")
        os.killpg(process.pid, signal.SIGINT)
        text, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, text
