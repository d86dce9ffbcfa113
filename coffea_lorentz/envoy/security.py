"""What Envoy checks at the front door: TLS on the listener, who may call, how often.

- :class:`ListenerTls` — the listener terminates TLS with a certificate and key (PEM files as Envoy
  sees them), and with ``client_ca`` also requires a client certificate signed by that CA (mutual TLS).
- :class:`JwtAuth` — every request carries ``authorization: Bearer <JWT>``, checked by
  ``envoy.filters.http.jwt_authn`` against a local JWKS (a file or inline JSON), the issuer and
  the audiences. Missing, expired or badly signed: HTTP 401, which gRPC clients get as
  ``UNAUTHENTICATED``; a token for another audience: 403, ``PERMISSION_DENIED``.
- :class:`StaticToken` — instead of JWTs, one shared token (read from a file): an RBAC policy
  allows only requests whose ``authorization`` header is ``Bearer <token>`` (else 403,
  ``PERMISSION_DENIED``). The token then stands in the rendered YAML: :func:`write_private`
  writes it readable by its owner only, and nothing prints it.
- :class:`RateLimit` — a token bucket (``envoy.filters.http.local_ratelimit``) shared by all of
  Envoy's worker threads; a request over the limit is answered ``RESOURCE_EXHAUSTED``
  (``rate_limited_as_resource_exhausted``; without it Envoy answers gRPC's ``UNAVAILABLE``), which
  the client backs off on and retries.

The credentials are consumed by Envoy: the JWT filter removes the ``authorization`` header
(``forward: false``) and the route removes it and Triton's ``triton-grpc-protocol-authorization``
(the client sends both), so no token travels on to the Triton servers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError, InvalidInputError

__all__ = ["AUTH_HEADERS", "JWT_PROVIDER", "JwtAuth", "ListenerTls", "RateLimit", "StaticToken", "http_filters",
           "transport_socket", "write_private"]

#: Name of the JWT provider in the rendered configuration.
JWT_PROVIDER = "coffea_lorentz"
#: Headers that carry a client's token (standard, and Triton's restricted-protocol form); never sent upstream.
AUTH_HEADERS = ("authorization", "triton-grpc-protocol-authorization")


def _typed(type_name: str, **fields) -> dict:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


@dataclass(frozen=True, kw_only=True)
class ListenerTls:
    """TLS termination on Envoy's listener: PEM file paths as Envoy reads them.

    Attributes:
        cert: the server certificate chain (its names must match what clients connect to).
        key: its private key.
        client_ca: CA a client certificate must be signed by; given, a client certificate is required.
    """

    cert: str
    key: str
    client_ca: str | None = None

    def __post_init__(self) -> None:
        for name in ("cert", "key"):
            if not getattr(self, name):
                raise InvalidInputError(f"ListenerTls.{name}: the path of a PEM file is required")


@dataclass(frozen=True, kw_only=True)
class JwtAuth:
    """JWT authentication of every request, against a local JWKS.

    Attributes:
        issuer: the ``iss`` a token must carry.
        audiences: accepted ``aud`` values (a token must name one of them).
        jwks_file: path of the JWKS (JSON Web Key Set) as Envoy reads it; or
        jwks_inline: the JWKS itself, as JSON text (public keys only).
        clock_skew_s: tolerance on ``exp`` and ``nbf`` in seconds.
    """

    issuer: str
    audiences: tuple[str, ...]
    jwks_file: str | None = None
    jwks_inline: str | None = None
    clock_skew_s: int = 60

    def __post_init__(self) -> None:
        object.__setattr__(self, "audiences", tuple(self.audiences))
        if not self.issuer:
            raise InvalidInputError("JwtAuth.issuer: the issuer ('iss') tokens must carry is required")
        if not self.audiences or not all(self.audiences):
            raise InvalidInputError("JwtAuth.audiences: give at least one accepted audience ('aud')")
        if (self.jwks_file is None) == (self.jwks_inline is None):
            raise InvalidInputError("JwtAuth: give exactly one of jwks_file (a path) and jwks_inline (JSON text)")
        if self.jwks_inline is not None:
            try:
                keys = json.loads(self.jwks_inline).get("keys")
            except (ValueError, AttributeError):
                keys = None
            if not isinstance(keys, list) or not keys:
                raise InvalidInputError("JwtAuth.jwks_inline is not a JWKS: expected JSON {\"keys\": [...]}")
        if self.clock_skew_s < 0:
            raise InvalidInputError(f"JwtAuth.clock_skew_s must be >= 0, got {self.clock_skew_s}")

    def filter(self) -> dict:
        """The ``jwt_authn`` HTTP filter: every route requires a valid token of this provider."""
        jwks = {"filename": self.jwks_file} if self.jwks_file is not None else {"inline_string": self.jwks_inline}
        provider = {
            "issuer": self.issuer,
            "audiences": list(self.audiences),
            "local_jwks": jwks,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "forward": False,
            "clock_skew_seconds": self.clock_skew_s,
        }
        return {"name": "envoy.filters.http.jwt_authn", "typed_config": _typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={JWT_PROVIDER: provider},
            rules=[{"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}],
        )}


@dataclass(frozen=True, kw_only=True)
class StaticToken:
    """One shared bearer token, read from ``token_file`` when the configuration is rendered.

    Attributes:
        token_file: the file holding the token (surrounding white space is stripped).
    """

    token_file: str

    def __repr__(self) -> str:  # the path only: the token is read at render time and shown nowhere
        return f"StaticToken(token_file={self.token_file!r})"

    def _value(self) -> str:
        try:
            value = Path(self.token_file).expanduser().read_text().strip()
        except OSError as err:
            raise ConfigurationError(f"--token-file {self.token_file}: cannot read it ({err.strerror})") from None
        if not value or any(character.isspace() for character in value) or not value.isprintable():
            raise ConfigurationError(f"--token-file {self.token_file}: the token is empty or holds white space")
        return value

    def filter(self) -> dict:
        """An RBAC filter allowing only requests with ``authorization: Bearer <token>``."""
        principal = {"header": {"name": "authorization", "string_match": {"exact": f"Bearer {self._value()}"}}}
        return {"name": "envoy.filters.http.rbac", "typed_config": _typed(
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            rules={"action": "ALLOW", "policies": {"bearer-token": {"permissions": [{"any": True}],
                                                                    "principals": [principal]}}},
        )}


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A token bucket on the listener: at most ``max_tokens`` requests at once, refilled by
    ``tokens_per_fill`` every ``fill_interval_ms`` milliseconds (sustained rate
    ``tokens_per_fill / fill_interval_ms`` per ms).

    Attributes:
        max_tokens: bucket size (the largest burst).
        tokens_per_fill: tokens added at each fill.
        fill_interval_ms: time between fills in milliseconds (Envoy needs at least 50).
    """

    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval_ms: int = 1000

    def __post_init__(self) -> None:
        for name in ("max_tokens", "tokens_per_fill"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"RateLimit.{name} must be >= 1, got {getattr(self, name)}")
        if self.fill_interval_ms < 50:
            raise InvalidInputError(f"RateLimit.fill_interval_ms must be >= 50 (Envoy's minimum), "
                                    f"got {self.fill_interval_ms}")

    @property
    def requests_per_s(self) -> float:
        """The sustained rate the bucket lets through, in requests per second."""
        return self.tokens_per_fill * 1000.0 / self.fill_interval_ms

    def filter(self) -> dict:
        """The ``local_ratelimit`` HTTP filter, enforced on every request, answering ``RESOURCE_EXHAUSTED``."""
        every_request = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
        return {"name": "envoy.filters.http.local_ratelimit", "typed_config": _typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="triton_rate_limit",
            token_bucket={"max_tokens": self.max_tokens, "tokens_per_fill": self.tokens_per_fill,
                          "fill_interval": f"{self.fill_interval_ms / 1000:g}s"},
            filter_enabled={**every_request, "runtime_key": "triton_rate_limit_enabled"},
            filter_enforced={**every_request, "runtime_key": "triton_rate_limit_enforced"},
            rate_limited_as_resource_exhausted=True,
        )}


def http_filters(*, jwt: JwtAuth | None, static_token: StaticToken | None, rate_limit: RateLimit | None) -> list[dict]:
    """The filters before the router, in order: authentication first (a rejected caller uses up no
    rate), then the rate limit."""
    filters = []
    if jwt is not None:
        filters.append(jwt.filter())
    if static_token is not None:
        filters.append(static_token.filter())
    if rate_limit is not None:
        filters.append(rate_limit.filter())
    return filters


def transport_socket(tls: ListenerTls) -> dict:
    """The listener's TLS transport socket (HTTP/2 by ALPN, TLS 1.2 or newer)."""
    context: dict = {
        "alpn_protocols": ["h2"],
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "tls_certificates": [{"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}],
    }
    fields: dict = {"common_tls_context": context}
    if tls.client_ca is not None:
        context["validation_context"] = {"trusted_ca": {"filename": tls.client_ca}}
        fields["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": _typed("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", **fields)}


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (mode 0600), from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)  # an existing file keeps its mode through os.open
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
