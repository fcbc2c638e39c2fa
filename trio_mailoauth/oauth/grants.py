"""OAuth2 grants as pure functions: build a token request, parse the answer. No I/O here.

The providers (:mod:`.refresh`) and flows (:mod:`.flows`) do the HTTP; everything a token
endpoint can say is decided here, so it is tested by hand with byte-exact inputs:

- :func:`parse_token_response` turns (status, headers, body) into a :class:`TokenResponse` or
  raises the typed error of :func:`classify_error`;
- :func:`parse_retry_after` reads ``Retry-After`` (seconds or an HTTP date);
- PKCE (RFC 7636 S256), the authorization URL and the loopback redirect's query (RFC 8252).

Secrets (refresh tokens, codes, client secrets, assertions) live in :class:`TokenRequest`'s
form, which is never shown by its repr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from trio_mailoauth.errors import (
    InteractionRequiredError,
    InvalidGrantError,
    OAuth2ClientError,
    OAuth2Error,
    TemporaryOAuth2Error,
)
from trio_mailoauth.oauth.tokens import AccessToken

__all__ = [
    "DEVICE_CODE_GRANT",
    "JWT_BEARER_GRANT",
    "DeviceAuthorization",
    "Endpoint",
    "MailServer",
    "TokenRequest",
    "TokenResponse",
    "authorization_code_request",
    "authorization_url",
    "classify_error",
    "client_credentials_request",
    "decode_json_object",
    "device_authorization_request",
    "device_token_request",
    "jwt_bearer_request",
    "make_pkce",
    "parse_device_authorization",
    "parse_redirect",
    "parse_retry_after",
    "parse_token_response",
    "refresh_request",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# A token endpoint's answer is a few KB (Entra access tokens are ~2.5 KB); a body larger than
# this is not a token response, and it is never parsed or kept.
MAX_RESPONSE_BYTES = 256 * 1024
# Error descriptions end up in exception messages and logs: keep them readable.
_MAX_DESCRIPTION = 500
# A Retry-After beyond an hour is a misconfigured proxy; waiting longer helps nobody.
_MAX_RETRY_AFTER = 3600.0

# Microsoft's AADSTS codes that mean "a human must sign in with MFA / consent again".
_INTERACTION_CODES = ("AADSTS50076", "AADSTS50079", "AADSTS65001", "AADSTS50158")
# AADSTS50196: "client request loop" -- throttled for repeating identical requests.
_THROTTLE_CODES = ("AADSTS50196",)
_INTERACTION_ERRORS = frozenset({"interaction_required", "consent_required", "login_required"})
_CLIENT_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
    }
)
_TEMPORARY_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


@dataclass(frozen=True)
class MailServer:
    """Where a provider's mail service listens (``tls`` as ``open_imap`` takes it)."""

    host: str
    port: int
    tls: Literal["implicit", "starttls"] = "implicit"


@dataclass(frozen=True)
class Endpoint:
    """Everything a provider needs to know about one authorization server and client app.

    Built by the presets in :mod:`trio_mailoauth.oauth.providers`. ``client_auth`` says how a
    confidential client sends its secret (``"basic"``: HTTP Basic, ``"post"``: in the form).
    ``authorization_params`` are added to the authorization URL (Google:
    ``access_type=offline``). ``mechanism`` and ``imap``/``smtp``/``pop3`` say how to use the
    tokens with the provider's mail servers.
    """

    token_url: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()
    authorization_url: str | None = None
    device_authorization_url: str | None = None
    client_auth: Literal["basic", "post"] = "post"
    authorization_params: Mapping[str, str] = field(default_factory=dict)
    mechanism: Literal["XOAUTH2", "OAUTHBEARER"] = "XOAUTH2"
    imap: MailServer | None = None
    smtp: MailServer | None = None
    pop3: MailServer | None = None
    name: str = "generic"

    def scope_string(self, scopes: tuple[str, ...] | None = None) -> str:
        # RFC 6749 §3.3: space-separated (Microsoft insists; Google accepts it too).
        return " ".join(self.scopes if scopes is None else scopes)


