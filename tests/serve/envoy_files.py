"""The files an Envoy front door reads, made here: the test PKI of ``tests/infer/certificates.py``
and a JWKS, and shipped configurations pointed at them so that ``envoy --mode validate`` can read them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from jwt_tokens import SigningKey

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
