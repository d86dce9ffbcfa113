"""Start and stop a local Triton server on a model repository.

The server binary is the ``tritonserver`` shipped in the ``nvidia-pytriton`` wheel of a separate
environment (``.venv-server``, made by ``deploy/setup_server_env.sh``; numpy < 2 there because the
python backend needs it). The environment is found from ``ServerConfig.server_env``, else the
``COFFEA_LORENTZ_SERVER_ENV`` variable, else ``.venv-server`` at the root of this source tree.

>>> from coffea_lorentz.serve import ServerConfig, TritonServer
>>> with TritonServer(ServerConfig(repository="build/model_repository")) as server:  # doctest: +SKIP
...     client = tritonclient.grpc.InferenceServerClient(server.grpc_url)

The server runs in its own process group with its output in a log file. ``stop()`` (also called on
leaving the ``with`` block and at interpreter exit) sends SIGTERM, then SIGKILL to the whole group
after ``stop_grace_s``, so the python-backend stub processes go too. ``serve_forever()`` is the
foreground form (``coffea-lorentz serve``, ``python -m coffea_lorentz.serve REPOSITORY``): start,
announce the endpoints, block until Ctrl-C or SIGTERM, stop.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import ServerError, ServerStartError
from .server_config import ServerConfig, redacted, security_args

#: Prefix of the temporary model repositories a process builds for the servers it starts
#: (``<prefix><pid>-…``, so the repositories of dead processes can be found and removed).
REPOSITORY_PREFIX = "coffea-lorentz-repo-"

__all__ = [
    "ENV_VARIABLE",
    "ServerConfig",
    "TritonServer",
    "find_server_env",
    "server_directory",
    "free_port",
]

#: Environment variable naming the server environment (a directory holding ``triton/``).
ENV_VARIABLE = "COFFEA_LORENTZ_SERVER_ENV"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_LOG_TAIL_LINES = 40
_POLL_INTERVAL_S = 0.1
_PORT_ATTEMPTS = 3


def find_server_env(server_env: str | Path | None = None) -> Path:
    """The server environment directory: ``server_env``, else ``$COFFEA_LORENTZ_SERVER_ENV``,
    else ``.venv-server`` at the source root (returned whether or not it exists)."""
    if server_env is not None:
        return Path(server_env).expanduser().resolve()
    from_env = os.environ.get(ENV_VARIABLE)
    if from_env:
        return Path(from_env).expanduser().resolve()
    return _SOURCE_ROOT / ".venv-server"


def server_directory(server_env: str | Path | None = None) -> Path:
    """``<server_env>/triton``, checked to hold the server binary and the python backend stub."""
    env = find_server_env(server_env)
    directory = env / "triton"
    needed = [
        directory / "bin" / "tritonserver",
        directory / "backends" / "python" / "libtriton_python.so",
        directory / "backends" / "python" / "triton_python_backend_stub",
        directory / "env.sh",
    ]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise ServerStartError(
            f"Triton server environment {env} is not set up (missing {', '.join(missing)}); "
            f"run: bash deploy/setup_server_env.sh {env}"
        )
    return directory


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class TritonServer:
    """A ``tritonserver`` process on ``config.repository``; a context manager.

    ``start()`` returns once /v2/health/ready answers 200 and every model of the repository is
    ready, and raises :class:`ServerStartError` (with the end of the server log) when the process
    exits or the timeout passes first. ``stop()`` is idempotent.
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.process: subprocess.Popen | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.log_path: Path | None = None
        self.startup_s: float | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        """``HOST:PORT`` of the gRPC endpoint (what ``tritonclient.grpc`` takes)."""
        return f"{self._client_host(self.config.grpc_host)}:{self._port('grpc_port')}"

    @property
    def http_url(self) -> str:
        """``HOST:PORT`` of the HTTP/REST endpoint (what ``tritonclient.http`` takes)."""
        return f"{self._client_host()}:{self._port('http_port')}"

    @property
    def metrics_url(self) -> str:
        """``http://HOST:PORT/metrics`` (Prometheus text format)."""
        return f"http://{self._client_host()}:{self._port('metrics_port')}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id of ``tritonserver`` (also its process group id), None when not started."""
        return None if self.process is None else self.process.pid

    def _client_host(self, host: str | None = None) -> str:
        host = self.config.host if host is None else host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    def _port(self, name: str) -> int:
        port = getattr(self, name)
        if port is None:
            raise ServerStartError(f"Triton server on {self.config.repository} is not started; no {name}")
        return port

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> TritonServer:
        """Launch the server and wait until it and all its models are ready.

        When a port picked free here was taken by another process before the server bound it,
        the start is retried with new ports (up to ``_PORT_ATTEMPTS`` times); so is a start that
        Triton's python backend aborted while setting up its shared memory
        (``boost::interprocess::lock_exception``, an intermittent fault of the backend, not of the
        repository).
        """
        if self.process is not None:
            return self
        config = self.config
        if not config.repository.is_dir():
            raise ServerStartError(f"model repository {config.repository} is not a directory")
        directory = server_directory(config.server_env)
        auto_ports = not (config.http_port and config.grpc_port and config.metrics_port)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                return self._launch(directory)
            except ServerStartError:
                again = (auto_ports and _port_taken(self.log_path)) or _backend_aborted(self.log_path)
                if not (again and attempt < _PORT_ATTEMPTS):
                    raise

    def _launch(self, directory: Path) -> TritonServer:
        config = self.config
        self.http_port = config.http_port or free_port(config.host)
        self.grpc_port = config.grpc_port or _distinct_free_port(config.grpc_host or config.host, {self.http_port})
        self.metrics_port = config.metrics_port or _distinct_free_port(config.host, {self.http_port, self.grpc_port})
        self.log_path = config.log_path or _default_log_path(config.repository, self.grpc_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

        command = []
        setpriv = shutil.which("setpriv") if config.die_with_parent else None
        if setpriv:
            command += [setpriv, "--pdeathsig", "TERM", "--"]
        command += [
            str(directory / "bin" / "tritonserver"),
            f"--model-repository={config.repository}",
            f"--backend-directory={directory / 'backends'}",
            f"--cache-directory={directory / 'caches'}",
            f"--http-address={config.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={config.grpc_host or config.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={config.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            f"--model-control-mode={config.model_control_mode}",
            f"--strict-readiness={str(config.strict_readiness).lower()}",
            f"--exit-on-error={str(config.exit_on_error).lower()}",
            f"--exit-timeout-secs={max(1, int(config.stop_grace_s))}",
            f"--log-verbose={config.log_verbose}",
        ]
        if config.strict_model_config:
            command.append("--disable-auto-complete-config")
        command.extend(security_args(config))
        command.extend(config.extra_args)

        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            shown = [redacted(arg) for arg in command]
            log.write(("$ " + " ".join(shown) + "\n").encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_environment(find_server_env(config.server_env), directory),
                cwd=str(config.repository),
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.config.startup_timeout_s
        pending = _model_names(self.config.repository)
        base = f"http://{self._client_host()}:{self.http_port}"
        server_ready = False
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"Triton server on {self.config.repository} exited with status {self.process.returncode} "
                    f"during startup; log {self.log_path}:\n{self.log_tail()}"
                )
            if not server_ready:
                server_ready = _http_ok(f"{base}/v2/health/ready")
            if server_ready:
                pending = [name for name in pending if not _http_ok(f"{base}/v2/models/{name}/ready")]
                if not pending:
                    return
            if time.monotonic() > deadline:
                waiting = "server" if not server_ready else f"models {', '.join(pending)}"
                raise ServerStartError(
                    f"Triton server on {self.config.repository} not ready after {self.config.startup_timeout_s:g} s "
                    f"(waiting for {waiting} at {base}); log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until the server exits (or ``timeout_s`` passes); its exit status or None."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL its process group after ``stop_grace_s``; safe to repeat."""
        process = self.process
        if process is None:
            return
        atexit.unregister(self.stop)
        group = process.pid
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=self.config.stop_grace_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        # The stub processes of the python backend share the group; none may outlive the server.
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        self.process = None

    def serve_forever(self, *, announce: Callable[[str], None] | None = None) -> None:
        """Start the server if needed, then block until Ctrl-C or SIGTERM; the server is stopped on return.

        ``announce(line)`` receives the startup time, pid, endpoints and log path once every model
        is ready (and "Ctrl-C to stop" in the main thread). Returns normally on SIGINT or SIGTERM
        (SIGTERM is caught only when called from the main thread; the previous handler is put
        back); raises :class:`ServerError` with the end of the log when the server process exits
        by itself.
        """
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
        try:
            self.start()
            if announce is not None:
                for line in self.endpoint_lines() + (["Ctrl-C to stop"] if main_thread else []):
                    announce(line)
            status = self.wait()
            raise ServerError(f"Triton server exited with status {status}; log {self.log_path}:\n{self.log_tail()}")
        except KeyboardInterrupt:
            return
        finally:
            self.stop()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def endpoint_lines(self) -> list[str]:
        """What a running server offers, one line each: ready time and pid, gRPC, HTTP, metrics, log."""
        config = self.config
        scheme = "grpcs" if config.grpc_tls_cert is not None else "grpc"
        client = " --tls-ca CA.pem" if scheme == "grpcs" else ""
        client += " --tls-cert CERT.pem --tls-key KEY.pem" if config.grpc_tls_client_ca is not None else ""
        client += " --token-file FILE" if config.grpc_token is not None else ""
        return [
            f"Triton server ready in {self.startup_s:.1f} s (pid {self.pid})",
            f"  gRPC     {scheme}://{self.grpc_url}   (coffea-lorentz run … --server {scheme}://{self.grpc_url}{client})",
            f"  HTTP     http://{self.http_url}",
            f"  metrics  {self.metrics_url}",
            f"  log      {self.log_path}",
        ]

    def log_tail(self, n_lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``n_lines`` lines of the server log, without the tables Triton prints at
        startup ('' before start)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        lines = [line for line in lines if line.strip() and not line.startswith(("+", "|"))]
        return "\n".join(lines[-n_lines:])

    def __repr__(self) -> str:
        state = f"pid={self.pid}, grpc={self.grpc_url}" if self.is_running() else "stopped"
        return f"TritonServer({self.config.repository}, {state})"


def _distinct_free_port(host: str, taken: set[int]) -> int:
    for _ in range(100):
        port = free_port(host)
        if port not in taken:
            return port
    raise ServerStartError(f"no free TCP port found on {host}")


def _port_taken(log_path: Path | None) -> bool:
    """Whether the server log says a port was already in use."""
    if log_path is None or not log_path.is_file():
        return False
    text = log_path.read_text(errors="replace")
    return "already in use" in text or "Address already in use" in text


def _backend_aborted(log_path: Path | None) -> bool:
    """Whether the server log says Triton's python backend aborted on its interprocess lock (an
    intermittent fault while it sets up a model instance's shared memory; a new start succeeds)."""
    if log_path is None or not log_path.is_file():
        return False
    return "boost::interprocess::lock_exception" in log_path.read_text(errors="replace")


def _default_log_path(repository: Path, grpc_port: int) -> Path:
    name = f"tritonserver-{grpc_port}.log"
    if os.access(repository.parent, os.W_OK):
        return repository.parent / name
    return Path(os.environ.get("TMPDIR", "/tmp")) / name


def _model_names(repository: Path) -> list[str]:
    return sorted(path.parent.name for path in repository.glob("*/config.pbtxt"))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _server_environment(env_dir: Path, directory: Path) -> dict[str, str]:
    """Process environment of ``tritonserver``: the server environment's python3 first on PATH
    (the python backend embeds it), the wheel's libraries and libpython on LD_LIBRARY_PATH."""
    variables = _read_env_sh(directory / "env.sh")
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    environment["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    library_path = variables.get("LD_LIBRARY_PATH", "")
    inherited = os.environ.get("LD_LIBRARY_PATH")
    environment["LD_LIBRARY_PATH"] = f"{library_path}{os.pathsep}{inherited}" if inherited else library_path
    environment["VIRTUAL_ENV"] = str(env_dir)
    return environment


def _read_env_sh(path: Path) -> dict[str, str]:
    """The library path that ``deploy/setup_server_env.sh`` wrote into ``env.sh``."""
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export LD_LIBRARY_PATH="):
            value = line.split("=", 1)[1].strip().strip('"')
            values["LD_LIBRARY_PATH"] = value.split("${", 1)[0].rstrip(os.pathsep)
    if "LD_LIBRARY_PATH" not in values:
        raise ServerStartError(f"{path}: no LD_LIBRARY_PATH line; rerun deploy/setup_server_env.sh")
    return values


def _raise_interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m coffea_lorentz.serve REPOSITORY``: serve until interrupted.

    ``coffea-lorentz serve`` does the same and can also build the repository first.
    """
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m coffea_lorentz.serve REPOSITORY", file=sys.stderr)
        return 2
    server = TritonServer(ServerConfig(repository=Path(arguments[0])))
    server.serve_forever(announce=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
