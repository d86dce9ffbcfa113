"""JSON Web Tokens signed on the spot (RS256, with the ``cryptography`` package), and their JWKS.

A JWT is ``base64url(header) . base64url(claims) . base64url(signature)``, the signature an RSA
PKCS#1 v1.5 SHA-256 signature of the first two parts (RFC 7515, 7518, 7519); the JWKS carries the
public key's modulus ``n`` and exponent ``e`` as unpadded base64url big-endian integers (RFC 7517).
"""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: dict) -> str:
    return _b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def _b64url_int(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA key pair that signs JWTs (RS256) and publishes its public half as a JWKS."""

    def __init__(self, kid: str):
        self.kid = kid
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        """``{"keys": [the public key]}``."""
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                          "n": _b64url_int(numbers.n), "e": _b64url_int(numbers.e)}]}

    def token(self, *, issuer: str, audience: str, lifetime_s: float = 3600.0, **claims) -> str:
        """A signed JWT for ``audience`` from ``issuer``, valid from now for ``lifetime_s`` seconds
        (negative: expired that long ago)."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {"iss": issuer, "aud": audience, "sub": "analysis", "iat": now - 10,
                   "exp": now + int(lifetime_s), **claims}
        signing_input = f"{_b64url_json(header)}.{_b64url_json(payload)}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"
