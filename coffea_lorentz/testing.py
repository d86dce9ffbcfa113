"""Test helpers: a pytest fixture factory for a real local Triton server, and small PFNano files.

In a ``conftest.py``::

    from coffea_lorentz.testing import triton_server_fixture

    triton_server = triton_server_fixture(taggers=("identity",), scope="session")

    @pytest.mark.slow
    def test_something(triton_server):
        client = tritonclient.grpc.InferenceServerClient(triton_server.grpc_url)

The fixture builds a model repository in a pytest temporary directory, starts the server on free
ports, yields the running :class:`~coffea_lorentz.serve.TritonServer` (``.grpc_url``,
``.http_url``, ``.config.repository``) and stops it afterwards. When the server environment is not
set up, tests using it are skipped with the reason (or fail, with ``skip_if_unavailable=False``).

Real storage and workers that share no disk with the client (all on loopback, real processes):

- :class:`XRootDServer` runs Debian's ``xrootd`` daemon on a data root; fsspec (``fsspec-xrootd``)
  and uproot reach it at ``root://127.0.0.1:PORT//abs/path`` (see the class for the URL form and the
  quirks of the fsspec filesystem); :func:`xrootd_server_fixture` makes the pytest fixture.
- :class:`IsolatedDaskCluster` runs a ``dask scheduler`` and ``dask worker`` processes, each worker in
  a private mount namespace with an empty tmpfs over every hidden directory, so a worker neither sees
  the client's files there nor leaves its own behind; :func:`isolated_dask_cluster_fixture` makes the
  pytest fixture.

Under ``make test`` (``COFFEA_LORENTZ_REQUIRE_STORAGE=1``, :func:`require_storage`) these fixtures
fail instead of skipping when a part is missing.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from .errors import InvalidInputError, ServerStartError
from .serve import ServerConfig, TritonServer, free_port, server_directory

__all__ = [
    "server_unavailable_reason",
    "triton_server_fixture",
    "require_triton",
    "write_small_pfnano",
    "STORAGE_ENV_VARIABLE",
    "require_storage",
    "XRootDServer",
    "xrootd_unavailable_reason",
    "xrootd_server_fixture",
    "IsolatedDaskCluster",
    "isolation_unavailable_reason",
    "isolated_dask_cluster_fixture",
]


def server_unavailable_reason(server_env: str | Path | None = None) -> str | None:
    """Why no local Triton server can start (missing server environment), or None if one can."""
    try:
        server_directory(server_env)
    except ServerStartError as err:
        return str(err)
    return None


def triton_server_fixture(
    taggers: Sequence[str] | Callable[[], Mapping] = ("identity",),
    *,
    scope: str = "session",
    name: str | None = None,
    skip_if_unavailable: bool = True,
    startup_timeout_s: float = 120.0,
    server_env: str | Path | None = None,
    intra_op_threads: int = 1,
    **repository_options,
):
    """A pytest fixture yielding a running :class:`TritonServer`.

    ``taggers`` is a sequence of registry names (served with :func:`coffea_lorentz.models.pretrained`
    weights) or a callable returning the ``{name: module or model.pt path}`` mapping for
    :func:`repository.build_repository` (called when the fixture is first used, not at import).
    ``repository_options`` go to :func:`repository.build_repository`; ``intra_op_threads``
    defaults to 1 to keep test servers light.
    """
    import pytest

    @pytest.fixture(scope=scope, name=name)
    def _triton_server(tmp_path_factory) -> Iterator[TritonServer]:
        from .models import pretrained
        from .repository import build_repository

        reason = server_unavailable_reason(server_env)
        if reason is not None:
            if skip_if_unavailable:
                pytest.skip(f"no local Triton server: {reason}")
            pytest.fail(f"no local Triton server: {reason}")
        mapping = taggers() if callable(taggers) else {tagger: pretrained(tagger) for tagger in taggers}
        repository = build_repository(
            tmp_path_factory.mktemp("triton") / "model_repository",
            mapping,
            intra_op_threads=intra_op_threads,
            **repository_options,
        )
        config = ServerConfig(repository=repository, server_env=server_env, startup_timeout_s=startup_timeout_s)
        with TritonServer(config) as server:
            yield server

    return _triton_server


def require_triton() -> bool:
    """True where a missing Triton server must fail the tests instead of skipping them (``make test``)."""
    return os.environ.get("COFFEA_LORENTZ_REQUIRE_TRITON") == "1"


def write_small_pfnano(path: Path, *, seed: int = 7, layout: str = "new") -> Path:
    """Write a small PFNano-layout file with the awkward cases batching must survive.

    Five events: one with no FatJet, one jet with no constituents, one jet with 150 constituents
    (more than the default 128 kept), and jets of mixed lengths. ``layout="new"`` writes
    ``FatJet_nConstituents`` and stores constituents jet after jet; ``layout="old"`` writes only
    ``FatJetPFCands_jetIdx`` with the constituents of different jets interleaved.
    """
    import awkward as ak
    import numpy as np
    import uproot

    rng = np.random.default_rng(seed)
    constituents_per_jet = [[12, 40], [], [0, 5], [150], [3, 70, 1]]
    run, lumi, event = [], [], []
    fatjet, pfcands, links = [], [], []
    for i, jets in enumerate(constituents_per_jet):
        n_pf = sum(jets) + 10
        pf = {
            "pt": rng.exponential(20.0, n_pf).astype(np.float32) + 0.5,
            "eta": rng.normal(0.0, 1.0, n_pf).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, n_pf).astype(np.float32),
            "mass": np.where(rng.random(n_pf) < 0.6, 0.1396, 0.0).astype(np.float32),
            "pdgId": np.where(rng.random(n_pf) < 0.6, 211, 22).astype(np.int32),
            "charge": np.where(rng.random(n_pf) < 0.6, 1, 0).astype(np.int32),
        }
        pf_index = rng.permutation(n_pf)[: sum(jets)].astype(np.int32)
        jet_index = np.repeat(np.arange(len(jets), dtype=np.int32), jets)
        if layout == "old":
            order = np.random.default_rng(seed + 1000 + i).permutation(len(jet_index))
            pf_index, jet_index = pf_index[order], jet_index[order]
        fatjet.append({
            "pt": (np.sort(rng.uniform(200, 900, len(jets)))[::-1]).astype(np.float32),
            "eta": rng.normal(0, 1, len(jets)).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, len(jets)).astype(np.float32),
            "mass": rng.uniform(10, 200, len(jets)).astype(np.float32),
            "nConstituents": np.asarray(jets, dtype=np.uint8 if max(jets, default=0) < 256 else np.int32),
        })
        pfcands.append(pf)
        links.append({"jetIdx": jet_index, "pFCandsIdx": pf_index})
        run.append(1)
        lumi.append(100 + i)
        event.append(5000 + 17 * i)

    def jagged(records: list[dict], field: str):
        return ak.Array([r[field] for r in records])

    fatjet_fields = ["pt", "eta", "phi", "mass"] + (["nConstituents"] if layout == "new" else [])
    link_fields = ["pFCandsIdx"] + (["jetIdx"] if layout == "old" else [])
    tree = {
        "run": np.asarray(run, dtype=np.uint32),
        "luminosityBlock": np.asarray(lumi, dtype=np.uint32),
        "event": np.asarray(event, dtype=np.uint64),
        "FatJet": ak.zip({f: jagged(fatjet, f) for f in fatjet_fields}),
        "PFCands": ak.zip({f: jagged(pfcands, f) for f in pfcands[0]}),
        "FatJetPFCands": ak.zip({f: jagged(links, f) for f in link_fields}),
    }
    with uproot.recreate(path) as file:
        events = file.mktree(
            "Events",
            {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in tree.items()},
            field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
            counter_name=lambda counted: f"n{counted}",
        )
        events.extend(tree)
    return path


# -- real storage and workers without a shared disk -------------------------------------------

#: Set to 1 (``make test`` does) to make the storage and isolation fixtures fail instead of skip.
STORAGE_ENV_VARIABLE = "COFFEA_LORENTZ_REQUIRE_STORAGE"
_PROCESS_LOG_TAIL_LINES = 30
_PROCESS_POLL_S = 0.1
_START_ATTEMPTS = 3
#: The longest path of a unix socket xrootd creates under its admin directory (``sun_path`` is 108 bytes).
_ADMIN_SOCKET_SUFFIX = "/.xrootd/admin"
_MAX_SOCKET_PATH = 100
#: Capabilities kept by the unprivileged xrootd when started by root: read and write any file, so
#: the data root may lie in a root-only directory (pytest's temporary directories are 0700).
_XROOTD_CAPABILITIES = "+dac_override,+dac_read_search"
_UNPRIVILEGED_USER = "nobody"
_UNPRIVILEGED_GROUP = "nogroup"


def require_storage() -> bool:
    """True where a missing XRootD server or worker isolation must fail the tests instead of
    skipping them (``make test`` sets ``COFFEA_LORENTZ_REQUIRE_STORAGE=1``)."""
    return os.environ.get(STORAGE_ENV_VARIABLE) == "1"


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


def _spawn(command: Sequence[str], log_path: Path, *, cwd: Path | str, env: Mapping[str, str] | None = None
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


def _terminate(processes: Sequence[subprocess.Popen], grace_s: float) -> list[int]:
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
        time.sleep(_PROCESS_POLL_S)


def _log_tail(log_path: Path | None, n_lines: int = _PROCESS_LOG_TAIL_LINES) -> str:
    if log_path is None or not log_path.is_file():
        return ""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-n_lines:])


def _port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _die_with_parent() -> list[str]:
    """A ``setpriv --pdeathsig`` prefix: the child gets SIGTERM when this process dies (else [])."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


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
        process before xrootd bound it is replaced, up to ``_START_ATTEMPTS`` times."""
        if self.process is not None:
            return self
        binary = shutil.which("xrootd")
        if binary is None:
            raise ServerStartError(f"cannot serve {self.data_root}: {xrootd_unavailable_reason()}")
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                return self._launch(binary)
            except ServerStartError:
                retry = self.requested_port is None and attempt < _START_ATTEMPTS
                if not (retry and "already in use" in _log_tail(self.log_path)):
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
        command = _die_with_parent()
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
        self.process = _spawn(command, self.log_path, cwd=self.state_dir)
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
                    f"{self.process.returncode} during startup; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            # The log line first: a client stat against a port some other process holds would block.
            if self._initialized() and _port_accepts(self.host, self.port) and self._stat_root():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"xrootd for {self.data_root} not serving at {self.url} after {self.startup_timeout_s:g} s; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(_PROCESS_POLL_S)

    def _initialized(self) -> bool:
        """Whether the daemon logged the end of its start (``... initialization completed.``)."""
        return "initialization completed" in _log_tail(self.log_path, n_lines=1000)

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
        _terminate([process], self.stop_grace_s)
        self.process = None
        if self._own_admin_dir and self._admin_dir is not None:
            shutil.rmtree(self._admin_dir, ignore_errors=True)

    def log_tail(self, n_lines: int = _PROCESS_LOG_TAIL_LINES) -> str:
        """The last ``n_lines`` non-empty lines of the daemon's log ('' before start)."""
        return _log_tail(self.log_path, n_lines)

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
        command = _die_with_parent() + _dask_command("scheduler") + [
            "--host", self.host, "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file),
        ]
        # Port 0 and the scheduler file: the scheduler binds a free port itself and says which.
        self.scheduler = _spawn(command, log_path, cwd=self.log_dir, env=self.env)
        while True:
            if self.scheduler.poll() is not None:
                raise ServerStartError(
                    f"dask scheduler exited with status {self.scheduler.returncode} during startup; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            address = _read_scheduler_address(scheduler_file)
            if address is not None:
                self.scheduler_address = address
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"dask scheduler wrote no address to {scheduler_file} within {self.startup_timeout_s:g} s; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(_PROCESS_POLL_S)

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
            return _spawn(_die_with_parent() + worker, log_path, cwd="/", env=self.env)
        mounts = [f"mount -t tmpfs tmpfs {shlex.quote(str(directory))}" for directory in self.hidden]
        script = " && ".join(mounts + ["exec " + shlex.join(worker)])
        command = _die_with_parent() + [
            shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "sh", "-c", script,
        ]
        return _spawn(command, log_path, cwd="/", env=self.env)

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
                            f"log {log_path}:\n{_log_tail(log_path)}"
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
                        f"{_log_tail(self.log_dir / 'worker-0.log')}"
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
        left = _terminate(self.workers, self.stop_grace_s)
        if self.scheduler is not None:
            left += _terminate([self.scheduler], self.stop_grace_s)
        self.workers, self.scheduler = [], None
        if left:
            raise ServerStartError(f"dask processes {left} are still alive after SIGKILL")
        if remove_logs and self._requested_log_dir is None and self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def log_tail(self, which: str = "scheduler", n_lines: int = _PROCESS_LOG_TAIL_LINES) -> str:
        """The end of a log: ``"scheduler"`` or ``"worker-<i>"``."""
        return "" if self.log_dir is None else _log_tail(self.log_dir / f"{which}.log", n_lines)

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
