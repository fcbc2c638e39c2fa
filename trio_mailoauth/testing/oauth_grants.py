"""State and grant logic of the OAuth2 test server; no HTTP in here.

:mod:`trio_mailoauth.testing.oauth_server` parses requests and calls :class:`OAuthState`; every
method takes plain mappings, returns the JSON body as a dict and raises :class:`OAuthError` for an
RFC 6749 error response. One lock guards all state: the server is threaded, and a test control
(revoke, expire) must never interleave with a half-done grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from trio_mailoauth.testing.oauth_model import (
    CLIENTS,
    CONFIDENTIAL_CLIENT_ID,
    DEFAULT_SCOPE,
    DEVICE_CODE_GRANT,
    ENDPOINTS,
    JWT_BEARER_GRANT,
    AccessRecord,
    Client,
    CodeRecord,
    DeviceRecord,
    Fault,
    FaultResponse,
    OAuthError,
    RefreshRecord,
    Settings,
    invalid_client,
    is_loopback_redirect,
    new_token,
    verify_assertion,
)

__all__ = ["OAuthState"]

# RFC 8628 §3.5 says polls must be `interval` apart; this slack absorbs scheduler jitter so a
# client that sleeps exactly `interval` is never told to slow down.
_POLL_SLACK = 0.1
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes


def _scopes(scope: str) -> set[str]:
    return set(scope.split())


class OAuthState:
    """All tokens, codes, faults and counters of one server process."""

    def __init__(self, users: Iterable[str], *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.users = frozenset(u.lower() for u in users)
        self._reset_locked()

    # --- bookkeeping --------------------------------------------------------------------------

    def _reset_locked(self) -> None:
        self.settings = Settings()
        self._access: dict[str, AccessRecord] = {}
        self._refresh: dict[str, RefreshRecord] = {}
        self._codes: dict[str, CodeRecord] = {}
        self._devices: dict[str, DeviceRecord] = {}  # by device_code
        self._service_accounts: dict[str, RSAPublicKey] = {}
        self._delays: dict[str, float] = {}
        self._faults: dict[str, Fault] = {}
        self._issued: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._introspections: Counter[str] = Counter()

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    def _check_user(self, user: object, error: str = "invalid_request") -> str:
        if not isinstance(user, str) or user.lower() not in self.users:
            raise OAuthError(error, "unknown user")
        return user.lower()

    def _issue(
        self,
        *,
        grant: str,
        user: str | None,
        client_id: str,
        scope: str,
        family: str | None,
        with_refresh: bool,
        expires_in: int | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        now = self._clock()
        lifetime = self.settings.expires_in if expires_in is None else expires_in
        token = new_token(size if size is not None else self.settings.token_size)
        self._access[token] = AccessRecord(user, client_id, scope, now, now + lifetime, family)
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if with_refresh:
            if user is None or family is None:
                raise AssertionError("refresh tokens are only issued for a user's grant")
            refresh = new_token()
            self._refresh[refresh] = RefreshRecord(user, client_id, scope, family)
            body["refresh_token"] = refresh
        self._issued[grant] += 1
        return body

    def _revoke_family(self, family: str) -> None:
        for access in self._access.values():
            if access.family == family:
                access.revoked = True
        for refresh in self._refresh.values():
            if refresh.family == family:
                refresh.revoked = True

    # --- client authentication ----------------------------------------------------------------

    def authenticate_client(
        self, basic: tuple[str, str] | None, form: Mapping[str, str], *, required: bool = True
    ) -> Client | None:
        """client_secret_basic, client_secret_post, or a public client's bare client_id."""
        # Dovecot 2.3 always sends `client_id=&client_secret=`, empty when not configured.
        form = {k: v for k, v in form.items() if v or k not in {"client_id", "client_secret"}}
        if basic is not None and "client_secret" in form:
            raise OAuthError("invalid_request", "more than one client authentication method")
        if basic is not None:
            client_id, secret = basic
            if form.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id does not match the credentials")
        elif "client_id" in form:
            client_id, secret = form["client_id"], form.get("client_secret", "")
        elif required:
            raise invalid_client("client authentication required")
        else:
            return None
        client = CLIENTS.get(client_id)
        if client is None:
            raise invalid_client("unknown client")
        if client.secret is None:
            if secret:
                raise invalid_client("public client must not send a secret")
        elif not hmac.compare_digest(secret.encode(), client.secret.encode()):
            raise invalid_client("client authentication failed")
        return client

    # --- /token -------------------------------------------------------------------------------

    def token(
        self, client: Client | None, form: Mapping[str, str], token_urls: Iterable[str]
    ) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        try:
            with self._lock:
                return self._token_locked(grant, client, form, token_urls)
        except OAuthError:
            with self._lock:
                self._failed[grant or "missing"] += 1
            raise

    def count_failure(self, grant: str) -> None:
        with self._lock:
            self._failed[grant or "missing"] += 1

    def _token_locked(
        self, grant: str, client: Client | None, form: Mapping[str, str], token_urls: Iterable[str]
    ) -> dict[str, Any]:
        if not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        handlers = {
            "refresh_token": self._grant_refresh,
            "client_credentials": self._grant_client_credentials,
            "authorization_code": self._grant_code,
            DEVICE_CODE_GRANT: self._grant_device,
        }
        if grant == JWT_BEARER_GRANT:
            # RFC 7523 §3.1: client authentication is optional for this grant (Google uses none).
            if client is not None and grant not in client.grants:
                raise OAuthError("unauthorized_client", "client may not use this grant")
            return self._grant_jwt(form, token_urls)
        if grant not in handlers:
            raise OAuthError("unsupported_grant_type", "unsupported grant_type")
        if client is None:
            raise invalid_client("client authentication required")
        if grant not in client.grants:
            raise OAuthError("unauthorized_client", "client may not use this grant")
        return handlers[grant](client, form)

    def _grant_refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        value = form.get("refresh_token", "")
        refresh = self._refresh.get(value)
        if refresh is None or refresh.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token")
        if refresh.rotated:
            if self.settings.revoke_family_on_reuse:
                self._revoke_family(refresh.family)
            raise OAuthError("invalid_grant", "refresh token was already used (rotated out)")
        if refresh.revoked:
            raise OAuthError("invalid_grant", "refresh token was revoked")
        if refresh.expired:
            raise OAuthError("invalid_grant", "refresh token has expired")
        scope = form.get("scope") or refresh.scope
        if not _scopes(scope) <= _scopes(refresh.scope):
            raise OAuthError("invalid_scope", "scope exceeds the originally granted scope")
        rotate = self.settings.rotation
        if rotate:
            refresh.rotated = True
        return self._issue(
            grant="refresh_token",
            user=refresh.user,
            client_id=client.client_id,
            scope=scope,
            family=refresh.family,
            with_refresh=rotate,
        )

    def _grant_client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        # `subject` is NOT RFC 6749: a test-only field that binds the app-only token to one
        # mailbox, the way an Exchange app-only token is usable for a mailbox it has rights on,
        # so Dovecot's introspection finds an email to log in as.
        subject = form.get("subject")
        user = self._check_user(subject) if subject is not None else None
        return self._issue(
            grant="client_credentials",
            user=user,
            client_id=client.client_id,
            scope=form.get("scope") or DEFAULT_SCOPE,
            family=None,
            with_refresh=False,  # RFC 6749 §4.4.3
        )

    def _grant_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            # RFC 6749 §4.1.2: a replayed code SHOULD revoke what it already produced.
            self._revoke_family(code.family)
            raise OAuthError("invalid_grant", "authorization code was already used")
        if self._clock() >= code.expires_at:
            raise OAuthError("invalid_grant", "authorization code has expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier")
        if code.challenge is None:
            if verifier is not None:  # RFC 9700 §2.1.1: stops a PKCE downgrade
                raise OAuthError("invalid_grant", "code_verifier sent but no code_challenge")
        else:
            if verifier is None:
                raise OAuthError("invalid_grant", "code_verifier is required")
            if not 43 <= len(verifier) <= 128:
                raise OAuthError("invalid_grant", "code_verifier must be 43-128 characters")
            digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not hmac.compare_digest(computed, code.challenge):
                raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
        code.used = True
        return self._issue(
            grant="authorization_code",
            user=code.user,
            client_id=client.client_id,
            scope=code.scope,
            family=code.family,
            with_refresh=True,
        )

    def _grant_device(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        device = self._devices.get(form.get("device_code", ""))
        if device is None or device.client_id != client.client_id or device.used:
            raise OAuthError("invalid_grant", "unknown device_code")
        now = self._clock()
        if now >= device.expires_at:
            raise OAuthError("expired_token", "the device_code has expired")
        if device.denied:
            raise OAuthError("access_denied", "the user denied the request")
        if device.user is None:
            last, device.last_poll = device.last_poll, now
            if last is not None and now - last < device.interval - _POLL_SLACK:
                device.interval += self.settings.slow_down_increment
                raise OAuthError("slow_down", f"poll at most every {device.interval} s")
            raise OAuthError("authorization_pending", "the user has not answered yet")
        device.used = True
        return self._issue(
            grant=DEVICE_CODE_GRANT,
            user=device.user,
            client_id=client.client_id,
            scope=device.scope,
            family=secrets.token_hex(8),
            with_refresh=True,
        )

    def _grant_jwt(self, form: Mapping[str, str], token_urls: Iterable[str]) -> dict[str, Any]:
        claims = verify_assertion(
            form.get("assertion", ""), self._service_accounts, set(token_urls), self._clock()
        )
        return self._issue(
            grant=JWT_BEARER_GRANT,
            user=self._check_user(claims.get("sub"), "invalid_grant"),
            client_id=str(claims["iss"]),
            scope=claims["scope"],
            family=None,
            with_refresh=False,  # Google service accounts get none: sign a new assertion
        )

    # --- /authorize ---------------------------------------------------------------------------

    def authorize(self, params: Mapping[str, str]) -> str:
        """The Location of the 302 answer; OAuthError (400, no redirect) for a bad client/URI."""
        client = CLIENTS.get(params.get("client_id", ""))
        if client is None or "authorization_code" not in client.grants:
            raise OAuthError("invalid_request", "unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if not is_loopback_redirect(redirect_uri):
            # RFC 6749 §4.1.2.1: never redirect to an unverified URI.
            raise OAuthError("invalid_request", "redirect_uri must be a loopback http URI")
        answer: dict[str, str] = {}
        try:
            with self._lock:
                answer["code"] = self._authorize_locked(client, params, redirect_uri)
        except OAuthError as exc:
            answer.update(exc.body())
        if "state" in params:
            answer["state"] = params["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(answer)}"

    def _authorize_locked(self, client: Client, params: Mapping[str, str], redirect: str) -> str:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain")
        if challenge is None and client.secret is None:
            raise OAuthError("invalid_request", "public clients must use PKCE (RFC 7636)")
        if challenge is not None and method != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        # No browser: login_hint names the user who "logs in and consents".
        hint = params.get("login_hint", "")
        if hint.lower() not in self.users:
            raise OAuthError("access_denied", "unknown user in login_hint")
        code = new_token(32)
        self._codes[code] = CodeRecord(
            client.client_id,
            redirect,
            challenge,
            hint.lower(),
            params.get("scope") or DEFAULT_SCOPE,
            self._clock() + self.settings.code_lifetime,
        )
        return code

    # --- /device_authorization, /introspect, /revoke ------------------------------------------

    def device_authorization(
        self, client: Client, form: Mapping[str, str], verification_uri: str
    ) -> dict[str, Any]:
        if DEVICE_CODE_GRANT not in client.grants:
            raise OAuthError("unauthorized_client", "client may not use the device flow")
        with self._lock:
            device_code = new_token()
            user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            user_code = f"{user_code[:4]}-{user_code[4:]}"
            lifetime = self.settings.device_expires_in
            self._devices[device_code] = DeviceRecord(
                user_code,
                client.client_id,
                form.get("scope") or DEFAULT_SCOPE,
                self._clock() + lifetime,
                self.settings.device_interval,
            )
            return {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
                "expires_in": lifetime,
                "interval": self.settings.device_interval,
            }

    def introspect(self, token: str) -> dict[str, Any]:
        # Only access tokens: Dovecot must not accept a refresh token as a bearer token, and a
        # client that sends one by mistake should see the rejection, not a silent success.
        with self._lock:
            access = self._access.get(token)
            now = self._clock()
            if access is None or access.revoked or access.expires_at <= now:
                self._introspections["inactive"] += 1
                # RFC 7662 §2.2 -- and Dovecot needs 200 here to send its 401-style challenge.
                return {"active": False}
            self._introspections["active"] += 1
            body: dict[str, Any] = {
                "active": True,
                "token_type": "Bearer",
                "client_id": access.client_id,
                "scope": access.scope,
                "iat": int(access.issued_at),
                "exp": int(access.expires_at),
                "sub": access.user or access.client_id,
            }
            if access.user is not None:
                body["email"] = access.user
                body["username"] = access.user
            return body

    def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: unknown tokens and other clients' tokens are ignored (still 200)."""
        with self._lock:
            access = self._access.get(token)
            if access is not None and access.client_id == client.client_id:
                access.revoked = True
            refresh = self._refresh.get(token)
            if refresh is not None and refresh.client_id == client.client_id:
                # RFC 7009 §2.1: revoking a refresh token SHOULD revoke its access tokens too.
                self._revoke_family(refresh.family)

    # --- faults and counters ------------------------------------------------------------------

    def count_call(self, endpoint: str) -> float:
        """Count one call and return the delay to apply to it."""
        with self._lock:
            self._calls[endpoint] += 1
            return self._delays.get(endpoint, 0.0)

    def take_fault(self, endpoint: str) -> FaultResponse | None:
        with self._lock:
            fault = self._faults.get(endpoint)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[endpoint]
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is not None:
            return FaultResponse(fault.status, fault.body.encode(), "text/plain", headers)
        body = {"error": fault.error, "error_description": fault.description}
        return FaultResponse(fault.status, json.dumps(body).encode(), "application/json", headers)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            return {
                "issued": dict(self._issued),
                "failed": dict(self._failed),
                "calls": dict(self._calls),
                "introspection": {
                    "active": self._introspections["active"],
                    "inactive": self._introspections["inactive"],
                    "total": self._introspections.total(),
                },
                "active_tokens": sum(
                    1 for t in self._access.values() if not t.revoked and t.expires_at > now
                ),
            }

    # --- test controls ------------------------------------------------------------------------

    def mint(self, req: Mapping[str, Any]) -> dict[str, Any]:
        user = self._check_user(req.get("user"))
        client_id = str(req.get("client_id", CONFIDENTIAL_CLIENT_ID))
        if client_id not in CLIENTS:
            raise OAuthError("invalid_request", "unknown client_id")
        size = req.get("size")
        if size is not None and (not isinstance(size, int) or size < 16):
            raise OAuthError("invalid_request", "size must be an integer >= 16")
        with self._lock:
            return self._issue(
                grant="minted",
                user=user,
                client_id=client_id,
                scope=str(req.get("scope", DEFAULT_SCOPE)),
                family=secrets.token_hex(8),
                with_refresh=bool(req.get("with_refresh_token", False)),
                expires_in=int(req.get("expires_in", self.settings.expires_in)),
                size=size,
            )

    def register_service_account(self, issuer: str, public_key_pem: str) -> None:
        try:
            key = load_pem_public_key(public_key_pem.encode())
        except ValueError as exc:
            raise OAuthError("invalid_request", "public_key is not a PEM public key") from exc
        if not isinstance(key, RSAPublicKey):
            raise OAuthError("invalid_request", "public_key must be an RSA key (RS256)")
        with self._lock:
            self._service_accounts[issuer] = key

    def answer_device(self, user_code: str, *, user: str | None, deny: bool, expire: bool) -> None:
        with self._lock:
            matches = [d for d in self._devices.values() if d.user_code == user_code]
            if not matches:
                raise OAuthError("invalid_request", "unknown user_code")
            device = matches[0]
            if expire:
                device.expires_at = self._clock() - 1
            elif deny:
                device.denied = True
            else:
                device.user = self._check_user(user)

    def expire(self, token: str | None, user: str | None) -> int:
        """Expire one token (access or refresh) or every access token of a user; the count."""
        if (token is None) == (user is None):
            raise OAuthError("invalid_request", "give exactly one of token, user")
        with self._lock:
            past = self._clock() - 1
            count = 0
            for value, access in self._access.items():
                if value == token or (user is not None and access.user == user.lower()):
                    access.expires_at = min(access.expires_at, past)
                    count += 1
            if token is not None and token in self._refresh:
                self._refresh[token].expired = True
                count += 1
            return count

    def revoke_user(self, user: str) -> int:
        user = self._check_user(user)
        with self._lock:
            count = 0
            for access in self._access.values():
                if access.user == user and not access.revoked:
                    access.revoked = True
                    count += 1
            for refresh in self._refresh.values():
                if refresh.user == user and not refresh.revoked:
                    refresh.revoked = True
                    count += 1
            self._codes = {k: c for k, c in self._codes.items() if c.user != user}
            return count

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        known = {f.name: f for f in fields(Settings)}
        unknown = set(changes) - set(known)
        if unknown:
            raise OAuthError("invalid_request", f"unknown settings: {sorted(unknown)}")
        for name, value in changes.items():
            nullable = name == "token_size"
            if isinstance(value, bool) != (known[name].type == "bool") or not (
                isinstance(value, int) or (nullable and value is None)
            ):
                raise OAuthError("invalid_request", f"bad value for {name}")
        with self._lock:
            self.settings = replace(self.settings, **changes)
            return {f: getattr(self.settings, f) for f in known}

    def set_delay(self, endpoint: str, seconds: float) -> None:
        self._check_endpoint(endpoint)
        with self._lock:
            if seconds > 0:
                self._delays[endpoint] = seconds
            else:
                self._delays.pop(endpoint, None)

    def set_fault(self, endpoint: str, req: Mapping[str, Any]) -> None:
        self._check_endpoint(endpoint)
        count = int(req.get("count", 1))
        retry_after = req.get("retry_after")
        body = req.get("body")
        fault = Fault(
            remaining=count,
            status=int(req.get("status", 503)),
            error=str(req.get("error", "temporarily_unavailable")),
            description=str(req.get("error_description", "injected by a test")),
            retry_after=None if retry_after is None else str(retry_after),
            body=None if body is None else str(body),
        )
        with self._lock:
            if count > 0:
                self._faults[endpoint] = fault
            else:
                self._faults.pop(endpoint, None)

    @staticmethod
    def _check_endpoint(endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise OAuthError("invalid_request", f"endpoint must be one of {ENDPOINTS}")
