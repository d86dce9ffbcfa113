"""A certificate authority, a server certificate and a client certificate made on the spot (PEM files).

The server certificate names ``127.0.0.1`` and ``localhost`` (subject alternative names), so a client
that checks host names accepts it on loopback; both leaf certificates are signed by the CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, kw_only=True)
class Certificates:
    """PEM files of one test PKI.

    Attributes:
        ca: the CA certificate (the client's ``--tls-ca``, the server's ``--grpc-root-cert``).
        server_cert, server_key: the server's certificate (SAN 127.0.0.1, localhost) and key.
        client_cert, client_key: a client certificate and key for mutual TLS.
    """

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _signed(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(directory: Path, *, ca_name: str = "coffea-lorentz test CA") -> Certificates:
    """A new CA, a server certificate for loopback and a client certificate, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _signed(ca_name, ca_key, _name(ca_name), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _signed("localhost", server_key, ca_cert.subject, ca_key, ca=False, server=True)
    client_cert = _signed("client", client_key, ca_cert.subject, ca_key, ca=False)
    paths = {}
    for name, cert in (("ca", ca_cert), ("server_cert", server_cert), ("client_cert", client_cert)):
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Certificates(server_key=_write_key(server_key, directory / "server_key.pem"),
                        client_key=_write_key(client_key, directory / "client_key.pem"), **paths)
