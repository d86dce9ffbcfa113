"""The Envoy configuration for Triton servers: upstreams, balancing, health checks, retries (see the package)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from ..errors import InvalidInputError
from .security import AUTH_HEADERS, JwtAuth, ListenerTls, RateLimit, StaticToken, http_filters, transport_socket

__all__ = ["CLUSTER_NAME", "READINESS_PATH", "RETRY_ON", "Upstream", "EnvoyConfig", "envoy_config_dict",
           "render_envoy_config"]

#: Name of the Envoy cluster holding the Triton servers (also the prefix of its statistics).
CLUSTER_NAME = "triton"
#: Triton's readiness endpoint, on its HTTP port.
READINESS_PATH = "/v2/health/ready"
#: What a request is retried on, on another server (Envoy's ``retry_on`` conditions).
RETRY_ON = "unavailable,reset,connect-failure,refused-stream"
_DISCOVERY = {"static": "STATIC", "strict_dns": "STRICT_DNS"}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


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
        tls: TLS termination on the listener (None: plaintext gRPC).
        jwt: JWT authentication of every request (None: none); or
        static_token: one shared bearer token checked on every request (then the rendered YAML
            holds the token: keep it private, see :func:`~coffea_lorentz.envoy.security.write_private`).
        rate_limit: a token bucket on all requests (None: no limit).
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
    tls: ListenerTls | None = None
    jwt: JwtAuth | None = None
    static_token: StaticToken | None = None
    rate_limit: RateLimit | None = None

    @property
    def authenticates(self) -> bool:
        """Whether every request must carry a token (JWT or the static one)."""
        return self.jwt is not None or self.static_token is not None

    def __post_init__(self) -> None:
        if self.jwt is not None and self.static_token is not None:
            raise InvalidInputError("EnvoyConfig: give jwt or static_token, not both")
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
        http_filters=[*http_filters(jwt=config.jwt, static_token=config.static_token, rate_limit=config.rate_limit),
                      {"name": "envoy.filters.http.router",
                       "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router")}],
    )
    if config.authenticates:  # the token stops here: the Triton servers never see it
        connection_manager["route_config"]["request_headers_to_remove"] = list(AUTH_HEADERS)
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
    filter_chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                       "typed_config": connection_manager}]}
    if config.tls is not None:
        filter_chain["transport_socket"] = transport_socket(config.tls)
    return {
        "admin": {"address": _address(config.admin_host, config.admin_port)},
        "static_resources": {
            "listeners": [{
                "name": "triton_grpc",
                "address": _address(config.listen_host, config.listen_port),
                "filter_chains": [filter_chain],
            }],
            "clusters": [cluster],
        },
    }


def render_envoy_config(config: EnvoyConfig) -> str:
    """The Envoy configuration for ``config`` as YAML text (``envoy -c FILE`` reads it).

    With a :class:`StaticToken` the text holds the token: write it with
    :func:`~coffea_lorentz.envoy.security.write_private` and show it nowhere.
    """
    header = (
        "# Envoy in front of Triton servers, written by coffea_lorentz.envoy.render_envoy_config\n"
        f"# upstreams ({config.discovery}): "
        + ", ".join(f"{u.host} grpc {u.grpc_port} / ready {u.http_port}" for u in config.upstreams) + "\n"
        + _front_door_line(config)
    )
    return header + yaml.safe_dump(envoy_config_dict(config), sort_keys=False, default_flow_style=False)


def _front_door_line(config: EnvoyConfig) -> str:
    """A comment line saying what the listener checks (empty for a plain one, so those stay as they were)."""
    parts = []
    if config.tls is not None:
        parts.append("TLS" + (" with client certificates" if config.tls.client_ca else ""))
    if config.jwt is not None:
        parts.append(f"JWT from issuer {config.jwt.issuer} for audience {', '.join(config.jwt.audiences)}")
    if config.static_token is not None:
        parts.append("a static bearer token (this file holds it: keep it private)")
    if config.rate_limit is not None:
        limit = config.rate_limit
        parts.append(f"rate limit {limit.requests_per_s:g} requests/s, bursts of {limit.max_tokens}")
    return f"# listener: {'; '.join(parts)}\n" if parts else ""


# -- the binary and the process -------------------------------------------------------------------
