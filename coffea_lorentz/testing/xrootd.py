"""A real XRootD server for tests: Debian's ``xrootd`` daemon on loopback, reached by fsspec and uproot."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidInputError, ServerStartError
from ..serve import free_port
from .processes import (
    PROCESS_LOG_TAIL_LINES,
    PROCESS_POLL_S,
    START_ATTEMPTS,
    die_with_parent,
    log_tail,
    port_accepts,
    require_storage,
    spawn,
    terminate,
)

__all__ = ["XRootDServer", "xrootd_unavailable_reason", "xrootd_server_fixture"]


#: The longest path of a unix socket xrootd creates under its admin directory (``sun_path`` is 108 bytes).
_ADMIN_SOCKET_SUFFIX = "/.xrootd/admin"
_MAX_SOCKET_PATH = 100
#: Capabilities kept by the unprivileged xrootd when started by root: read and write any file, so
#: the data root may lie in a root-only directory (pytest's temporary directories are 0700).
_XROOTD_CAPABILITIES = "+dac_override,+dac_read_search"
_UNPRIVILEGED_USER = "nobody"
_UNPRIVILEGED_GROUP = "nogroup"

def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def xrootd_unavailable_reason() -> str | None:
    """Why :class:`XRootDServer` cannot run here (daemon binary or Python packages missing), or None.

    Needs Debian's ``xrootd`` daemon on ``PATH`` (``apt-get install -y xrootd-server``, done by
    ``make system-deps``), the ``xrootd`` client bindings and ``fsspec-xrootd`` (the ``xrootd``
    extra), and, when running as root, util-linux's ``setpriv`` to drop to ``nobody``.
    """
    missing = []
    if shutil.which("xrootd") is None:
        missing.append("the xrootd daemon (as root: apt-get install -y xrootd-server, or: make system-deps)")
    packages = [package for module, package in (("XRootD", "xrootd"), ("fsspec_xrootd", "fsspec-xrootd"))
                if not _module_available(module)]
    if packages:
        missing.append(f"the Python packages {', '.join(packages)} "
                       "(pip install -c constraints.txt -e '.[xrootd]')")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        missing.append("setpriv, to run xrootd as nobody (apt-get install -y util-linux)")
    if missing:
        return "missing " + "; ".join(missing)
    return None


class XRootDServer:
    """Debian's ``xrootd`` daemon serving ``data_root`` on a free port; a context manager.

    >>> with XRootDServer(tmp_path / "store") as server:  # doctest: +SKIP
    ...     fs = server.filesystem()
    ...     with fs.open("/out/a.bin.tmp", "wb") as f:
    ...         f.write(b"payload")
    ...     fs.mv("/out/a.bin.tmp", "/out/a.bin")
    ...     assert server.local_path("/out/a.bin").read_bytes() == b"payload"
    ...     uproot.open(server.url_for("/out/events.root"))

    The whole of ``data_root`` is exported (``all.export /``, ``oss.localroot``): the served path
    ``/a/b.root`` is the file ``data_root/a/b.root`` (:meth:`local_path`).

    **URL form.** Paths must be absolute on the server: a URL is ``root://HOST:PORT/`` followed by
    the absolute path, so ``root://127.0.0.1:PORT//a/b.root`` (two slashes; :meth:`url_for`). Both
    ``uproot.open`` and ``fsspec.open`` / ``fsspec.core.url_to_fs`` take that form;
    ``root://127.0.0.1:PORT/a/b.root`` names the *relative* path ``a/b.root``, which the server
    refuses (``[3010] Opening relative path 'a/b.root' is disallowed``). On the filesystem object
    (``fsspec.filesystem("root", hostid=server.hostid)``) paths are plain absolute paths: ``/a/b.root``.

    **fsspec-xrootd 0.5.5 quirks** (what the run model must live with): ``put``/``put_file`` raise
    NotImplementedError (write with ``fs.open(path, "wb")``); ``cat_file`` needs ``start`` and
    ``end`` passed (``fs.cat_file(path, None, None)``; ``fs.cat(path)`` raises TypeError);
    ``ls(path, detail=False)`` returns base names, not paths; ``mv`` takes paths, not URLs; the
    directory listing cache never expires unless the filesystem is made with
    ``use_listings_cache=False`` (:meth:`filesystem` does): otherwise a file written by another
    process (or another filesystem instance) after a listing is missing from ``ls``, and ``info``
    on it raises OSError when the cached listing is not empty; new files are mode 0600, owned by
    ``nobody``.

    Started by root, the daemon runs as ``nobody`` (xrootd refuses to run as root) through
    ``setpriv`` with the capabilities to read and write any file, so ``data_root`` may lie in a
    root-only directory. It listens on all interfaces (clients use ``host``). Its configuration,
    admin directory and log live in ``state_dir`` (default: ``<data_root>.xrootd`` beside it).
    ``start()`` returns once a stat of ``/`` through the client bindings succeeds and raises
    :class:`~coffea_lorentz.errors.ServerStartError` with the end of the log otherwise;
    ``stop()`` is idempotent and registered with ``atexit``.
    """

    def __init__(
        self,
        data_root: str | Path,
        *,
        state_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ):
        self.data_root = Path(data_root).expanduser().resolve()
        default_state = self.data_root.with_name(self.data_root.name + ".xrootd")
        self.state_dir = Path(state_dir).expanduser().resolve() if state_dir is not None else default_state
        self.host = host
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = self.state_dir / "xrootd.log"
        self.config_path = self.state_dir / "xrootd.cfg"
        self.startup_s: float | None = None
        self._admin_dir: Path | None = None
        self._own_admin_dir = False

    # -- addresses ---------------------------------------------------------------------------
    @property
    def hostid(self) -> str:
        """``HOST:PORT``, what ``fsspec.filesystem("root", hostid=...)`` takes."""
        if self.port is None:
            raise ServerStartError(f"xrootd on {self.data_root} is not started; no port")
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``root://HOST:PORT/``; append an absolute path to name a file (see :meth:`url_for`)."""
        return f"root://{self.hostid}/"

    def url_for(self, remote_path: str) -> str:
        """``root://HOST:PORT//abs/path`` for the served path ``remote_path`` (``/`` added in front
        when missing): the form uproot and fsspec both open."""
        return self.url + "/" + remote_path.lstrip("/")

    def local_path(self, remote_path: str) -> Path:
        """The file on disk behind a served path (``/a/b.root``) or URL (``root://HOST:PORT//a/b.root``)."""
        path = remote_path
        if path.startswith("root://"):
            authority_and_path = path[len("root://"):]
            slash = authority_and_path.find("/")
            path = "/" if slash < 0 else authority_and_path[slash + 1:]
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise InvalidInputError(f"served path {remote_path!r} leaves the data root {self.data_root}")
        return self.data_root.joinpath(*parts)

    def filesystem(self, **storage_options):
        """An ``fsspec`` filesystem on this server, without the listing cache by default (so files
        written by other processes show up in ``ls``); ``storage_options`` go to fsspec-xrootd."""
        import fsspec

        storage_options.setdefault("use_listings_cache", False)
        return fsspec.filesystem("root", hostid=self.hostid, **storage_options)

    @property
    def pid(self) -> int | None:
        """Process id of ``xrootd`` (its process group id too), None when not started."""
        return None if self.process is None else self.process.pid

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> XRootDServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> XRootDServer:
        """Launch the daemon and wait until it serves; a port picked free here and taken by another
        process before xrootd bound it is replaced, up to ``START_ATTEMPTS`` times."""
        if self.process is not None:
            return self
        binary = shutil.which("xrootd")
        if binary is None:
            raise ServerStartError(f"cannot serve {self.data_root}: {xrootd_unavailable_reason()}")
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._launch(binary)
            except ServerStartError:
                retry = self.requested_port is None and attempt < START_ATTEMPTS
                if not (retry and "already in use" in log_tail(self.log_path)):
                    raise

    def _launch(self, binary: str) -> XRootDServer:
        self.port = self.requested_port or free_port(self.host)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._make_admin_dir()
        self.config_path.write_text(
            "# written by coffea_lorentz.testing.XRootDServer\n"
            "all.export /\n"
            f"xrd.port {self.port}\n"
            f"all.adminpath {self._admin_dir}\n"
            f"oss.localroot {self.data_root}\n"
        )
        command = die_with_parent()
        if os.geteuid() == 0:
            command += [
                shutil.which("setpriv") or "setpriv",
                f"--reuid={_UNPRIVILEGED_USER}",
                f"--regid={_UNPRIVILEGED_GROUP}",
                "--clear-groups",
                f"--inh-caps={_XROOTD_CAPABILITIES}",
                f"--ambient-caps={_XROOTD_CAPABILITIES}",
                "--",
            ]
        command += [binary, "-c", str(self.config_path)]
        self.log_path.unlink(missing_ok=True)
        started = time.monotonic()
        self.process = spawn(command, self.log_path, cwd=self.state_dir)
        atexit.register(self.stop)
        try:
            self._wait_serving(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _make_admin_dir(self) -> None:
        admin = self.state_dir / "admin"
        if len(str(admin) + _ADMIN_SOCKET_SUFFIX) > _MAX_SOCKET_PATH:
            # xrootd's admin socket path must fit a unix socket address: use a short directory.
            self._admin_dir, self._own_admin_dir = Path(tempfile.mkdtemp(prefix="xrd-admin-")), True
        else:
            admin.mkdir(exist_ok=True)
            self._admin_dir, self._own_admin_dir = admin, False

    def _wait_serving(self, started: float) -> None:
        deadline = started + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"xrootd for {self.data_root} on port {self.port} exited with status "
                    f"{self.process.returncode} during startup; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            # The log line first: a client stat against a port some other process holds would block.
            if self._initialized() and port_accepts(self.host, self.port) and self._stat_root():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"xrootd for {self.data_root} not serving at {self.url} after {self.startup_timeout_s:g} s; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(PROCESS_POLL_S)

    def _initialized(self) -> bool:
        """Whether the daemon logged the end of its start (``... initialization completed.``)."""
        return "initialization completed" in log_tail(self.log_path, n_lines=1000)

    def _stat_root(self) -> bool:
        """Whether ``/`` stats through the client bindings (True without them)."""
        if not _module_available("XRootD"):
            return True
        from XRootD import client

        status, _ = client.FileSystem(f"root://{self.hostid}").stat("/", timeout=2)
        return bool(status.ok)

    def is_running(self) -> bool:
        """Whether the daemon process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the daemon, SIGKILL its process group after ``stop_grace_s`` seconds; safe to repeat."""
        process = self.process
        if process is None:
            return
        atexit.unregister(self.stop)
        terminate([process], self.stop_grace_s)
        self.process = None
        if self._own_admin_dir and self._admin_dir is not None:
            shutil.rmtree(self._admin_dir, ignore_errors=True)

    def log_tail(self, n_lines: int = PROCESS_LOG_TAIL_LINES) -> str:
        """The last ``n_lines`` non-empty lines of the daemon's log ('' before start)."""
        return log_tail(self.log_path, n_lines)

    def __repr__(self) -> str:
        state = f"pid={self.pid}, url={self.url}" if self.is_running() else "stopped"
        return f"XRootDServer({str(self.data_root)!r}, {state})"


def xrootd_server_fixture(
    *,
    scope: str = "session",
    name: str | None = None,
    skip_if_unavailable: bool | None = None,
    startup_timeout_s: float = 30.0,
):
    """A pytest fixture yielding a running :class:`XRootDServer` whose data root is a fresh pytest
    temporary directory.

    When xrootd cannot run here (:func:`xrootd_unavailable_reason`) the tests using it are skipped
    with the reason, or fail where ``skip_if_unavailable`` is False; None (the default) means: fail
    under ``make test`` (:func:`require_storage`), skip elsewhere.
    """
    import pytest

    skip = (not require_storage()) if skip_if_unavailable is None else skip_if_unavailable

    @pytest.fixture(scope=scope, name=name)
    def _xrootd_server(tmp_path_factory) -> Iterator[XRootDServer]:
        reason = xrootd_unavailable_reason()
        if reason is not None:
            (pytest.skip if skip else pytest.fail)(f"no local XRootD server: {reason}")
        directory = tmp_path_factory.mktemp("xrootd")
        server = XRootDServer(directory / "data", state_dir=directory / "state", startup_timeout_s=startup_timeout_s)
        with server:
            yield server
        if server.is_running():
            raise ServerStartError(f"xrootd (pid {server.pid}) still runs after stop()")

    return _xrootd_server
