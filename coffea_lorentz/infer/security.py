"""How the Triton client proves who it is and checks whom it talks to: TLS and a bearer token.

- :class:`TlsConfig` — PEM file paths (a CA to trust, optionally a client certificate and key for
  mutual TLS). Paths, not contents, so a backend spec pickles to Dask workers as plain data; the
  files are read where the gRPC channel is opened (they must exist there too).
- :class:`BearerToken` — a token sent as gRPC metadata ``authorization: Bearer <token>`` on every
  call. It is read from a file (``--token-file``) or from the environment variable
  :data:`TOKEN_ENV` (``COFFEA_LORENTZ_TOKEN``); its ``repr`` hides the value, so it shows in no log,
  ``run.json``, manifest or error message. The same value also goes in
  ``triton-grpc-protocol-authorization``, the header a Triton server started with
  ``--grpc-restricted-protocol=...:authorization=Bearer <token>`` checks itself.
- :func:`resolve_tls` — ``grpcs://`` means TLS, always (with the system's CA roots unless a CA is
  given); ``grpc://`` means plaintext and refuses a TLS configuration; a bare ``HOST:PORT`` uses TLS
  exactly when one is configured. Nothing downgrades silently.
- :func:`open_client` — a ``tritonclient.grpc`` client over TLS or not, that adds the token to every call.
- :func:`security_failure` — the one-line explanation of a gRPC failure that is a TLS or token
  mismatch (a configuration error: retrying cannot help), None for any other failure.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["TOKEN_ENV", "BearerToken", "TlsConfig", "open_client", "resolve_tls", "security_failure"]

#: The environment variable a bearer token is read from when no token file is given.
TOKEN_ENV = "COFFEA_LORENTZ_TOKEN"
#: The header Triton's ``--grpc-restricted-protocol=<protocols>:<key>=<value>`` checks: its key with this prefix.
_TRITON_RESTRICTED_PREFIX = "triton-grpc-protocol-"
#: gRPC statuses a proxy (Envoy, an ingress) answers a missing or rejected token with.
_DENIED_STATUS = ("UNAUTHENTICATED", "PERMISSION_DENIED")
#: How Triton itself refuses a call without the header of a restricted protocol (status UNAVAILABLE).
_TRITON_RESTRICTED = "this protocol is restricted"
#: What an HTTP/2 client sends first; a gRPC server over TLS answers it (or refuses a missing client certificate).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: How OpenSSL words a TLS alert that refuses the client's certificate (none, or one the server does not trust).
_CERTIFICATE_REFUSED = ("certificate required", "certificate_required", "unknown ca", "unknown_ca",
                        "bad certificate", "bad_certificate", "certificate unknown", "certificate_unknown")


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS of the gRPC connection to Triton: PEM file paths (read where the connection is opened).

    Attributes:
        ca: CA certificate(s) the server's certificate must be signed by; None: the system's roots.
        cert: client certificate for mutual TLS (with ``key``); None: no client certificate.
        key: the client certificate's private key (with ``cert``).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).expanduser()))
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError("TLS client certificate and key go together: give both --tls-cert and "
                                     "--tls-key (or neither)")

    def check_files(self) -> None:
        """:class:`ConfigurationError` naming the first file that is missing or unreadable."""
        for option, path in (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigurationError(f"{option} {path}: no such readable file")

    def describe(self) -> str:
        """What this configuration trusts and presents, in a few words (file names, no contents)."""
        trusted = f"CA {self.ca}" if self.ca else "the system's CA roots"
        return trusted + (f", client certificate {self.cert}" if self.cert else "")


@dataclass(frozen=True)
class BearerToken:
    """A bearer token for the server; ``repr`` and ``str`` never show its value.

    Attributes:
        value: the token (no white space).
        source: where it was read from (a file path or ``$COFFEA_LORENTZ_TOKEN``), for messages.
    """

    value: str = field(repr=False)
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.value or any(character.isspace() for character in self.value):
            raise ConfigurationError(f"bearer token from {self.source} is empty or holds white space")

    def __repr__(self) -> str:
        return f"BearerToken(<hidden>, source={self.source!r})"

    __str__ = __repr__

    @classmethod
    def from_file(cls, path: str | Path) -> BearerToken:
        """The token in ``path`` (surrounding white space stripped); :class:`ConfigurationError` if unreadable."""
        try:
            value = Path(path).expanduser().read_text().strip()
        except OSError as err:
            raise ConfigurationError(f"--token-file {path}: cannot read it ({err.strerror})") from None
        return cls(value, source=str(path))

    @classmethod
    def from_environment(cls, name: str = TOKEN_ENV) -> BearerToken | None:
        """The token in environment variable ``name``; None when it is unset or empty."""
        value = os.environ.get(name, "").strip()
        return cls(value, source=f"${name}") if value else None

    def headers(self) -> dict[str, str]:
        """The gRPC metadata that carries the token (standard and Triton-restricted forms)."""
        bearer = f"Bearer {self.value}"
        return {"authorization": bearer, f"{_TRITON_RESTRICTED_PREFIX}authorization": bearer}


def url_schemes(url: str) -> set[str]:
    """The schemes of a comma-separated server list: ``"grpc"``, ``"grpcs"`` or ``""`` (bare ``HOST:PORT``)."""
    return {part.strip().partition("://")[0] if "://" in part else "" for part in url.split(",") if part.strip()}


def resolve_tls(url: str, tls: TlsConfig | None) -> TlsConfig | None:
    """The TLS of a connection to ``url``: ``grpcs://`` → ``tls`` or the system roots; ``grpc://`` → none.

    Raises:
        ConfigurationError: ``grpc://`` and ``grpcs://`` mixed in one list, or ``grpc://`` with a TLS
            configuration (say ``grpcs://`` for TLS).
    """
    schemes = url_schemes(url)
    if {"grpc", "grpcs"} <= schemes:
        raise ConfigurationError(f"server list {url!r} mixes grpc:// (plaintext) and grpcs:// (TLS); use one")
    if "grpcs" in schemes:
        return tls or TlsConfig()
    if "grpc" in schemes and tls is not None:
        raise ConfigurationError(f"server {url!r} is plaintext (grpc://) but TLS options were given "
                                 f"({tls.describe()}); write grpcs:// for TLS")
    return tls


class _Bearer:
    """A ``tritonclient`` plugin that adds a token's headers to every call."""

    def __init__(self, token: BearerToken):
        self._headers = token.headers()

    def __call__(self, request) -> None:
        request.headers.update(self._headers)

    def __repr__(self) -> str:
        return "_Bearer(<hidden>)"


def open_client(address: str, *, tls: TlsConfig | None = None, token: BearerToken | None = None):
    """A ``tritonclient.grpc.InferenceServerClient`` for ``address`` (``HOST:PORT``), over TLS when
    ``tls`` is given, adding ``token`` to every call when given. Connects lazily."""
    import tritonclient.grpc as grpcclient

    if tls is None:
        client = grpcclient.InferenceServerClient(address)
    else:
        tls.check_files()
        client = grpcclient.InferenceServerClient(address, ssl=True, root_certificates=tls.ca, private_key=tls.key,
                                                  certificate_chain=tls.cert)
    if token is not None:
        client.register_plugin(_Bearer(token))
    return client


def _status(error: BaseException) -> str:
    status = getattr(error, "status", None)
    status = status() if callable(status) else status
    return str(status or "").rsplit(".", 1)[-1]


def security_failure(error: BaseException, address: str, *, tls: TlsConfig | None,
                     token: BearerToken | None) -> str | None:
    """One line saying why ``error`` (a failed call to ``address``) is a TLS or token mismatch, or None.

    A plaintext client whose connection the server closes, or a TLS client the server drops after
    the handshake, is checked with one TLS handshake of this process's own (:func:`_tls_answer`):
    that tells a TLS server from a plaintext one and a server that wants a client certificate.
    """
    status, text = _status(error), " ".join(str(error).split())
    lowered = text.lower()
    who = f"Triton server {address}"
    if status in _DENIED_STATUS or _TRITON_RESTRICTED in lowered:
        why = f"{status}: {_denial_reason(text, token)}" if status in _DENIED_STATUS else status
        if token is None:
            return (f"{who} refused the call without a token ({why}): give --token-file FILE or set "
                    f"${TOKEN_ENV}")
        return f"{who} rejected the token from {token.source} ({why}): check the token (not retried)"
    if status != "UNAVAILABLE":
        return None
    if tls is not None and "handshake failed" in lowered:
        if "wrong_version_number" in lowered or "wrong version number" in lowered:
            return (f"{who} does not speak TLS (plaintext server behind grpcs://): its TLS handshake failed; "
                    "write grpc:// only if plaintext is intended")
        return (f"{who}: TLS handshake failed, the server's certificate is not trusted by {tls.describe()} "
                f"(--tls-ca): {text[text.lower().find('handshake failed'):][:160]}")
    # Triton closes the connection; Envoy (BoringSSL) answers with an alert that gRPC reports as
    # "Unwrap failed (TSI_DATA_CORRUPTED)".
    if any(sign in lowered for sign in ("socket closed", "connection reset", "tsi_data_corrupted")):
        answer = _tls_answer(address)
        if tls is None and answer in ("tls", "client certificate required"):
            return f"{who} speaks TLS but the URL asks for plaintext (grpc://): write grpcs:// (with --tls-ca FILE)"
        if tls is not None and tls.cert is None and answer == "client certificate required":
            return f"{who} requires a client certificate (mutual TLS): give --tls-cert FILE and --tls-key FILE"
        if tls is not None and tls.cert is not None and answer == "client certificate required" \
                and _tls_answer(address, cert=tls.cert, key=tls.key) == "client certificate required":
            return (f"{who} refused the client certificate {tls.cert} (mutual TLS): it is not signed by a CA "
                    "the server trusts, or it has expired (--tls-cert, --tls-key)")
    return None


def _denial_reason(text: str, token: BearerToken | None, max_chars: int = 100) -> str:
    """The server's (or proxy's) own words for a refusal, such as Envoy's ``Jwt is expired`` or
    ``Audiences in Jwt are not allowed``, without the gRPC status prefix and never holding the token."""
    reason = text.split("] ", 1)[-1] if text.startswith("[") else text
    if token is not None:
        reason = reason.replace(token.value, "<token>")
    return reason[:max_chars].rstrip() or "no reason given"


def _tls_answer(address: str, timeout_s: float = 3.0, *, cert: str | None = None, key: str | None = None) -> str:
    """What ``address`` does with a TLS handshake that trusts anything, offering the client certificate
    ``cert`` (with ``key``) or none: ``"tls"``, ``"client certificate required"`` (none, or not that
    one), ``"plaintext"`` (no TLS handshake) or ``"unreachable"``."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    if cert is not None:
        context.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host.strip("[]")) as wrapped:
                try:  # TLS 1.3: a missing client certificate is refused after the handshake, at the first read
                    wrapped.settimeout(timeout_s)
                    wrapped.sendall(_HTTP2_PREFACE)
                    if not wrapped.recv(1):  # closed right after the handshake: no client certificate was given
                        return "client certificate required"
                except ssl.SSLError as err:
                    if any(sign in str(err).lower() for sign in _CERTIFICATE_REFUSED):
                        return "client certificate required"
                except (TimeoutError, OSError):
                    pass
                return "tls"
    except ssl.SSLError as err:
        # TLS 1.2, or a server that checks the certificate during the handshake: refused there.
        if cert is not None and any(sign in str(err).lower() for sign in _CERTIFICATE_REFUSED):
            return "client certificate required"
        return "plaintext"
    except OSError:
        return "unreachable"
