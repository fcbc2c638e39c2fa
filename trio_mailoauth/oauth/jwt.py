"""RS256 JWT assertions for the JWT bearer grant (RFC 7523), e.g. Google service accounts.

Signing needs ``cryptography`` (the ``crypto`` extra, ``pip install 'trio_mailoauth[crypto]'``);
it is imported on first use so the rest of the library works without it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["load_rsa_private_key", "service_account_claims", "sign_rs256"]

# Google refuses assertions valid for more than an hour.
MAX_ASSERTION_LIFETIME = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:  # pragma: no cover - the test environment has it
        raise RuntimeError(
            "service-account (RS256) assertions need the 'cryptography' package: "
            "pip install 'trio_mailoauth[crypto]'"
        ) from exc
    return hashes, serialization, padding, rsa


def load_rsa_private_key(pem: str | bytes) -> Any:
    """Parse a PEM private key (PKCS#8 or PKCS#1, unencrypted) and check it is RSA."""
    _hashes, serialization, _padding, rsa = _crypto()
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The message of cryptography's error could quote parts of the key: drop it.
        raise ValueError("the private key is not an unencrypted PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("RS256 needs an RSA private key")
    return key


def service_account_claims(
    *,
    issuer: str,
    subject: str | None,
    scopes: tuple[str, ...],
    audience: str,
    now: float,
    lifetime: int = MAX_ASSERTION_LIFETIME,
) -> dict[str, Any]:
    """Google's claim set: ``iss`` the service account, ``sub`` the mailbox it acts for."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "scope": " ".join(scopes),
        "aud": audience,
        "iat": int(now),
        "exp": int(now) + min(lifetime, MAX_ASSERTION_LIFETIME),
    }
    if subject is not None:
        claims["sub"] = subject
    return claims


def sign_rs256(claims: Mapping[str, Any], private_key: Any, *, key_id: str | None = None) -> str:
    """A compact JWS (``header.claims.signature``) signed with RSASSA-PKCS1-v1_5 + SHA-256."""
    hashes, _serialization, padding, _rsa = _crypto()
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if key_id is not None:
        header["kid"] = key_id
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"
