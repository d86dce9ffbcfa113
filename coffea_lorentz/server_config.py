"""What a local Triton server is started with, and what it opens to whom.

:class:`ServerConfig` holds the repository, addresses, ports, serving options and the protection of
its ports (TLS, a token, an administrative key); :func:`security_args` turns that protection into
Triton's own flags, :func:`redacted` hides their secrets in the logged command line, and
:func:`exposure_warning` says in one line which ports anyone on the network can use without
credentials. :class:`~coffea_lorentz.serve.TritonServer` runs the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInputError

__all__ = ["ServerConfig", "ADMIN_PROTOCOLS", "security_args", "redacted", "exposure_warning"]

_MODEL_CONTROL_MODES = ("none", "poll", "explicit")


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


#: Triton's flags that make gRPC calls / HTTP requests of the listed protocols need a header.
_RESTRICTED_FLAGS = ("--grpc-restricted-protocol=", "--http-restricted-api=")
#: Every gRPC protocol group Triton can restrict: a token protects them all.
_GRPC_PROTOCOLS = ("health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                   "statistics", "trace", "logging")
#: The groups an administrative token protects: those that read or change the server's state beyond
#: inference (register host memory regions, read statistics, turn on traces or logs written to files).
ADMIN_PROTOCOLS = ("shared-memory", "statistics", "trace", "logging")


def redacted(arg: str) -> str:
    """A command-line argument as the server log shows it: restriction values hidden."""
    for flag in _RESTRICTED_FLAGS:
        if arg.startswith(flag):
            return f"{arg.split(':', 1)[0]}:authorization=Bearer <hidden>"
    return arg


def security_args(config: ServerConfig) -> list[str]:
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


