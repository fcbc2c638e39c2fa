"""Data model of the OAuth2 test server: clients, settings, records, errors, JWT checks.

Shared by :mod:`.oauth_grants` (the state and grant logic) and :mod:`.oauth_server` (HTTP).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "CLIENTS",
    "CONFIDENTIAL_CLIENT_ID",
    "CONFIDENTIAL_CLIENT_SECRET",
    "DEFAULT_SCOPE",
    "DEFAULT_USERS",
    "DEVICE_CODE_GRANT",
    "DOVECOT_CLIENT_ID",
    "DOVECOT_CLIENT_SECRET",
    "ENDPOINTS",
    "JWT_BEARER_GRANT",
    "PUBLIC_CLIENT_ID",
    "AccessRecord",
    "Client",
    "CodeRecord",
    "DeviceRecord",
    "Fault",
    "FaultResponse",
    "OAuthError",
    "RefreshRecord",
    "Settings",
    "invalid_client",
    "is_loopback_redirect",
    "new_token",
    "verify_assertion",
]

CONFIDENTIAL_CLIENT_ID = "test-client"
CONFIDENTIAL_CLIENT_SECRET = "test-secret"
PUBLIC_CLIENT_ID = "public-client"
DOVECOT_CLIENT_ID = "dovecot"
DOVECOT_CLIENT_SECRET = "dovecot-secret"
DEFAULT_USERS = ("alice@example.test", "bob@example.test")
# Dovecot's passdb is configured with `scope = mail`: a token must carry it to log in.
DEFAULT_SCOPE = "mail"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# Endpoints a test can delay or make fail (the keys of the call counters too).
ENDPOINTS = ("token", "authorize", "device_authorization", "introspect", "revoke")

# Clock skew tolerated on JWT assertions; Google allows a few minutes, this is enough for tests.
_JWT_LEEWAY = 30.0
# Google rejects assertions valid for more than an hour; a client must not rely on more.
_JWT_MAX_LIFETIME = 3600


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response: ``{"error": ..., "error_description": ...}``."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2: 401 plus a challenge for the scheme the client may use.
    return OAuthError(
        "invalid_client",
        description,
        status=401,
        headers={"WWW-Authenticate": 'Basic realm="trio-mailoauth-test"'},
    )


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str | None  # None: public client (RFC 6749 §2.1), must use PKCE
    grants: frozenset[str]


_ALL_USER_GRANTS = frozenset({"refresh_token", "authorization_code", DEVICE_CODE_GRANT})
CLIENTS: dict[str, Client] = {
    CONFIDENTIAL_CLIENT_ID: Client(
        CONFIDENTIAL_CLIENT_ID,
        CONFIDENTIAL_CLIENT_SECRET,
        _ALL_USER_GRANTS | {"client_credentials", JWT_BEARER_GRANT},
    ),
    PUBLIC_CLIENT_ID: Client(PUBLIC_CLIENT_ID, None, _ALL_USER_GRANTS),
    # Dovecot only introspects; it may not obtain tokens.
    DOVECOT_CLIENT_ID: Client(DOVECOT_CLIENT_ID, DOVECOT_CLIENT_SECRET, frozenset()),
}


@dataclass
class Settings:
    """Server-wide knobs a test changes through ``/_test/configure`` (reset restores these)."""

    rotation: bool = False  # every refresh returns a new refresh token, the old one dies
    revoke_family_on_reuse: bool = False  # reuse of a rotated-out token kills the whole family
    expires_in: int = 3600
    token_size: int | None = None  # pad access tokens to this many characters
    device_interval: int = 5
    device_expires_in: int = 600
    slow_down_increment: int = 5  # RFC 8628 §3.5; tests set 0 to keep polling fast
    code_lifetime: int = 600


@dataclass
class AccessRecord:
    user: str | None  # None: app-only client_credentials token bound to no mailbox
    client_id: str
    scope: str
    issued_at: float
    expires_at: float
    family: str | None  # the grant it came from, so revoking that grant revokes this token
    revoked: bool = False


@dataclass
class RefreshRecord:
    user: str
    client_id: str
    scope: str
    family: str
    rotated: bool = False
    revoked: bool = False
    expired: bool = False


@dataclass
class CodeRecord:
    client_id: str
    redirect_uri: str
    challenge: str | None
    user: str
    scope: str
    expires_at: float
    family: str = field(default_factory=lambda: secrets.token_hex(8))
    used: bool = False


@dataclass
class DeviceRecord:
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: int
    last_poll: float | None = None
    user: str | None = None
    denied: bool = False
    used: bool = False


@dataclass
class Fault:
    remaining: int
    status: int
    error: str
    description: str
    retry_after: str | None
    body: str | None


@dataclass(frozen=True)
class FaultResponse:
    """What the HTTP layer sends instead of the real answer (see ``fail_next``)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


def new_token(size: int | None = None) -> str:
    """An opaque URL-safe token; ``size`` pads it (Entra JWTs are 1.5-2.5 KB)."""
    length = 43 if size is None else size
    return secrets.token_urlsafe(length)[:length]


def _b64url_decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise OAuthError("invalid_grant", "assertion is not valid base64url") from exc


def is_loopback_redirect(uri: str) -> bool:
    # RFC 8252 §7.3: native apps redirect to a loopback address on any port.
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in {"127.0.0.1", "localhost", "::1"}
        and (not parts.fragment)
    )


def verify_assertion(
    assertion: str, keys: Mapping[str, RSAPublicKey], audiences: Collection[str], now: float
) -> dict[str, Any]:
    """Check an RS256 JWT bearer assertion (RFC 7523 §3); its claims, or invalid_grant."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError("invalid_grant", "assertion is not a compact JWS")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_grant", "assertion is not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OAuthError("invalid_grant", "assertion is not a JSON object")
    if header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "only RS256 assertions are accepted")
    key = keys.get(str(claims.get("iss")))
    if key is None:
        raise OAuthError("invalid_grant", "unknown issuer (service account)")
    try:
        key.verify(
            _b64url_decode(parts[2]),
            f"{parts[0]}.{parts[1]}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise OAuthError("invalid_grant", "invalid assertion signature") from exc
    if claims.get("aud") not in audiences:
        raise OAuthError("invalid_grant", "aud must be the token endpoint URL")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise OAuthError("invalid_grant", "exp and iat are required numbers")
    if exp <= now - _JWT_LEEWAY:
        raise OAuthError("invalid_grant", "assertion has expired")
    if iat > now + _JWT_LEEWAY or exp - iat > _JWT_MAX_LIFETIME:
        raise OAuthError("invalid_grant", "iat in the future or assertion valid over 1 h")
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise OAuthError("invalid_scope", "the assertion must carry a scope claim")
    return claims
