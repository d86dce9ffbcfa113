"""Exclusive output: a lock file at the destination that keeps two runs out of one output folder.

The lock ``.coffea-lorentz.lock`` holds the host, process id, start time and run id of the run that
owns the folder. A second run refuses to start while it exists; a lock left by a dead process of
this host (a run killed with SIGKILL) is taken over with a warning. On a local folder the lock is
created with ``O_EXCL``; on remote stores it is written, then read back to confirm ownership.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import uuid
import warnings

from ..errors import OutputError
from ..store import OutputStore, unwritable

__all__ = ["OutputLock", "LOCK_NAME", "pid_alive"]

LOCK_NAME = ".coffea-lorentz.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``with OutputLock(store):`` holds the output folder of ``store`` for this process."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run_id": uuid.uuid4().hex,
        }
        self.held = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.store.read_text(LOCK_NAME))
        except (FileNotFoundError, json.JSONDecodeError, ValueError):
            return None
        except OSError:
            return None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputError` naming the run that holds it."""
        self.store.makedirs()
        owner = self._owner() if self.store.exists(LOCK_NAME) else None
        if owner is not None:
            if owner.get("host") == self.record["host"] and not pid_alive(int(owner.get("pid", -1))):
                warnings.warn(f"output {self.store.url}: taking over the lock of a run that is no longer alive "
                              f"(pid {owner.get('pid')}, started {owner.get('started_utc')})", stacklevel=2)
                self.store.remove(LOCK_NAME)
            else:
                raise OutputError(
                    f"output {self.store.url} is in use by another run (host {owner.get('host')}, pid {owner.get('pid')}, "
                    f"started {owner.get('started_utc')}); wait for it to end, or remove {LOCK_NAME} there if it is dead"
                )
        text = json.dumps(self.record)
        if self.store.is_local:
            try:
                descriptor = os.open(self.store.path(LOCK_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise OutputError(f"output {self.store.url} was locked by another run that started just now") from None
            except OSError as err:
                raise OutputError(unwritable(self.store.url, err)) from None
            with os.fdopen(descriptor, "w") as file:
                file.write(text)
        else:
            self.store.write_text(LOCK_NAME, text)
            if (self._owner() or {}).get("run_id") != self.record["run_id"]:
                raise OutputError(f"output {self.store.url} was locked by another run that started just now")
        self.held = True

    def release(self) -> None:
        """Remove the lock if this process holds it; safe to repeat."""
        if not self.held:
            return
        self.held = False
        if (self._owner() or {}).get("run_id") == self.record["run_id"]:
            self.store.remove(LOCK_NAME)
