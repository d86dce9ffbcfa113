"""Triton server addresses: ``grpc://HOST:PORT``, ``grpcs://HOST:PORT`` or ``HOST:PORT``, one or a comma-separated list.

These functions give the ``HOST:PORT`` a gRPC channel is opened on; the scheme decides TLS
(``grpcs://`` always means TLS), which :func:`coffea_lorentz.infer.security.resolve_tls` reads
from the URL as given — keep the URL, not only its address, wherever TLS matters.
"""

from __future__ import annotations

from ..errors import ServerError

__all__ = ["normalise_url", "split_urls"]


def normalise_url(url: str) -> str:
    """``grpc://HOST:PORT``, ``grpcs://HOST:PORT`` or ``HOST:PORT`` → ``HOST:PORT`` (the scheme's
    TLS: :func:`~coffea_lorentz.infer.security.resolve_tls`); :class:`ServerError` for anything else."""
    address = url
    for prefix in ("grpc://", "grpcs://"):
        if address.startswith(prefix):
            address = address[len(prefix) :]
            break
    else:
        if "://" in address:
            raise ServerError(f"unsupported server URL {url!r}: expected grpc://HOST:PORT or grpcs://HOST:PORT (TLS)")
    host, _, port = address.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServerError(f"malformed server URL {url!r}: expected grpc://HOST:PORT with a port in [1, 65535]")
    return f"{host}:{port}"


def split_urls(url: str) -> tuple[str, ...]:
    """A comma-separated list of server URLs → their ``HOST:PORT`` forms, in order, without repeats;
    :class:`ServerError` for an empty list or a malformed URL (named)."""
    addresses: list[str] = []
    for part in url.split(","):
        if part.strip():
            address = normalise_url(part.strip())
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise ServerError(f"no server URL in {url!r}: expected grpc://HOST:PORT[,grpc://HOST:PORT...]")
    return tuple(addresses)
