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
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInputError, ServerError, ServerStartError

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
_MODEL_CONTROL_MODES = ("none", "poll", "explicit")
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


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How to run one Triton server.

    Ports set to 0 or None are picked free at start. ``log_path`` defaults to
    ``<repository parent>/tritonserver-<grpc port>.log`` (a temporary directory if that parent is
    not writable). ``model_control_mode`` is Triton's (``none`` loads every model at start);
    ``strict_model_config`` keeps Triton from completing ``config.pbtxt`` on its own;
    ``strict_readiness`` makes /v2/health/ready wait for every model. ``die_with_parent`` has the
    kernel send SIGTERM to the server when the thread that started it exits (through ``setpriv
    --pdeathsig``, where available), so a killed parent leaves no orphan server; turn it off when a
    short-lived thread starts a server that must outlive it.

    Protecting the gRPC port (the HTTP and metrics ports stay open: keep ``host`` on loopback, or
    put them behind a proxy):

    - ``grpc_tls_cert`` + ``grpc_tls_key`` (PEM files): the gRPC port speaks TLS only (a plaintext
      client fails its handshake); with ``grpc_tls_client_ca`` also, mutual TLS: only clients
      presenting a certificate signed by that CA are served.
    - ``grpc_token``: every gRPC call (health, metadata, inference, shared memory, model config,
      repository, statistics, trace, logging) must carry the metadata ``authorization: Bearer
      <grpc_token>``, checked by Triton itself (``--grpc-restricted-protocol``); others are refused
      with ``UNAVAILABLE`` "This protocol is restricted, expecting header
      'triton-grpc-protocol-authorization'" (Triton prefixes the key; the client sends both forms,
      :mod:`coffea_lorentz.infer.security`). Without TLS the token travels in clear. The token is
      left out of the logged command line and of ``repr``, but it is on the server's command line
      (visible in the process list to users of this machine).
    - ``grpc_host``: where the gRPC port binds when it differs from ``host`` (the HTTP and metrics
      ports stay on ``host``): a run's own server for workers on other machines binds only gRPC to
      the network and keeps HTTP and metrics on loopback.
    - ``admin_token``: the administrative protocols — shared memory, statistics, trace and logging,
      on gRPC and HTTP — need ``authorization: Bearer <admin_token>``, while health, metadata,
      model configuration, the repository index and inference stay open. (With ``model_control_mode``
      ``none`` the repository API can only list models: loading and unloading are refused.)
      Ignored for gRPC when ``grpc_token`` already protects every protocol.
    """

    repository: Path
    host: str = "127.0.0.1"
    http_port: int | None = None
    grpc_port: int | None = None
    metrics_port: int | None = None
    server_env: Path | None = None
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 10.0
    log_path: Path | None = None
    log_verbose: int = 0
    model_control_mode: str = "none"
    strict_model_config: bool = True
    strict_readiness: bool = True
    exit_on_error: bool = True
    die_with_parent: bool = True
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_client_ca: Path | None = None
    grpc_token: str | None = field(default=None, repr=False)
    grpc_host: str | None = None
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository).expanduser().resolve())
        for name in ("grpc_tls_cert", "grpc_tls_key", "grpc_tls_client_ca"):
            path = getattr(self, name)
            if path is not None:
                path = Path(path).expanduser().resolve()
                if not path.is_file():
                    raise InvalidInputError(f"ServerConfig.{name}: no such file {path}")
                object.__setattr__(self, name, path)
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise InvalidInputError("ServerConfig: grpc_tls_cert and grpc_tls_key go together (TLS needs both)")
        if self.grpc_tls_client_ca is not None and self.grpc_tls_cert is None:
            raise InvalidInputError("ServerConfig.grpc_tls_client_ca (mutual TLS) needs grpc_tls_cert and grpc_tls_key")
        for name in ("grpc_token", "admin_token"):
            value = getattr(self, name)
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise InvalidInputError(f"ServerConfig.{name} must be a non-empty string without white space")
        if self.log_path is not None:
            object.__setattr__(self, "log_path", Path(self.log_path).expanduser().resolve())
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise InvalidInputError(f"ServerConfig.{name} must be in [0, 65535] or None, got {port}")
        if self.model_control_mode not in _MODEL_CONTROL_MODES:
            raise InvalidInputError(
                f"ServerConfig.model_control_mode must be one of {', '.join(_MODEL_CONTROL_MODES)}, "
                f"got {self.model_control_mode!r}"
            )
        if self.startup_timeout_s <= 0 or self.stop_grace_s < 0:
            raise InvalidInputError(
                f"ServerConfig timeouts must be positive, got startup_timeout_s={self.startup_timeout_s}, "
                f"stop_grace_s={self.stop_grace_s}"
            )


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
        the start is retried with new ports (up to ``_PORT_ATTEMPTS`` times).
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
                if not (auto_ports and attempt < _PORT_ATTEMPTS and _port_taken(self.log_path)):
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
        command.extend(_security_args(config))
        command.extend(config.extra_args)

        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            shown = [_redacted(arg) for arg in command]
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


#: Triton's flags that make gRPC calls / HTTP requests of the listed protocols need a header.
_RESTRICTED_FLAGS = ("--grpc-restricted-protocol=", "--http-restricted-api=")
#: Every gRPC protocol group Triton can restrict: a token protects them all.
_GRPC_PROTOCOLS = ("health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                   "statistics", "trace", "logging")
#: The groups an administrative token protects: those that read or change the server's state beyond
#: inference (register host memory regions, read statistics, turn on traces or logs written to files).
ADMIN_PROTOCOLS = ("shared-memory", "statistics", "trace", "logging")


def _redacted(arg: str) -> str:
    """A command-line argument as the server log shows it: restriction values hidden."""
    for flag in _RESTRICTED_FLAGS:
        if arg.startswith(flag):
            return f"{arg.split(':', 1)[0]}:authorization=Bearer <hidden>"
    return arg


def _security_args(config: ServerConfig) -> list[str]:
    """Triton's TLS and restricted-protocol flags of ``config`` (none when it asks for neither)."""
    args = []
    if config.grpc_tls_cert is not None:
        args += [f"--grpc-server-cert={config.grpc_tls_cert}", f"--grpc-server-key={config.grpc_tls_key}"]
        if config.grpc_tls_client_ca is not None:
            args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={config.grpc_tls_client_ca}"]
        else:
            args.append("--grpc-use-ssl=true")
    if config.grpc_token is not None:
        args.append(f"{_RESTRICTED_FLAGS[0]}{','.join(_GRPC_PROTOCOLS)}:authorization=Bearer {config.grpc_token}")
    elif config.admin_token is not None:
        args.append(f"{_RESTRICTED_FLAGS[0]}{','.join(ADMIN_PROTOCOLS)}:authorization=Bearer {config.admin_token}")
    if config.grpc_token is not None:  # HTTP is no way around the token; health stays open for probes
        http_protocols = [name for name in _GRPC_PROTOCOLS if name != "health"]
        args.append(f"{_RESTRICTED_FLAGS[1]}{','.join(http_protocols)}:authorization=Bearer {config.grpc_token}")
    elif config.admin_token is not None:
        args.append(f"{_RESTRICTED_FLAGS[1]}{','.join(ADMIN_PROTOCOLS)}:authorization=Bearer {config.admin_token}")
    return args


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def exposure_warning(config: ServerConfig) -> str | None:
    """One line saying which ports of a server with ``config`` anyone on the network can use
    without credentials, and how to protect them; None when every port is bound to loopback."""
    grpc_host = config.grpc_host or config.host
    if _is_loopback(config.host) and _is_loopback(grpc_host):
        return None
    where = grpc_host if _is_loopback(config.host) else config.host
    problems = []
    if not _is_loopback(grpc_host):
        if config.grpc_token is None and config.grpc_tls_client_ca is None:
            problems.append("gRPC takes calls from anyone (no --token-file, no --tls-client-ca)")
        if config.grpc_tls_cert is None:
            problems.append("gRPC is plaintext (no --tls-cert/--tls-key)")
    if not _is_loopback(config.host):
        if config.grpc_token is None:
            problems.append("HTTP takes calls from anyone")
        problems.append("HTTP and metrics are plaintext")
    return (f"listening on {where}, open to the network: {'; '.join(problems)}. Protect it with --tls-cert/--tls-key "
            "and --token-file, or keep --host 127.0.0.1 and put Envoy with TLS and JWT in front (deploy/README.md)")


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
