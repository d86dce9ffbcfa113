"""The files an Envoy front door reads, made here: the test PKI of ``tests/infer/certificates.py``
and a JWKS, and shipped configurations pointed at them so that ``envoy --mode validate`` can read them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from jwt_tokens import SigningKey

from coffea_lorentz.envoy import EnvoyConfig, JwtAuth, ListenerTls, RateLimit, Upstream

#: Where the shipped configurations (compose, Kubernetes) expect the mounted files.
MOUNTED = {"cert": "/etc/envoy/tls/tls.crt", "key": "/etc/envoy/tls/tls.key", "jwks": "/etc/envoy/jwks/jwks.json"}


def _load_certificates():
    path = Path(__file__).resolve().parents[1] / "infer" / "certificates.py"
    spec = importlib.util.spec_from_file_location("_test_certificates", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.make_certificates


make_certificates = _load_certificates()


def with_local_files(text: str, folder: Path) -> str:
    """``text`` with the mounted certificate, key and JWKS paths replaced by files made in ``folder``."""
    if not any(path in text for path in MOUNTED.values()):
        return text
    pki = make_certificates(folder / "pki")
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps(SigningKey("k").jwks()))
    for name, local in (("cert", pki.server_cert), ("key", pki.server_key), ("jwks", jwks)):
        text = text.replace(MOUNTED[name], str(local))
    return text


def shipped_front_door(host: str) -> tuple[EnvoyConfig, list[str]]:
    """The front door both shipped deployments render (compose: ``host="triton"``, Kubernetes:
    ``"triton-headless"``): strict-DNS upstream ``host:8001`` behind a TLS listener checking JWTs,
    rate-limited, with the files as mounted under /etc/envoy; and the ``python -m coffea_lorentz.envoy``
    arguments (without ``--output``) that render it."""
    config = EnvoyConfig(
        upstreams=(Upstream(host=host),), discovery="strict_dns",
        tls=ListenerTls(cert=MOUNTED["cert"], key=MOUNTED["key"]),
        jwt=JwtAuth(issuer="https://issuer.example", audiences=("triton",), jwks_file=MOUNTED["jwks"]),
        rate_limit=RateLimit(max_tokens=2000, tokens_per_fill=100, fill_interval_ms=100),
    )
    arguments = (f"--discovery strict_dns {host}:8001 --tls-cert {MOUNTED['cert']} --tls-key {MOUNTED['key']} "
                 f"--jwt-issuer https://issuer.example --jwt-audience triton --jwks-file {MOUNTED['jwks']} "
                 "--rate-limit-max-tokens 2000 --rate-limit-tokens-per-fill 100 --rate-limit-fill-interval-ms 100")
    return config, arguments.split()