@dataclass(frozen=True)
class TokenRequest:
    """One POST to a token-like endpoint. ``form`` and ``basic_auth`` hold secrets: no repr."""

    url: str
    form: Mapping[str, str] = field(repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    grant: str = ""


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response: the access token, and a new refresh token if any."""

    access_token: AccessToken
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DeviceAuthorization:
    """RFC 8628 §3.2: what to show the user, and how often to poll."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


# --- request builders -------------------------------------------------------------------------


def _with_client(
    endpoint: Endpoint, form: dict[str, str], grant: str, url: str | None = None
) -> TokenRequest:
    basic = None
    if endpoint.client_secret is not None and endpoint.client_auth == "basic":
        basic = (endpoint.client_id, endpoint.client_secret)
    else:
        form["client_id"] = endpoint.client_id
        if endpoint.client_secret is not None:
            form["client_secret"] = endpoint.client_secret
    return TokenRequest(url or endpoint.token_url, form, basic, grant)


def refresh_request(
    endpoint: Endpoint, refresh_token: str, scopes: tuple[str, ...] | None = None
) -> TokenRequest:
    """RFC 6749 §6. Scopes are sent (Microsoft needs them; others accept a subset)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    scope = endpoint.scope_string(scopes)
    if scope:
        form["scope"] = scope
    return _with_client(endpoint, form, "refresh_token")


def client_credentials_request(
    endpoint: Endpoint,
    scopes: tuple[str, ...] | None = None,
    extra: Mapping[str, str] | None = None,
) -> TokenRequest:
    """RFC 6749 §4.4 (Microsoft app-only: scope ``https://outlook.office365.com/.default``)."""
    form = {"grant_type": "client_credentials", **(extra or {})}
    scope = endpoint.scope_string(scopes)
    if scope:
        form["scope"] = scope
    return _with_client(endpoint, form, "client_credentials")


def authorization_code_request(
    endpoint: Endpoint, code: str, redirect_uri: str, code_verifier: str | None
) -> TokenRequest:
    """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return _with_client(endpoint, form, "authorization_code")


def device_authorization_request(endpoint: Endpoint) -> TokenRequest:
    """RFC 8628 §3.1."""
    if endpoint.device_authorization_url is None:
        raise ValueError(f"{endpoint.name} has no device authorization endpoint")
    form: dict[str, str] = {}
    scope = endpoint.scope_string()
    if scope:
        form["scope"] = scope
    return _with_client(endpoint, form, "device_authorization", endpoint.device_authorization_url)


def device_token_request(endpoint: Endpoint, device_code: str) -> TokenRequest:
    """RFC 8628 §3.4."""
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code}
    return _with_client(endpoint, form, DEVICE_CODE_GRANT)


def jwt_bearer_request(token_url: str, assertion: str) -> TokenRequest:
    """RFC 7523 §2.1 (Google service accounts: no client authentication)."""
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
    return TokenRequest(token_url, form, None, JWT_BEARER_GRANT)


# --- response parsers -------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now`` (RFC 9110 §10.2.3: delay-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+", value):
        return min(float(value), _MAX_RETRY_AFTER)  # float(): no digit limit; huge -> inf
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP-date is always GMT; a date without a zone is garbage
    return min(max(0.0, when.timestamp() - now), _MAX_RETRY_AFTER)


def decode_json_object(body: bytes) -> dict[str, object] | None:
    """``body`` as a JSON object, or None: too big (over MAX_RESPONSE_BYTES), not UTF-8, not
    JSON, or JSON but not an object. Token endpoints and discovery documents both answer
    with one object; anything else is treated as no answer by the callers."""
    if len(body) > MAX_RESPONSE_BYTES:
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _description(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    text = "".join(c if c.isprintable() else " " for c in value)
    return text[:_MAX_DESCRIPTION]


def classify_error(
    status: int, body: Mapping[str, object] | None, retry_after: float | None = None
) -> OAuth2Error:
    """The typed error for a failed token request (never raises; the caller raises it)."""
    error = body.get("error") if body is not None else None
    code = error if isinstance(error, str) and error else f"http_{status}"
    description = _description(body.get("error_description")) if body is not None else None
    text = description or ""
    if status == 429 or status >= 500 or code in _TEMPORARY_ERRORS:
        return TemporaryOAuth2Error(code, description, retry_after=retry_after)
    if any(c in text for c in _THROTTLE_CODES):
        return TemporaryOAuth2Error(code, description, retry_after=retry_after)
    if code in _INTERACTION_ERRORS or any(c in text for c in _INTERACTION_CODES):
        return InteractionRequiredError(code, description)
    if code == "invalid_grant":
        return InvalidGrantError(code, description)
    if code in _CLIENT_ERRORS:
        return OAuth2ClientError(code, description)
    return OAuth2Error(code, description)


def _number(value: object) -> float | None:
    """A non-negative finite number of seconds, or None. Python's json accepts NaN and
    Infinity: a NaN expiry would never compare as due, so a refresh would run on every call."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{1,10}", value):
        return float(value)  # Microsoft's v1 endpoint sends numbers as strings
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def parse_token_response(
    status: int, headers: Mapping[str, str], body: bytes, *, started: float
) -> TokenResponse:
    """A token endpoint's answer; ``started`` is when the request began (POSIX time).

    Raises the error :func:`classify_error` picks. A 200 whose body is not a token response
    (a proxy's HTML page) is temporary: nothing proves the refresh token is bad.
    """
    retry_after = parse_retry_after(headers.get("retry-after"), started)
    data = decode_json_object(body)
    if status != 200:
        return_error = classify_error(status, data, retry_after)
        raise return_error
    if data is None:
        raise TemporaryOAuth2Error("invalid_response", "the token response is not a JSON object")
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise TemporaryOAuth2Error("invalid_response", "the token response has no access_token")
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuth2Error("unsupported_token_type", "only Bearer tokens can be used for mail")
    expires_in = _number(data.get("expires_in"))
    refresh_in = _number(data.get("refresh_in"))
    scope = data.get("scope")
    refresh = data.get("refresh_token")
    id_token = data.get("id_token")
    try:
        token = AccessToken(
            access,
            expires_at=started + expires_in if expires_in is not None else None,
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            obtained_at=started,
            refresh_on=started + refresh_in if refresh_in is not None else None,
        )
    except ValueError as exc:
        raise OAuth2Error("invalid_response", "the access token has forbidden characters") from exc
    return TokenResponse(
        token,
        refresh if isinstance(refresh, str) and refresh else None,
        id_token if isinstance(id_token, str) else None,
    )


def parse_device_authorization(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float
) -> DeviceAuthorization:
    """RFC 8628 §3.2; ``interval`` defaults to 5 s."""
    data = decode_json_object(body)
    if status != 200:
        raise classify_error(status, data, parse_retry_after(headers.get("retry-after"), now))
    if data is None:
        raise TemporaryOAuth2Error("invalid_response", "the device response is not JSON")
    device_code, user_code = data.get("device_code"), data.get("user_code")
    uri = data.get("verification_uri", data.get("verification_url"))  # Google says _url
    if not all(isinstance(v, str) and v for v in (device_code, user_code, uri)):
        raise OAuth2Error("invalid_response", "the device response lacks a code or a URI")
    assert isinstance(device_code, str)
    assert isinstance(user_code, str)
    assert isinstance(uri, str)
    complete = data.get("verification_uri_complete")
    interval = _number(data.get("interval"))
    return DeviceAuthorization(
        device_code,
        user_code,
        uri,
        complete if isinstance(complete, str) else None,
        _number(data.get("expires_in")) or 1800.0,
        5.0 if interval is None else interval,  # RFC 8628 §3.2: default 5 s
    )


# --- authorization code + PKCE (RFC 7636, RFC 8252) -------------------------------------------


def make_pkce() -> tuple[str, str]:
    """A fresh ``(code_verifier, code_challenge)`` pair for S256."""
    verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    endpoint: Endpoint,
    *,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    login_hint: str | None = None,
) -> str:
    """The URL the user opens to log in and consent."""
    if endpoint.authorization_url is None:
        raise ValueError(f"{endpoint.name} has no authorization endpoint")
    params = {
        "response_type": "code",
        "client_id": endpoint.client_id,
        "redirect_uri": redirect_uri,
        "scope": endpoint.scope_string(),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        **endpoint.authorization_params,
    }
    if login_hint:
        params["login_hint"] = login_hint
    separator = "&" if "?" in endpoint.authorization_url else "?"
    return f"{endpoint.authorization_url}{separator}{urlencode(params)}"


def parse_redirect(query: str, expected_state: str) -> str:
    """The code from the redirect's query string; raises OAuth2Error on error or bad state."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    # compare_digest refuses non-ASCII str (TypeError): compare the UTF-8 bytes.
    received = params.get("state", "").encode("utf-8", "surrogatepass")
    if not secrets.compare_digest(received, expected_state.encode("utf-8", "surrogatepass")):
        # RFC 6749 §10.12: a redirect without our state is a CSRF attempt, not a login.
        raise OAuth2Error("invalid_state", "the redirect's state does not match the request")
    if "error" in params:
        raise classify_error(400, dict(params))
    code = params.get("code")
    if not code:
        raise OAuth2Error("invalid_request", "the redirect carries no code")
    return code
