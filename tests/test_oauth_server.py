"""The OAuth2 test server, end to end over real HTTP (its own process), plus a few state checks.

No Dovecot and no root needed: these use the ``standalone_oauth`` fixture.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trio_mailoauth.testing.oauth_grants import OAuthState
from trio_mailoauth.testing.oauth_model import OAuthError
from trio_mailoauth.testing.oauth_server import (
    CONFIDENTIAL_CLIENT_ID,
    CONFIDENTIAL_CLIENT_SECRET,
    DEVICE_CODE_GRANT,
    DOVECOT_CLIENT_ID,
    DOVECOT_CLIENT_SECRET,
    JWT_BEARER_GRANT,
    PUBLIC_CLIENT_ID,
    OAuthControlError,
    OAuthServerControl,
)
from trio_mailoauth.testing.servers import OAuthServerProcess

ALICE = "alice@example.test"
BOB = "bob@example.test"
CLIENT_AUTH = (CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET)
REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture
def http(standalone_oauth: OAuthServerControl) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standalone_oauth.base_url, trust_env=False) as client:
        yield client


def _post_token(
    http: httpx.Client, form: dict[str, str], auth: tuple[str, str] | None = CLIENT_AUTH
) -> httpx.Response:
    return http.post("/token", data=form, auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth)


def _token(
    http: httpx.Client, auth: tuple[str, str] | None = CLIENT_AUTH, **form: str
) -> httpx.Response:
    return _post_token(http, form, auth)


def _introspect(http: httpx.Client, token: str) -> dict[str, Any]:
    response = http.post(
        "/introspect", data={"token": token}, auth=(DOVECOT_CLIENT_ID, DOVECOT_CLIENT_SECRET)
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response) -> str:
    error: str = response.json()["error"]
    return error


# --- client authentication and client_credentials -------------------------------------------


def test_metadata_lists_the_endpoints(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"] == standalone_oauth.token_url
    assert meta["introspection_endpoint"] == standalone_oauth.introspection_url
    assert meta["revocation_endpoint"] == standalone_oauth.revocation_url
    assert meta["device_authorization_endpoint"] == standalone_oauth.device_authorization_url
    assert JWT_BEARER_GRANT in meta["grant_types_supported"]


def test_client_credentials_with_basic_and_with_post(http: httpx.Client) -> None:
    basic = _token(http, grant_type="client_credentials", scope="mail")
    assert basic.status_code == 200
    body = basic.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "mail"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3
    post = _token(
        http,
        auth=None,
        grant_type="client_credentials",
        client_id=CONFIDENTIAL_CLIENT_ID,
        client_secret=CONFIDENTIAL_CLIENT_SECRET,
    )
    assert post.status_code == 200
    assert post.json()["access_token"] != body["access_token"]
    assert response_headers_no_store(post)


def response_headers_no_store(response: httpx.Response) -> bool:
    value: str | None = response.headers.get("cache-control")
    return value == "no-store"


def test_bad_client_secret_is_401_with_a_challenge(http: httpx.Client) -> None:
    response = _token(http, auth=(CONFIDENTIAL_CLIENT_ID, "wrong"), grant_type="client_credentials")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert _error(response) == "invalid_client"
    missing = _token(http, auth=None, grant_type="client_credentials")
    assert missing.status_code == 401


def test_two_client_auth_methods_at_once_are_refused(http: httpx.Client) -> None:
    response = _token(
        http, grant_type="client_credentials", client_secret=CONFIDENTIAL_CLIENT_SECRET
    )
    assert response.status_code == 400
    assert _error(response) == "invalid_request"


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        ((DOVECOT_CLIENT_ID, DOVECOT_CLIENT_SECRET), {}),
        (None, {"client_id": PUBLIC_CLIENT_ID}),
    ],
)
def test_clients_without_the_grant_are_unauthorized(
    http: httpx.Client, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    response = _token(http, auth=auth, grant_type="client_credentials", **form)
    assert response.status_code == 400
    assert _error(response) == "unauthorized_client"


def test_unknown_grant_and_repeated_parameters(http: httpx.Client) -> None:
    assert _error(_token(http, grant_type="password")) == "unsupported_grant_type"
    repeated = http.post(
        "/token",
        content=b"grant_type=client_credentials&scope=a&scope=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=CLIENT_AUTH,
    )
    assert repeated.status_code == 400
    assert _error(repeated) == "invalid_request"


def test_client_credentials_subject_binds_a_mailbox(http: httpx.Client) -> None:
    bound = _token(http, grant_type="client_credentials", subject=BOB).json()["access_token"]
    info = _introspect(http, bound)
    assert info["active"] is True
    assert info["email"] == BOB
    app_only = _token(http, grant_type="client_credentials").json()["access_token"]
    info = _introspect(http, app_only)
    assert info["active"] is True
    assert "email" not in info  # Dovecot finds no user to log in as
    assert info["sub"] == CONFIDENTIAL_CLIENT_ID
    unknown = _token(http, grant_type="client_credentials", subject="eve@example.test")
    assert _error(unknown) == "invalid_request"


# --- refresh tokens and rotation -------------------------------------------------------------


def test_refresh_without_rotation_keeps_the_refresh_token(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    refresh = standalone_oauth.mint_token(ALICE, with_refresh_token=True)["refresh_token"]
    for _ in range(2):
        response = _token(http, grant_type="refresh_token", refresh_token=refresh)
        assert response.status_code == 200
        assert "refresh_token" not in response.json()
        assert _introspect(http, response.json()["access_token"])["email"] == ALICE


def test_rotation_returns_a_new_refresh_token_and_reuse_is_invalid_grant(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.set_rotation(True)
    first = standalone_oauth.mint_token(ALICE, with_refresh_token=True)["refresh_token"]
    response = _token(http, grant_type="refresh_token", refresh_token=first)
    assert response.status_code == 200
    second = response.json()["refresh_token"]
    assert second != first
    reuse = _token(http, grant_type="refresh_token", refresh_token=first)
    assert reuse.status_code == 400
    assert _error(reuse) == "invalid_grant"
    # Without family revocation the newest token still works.
    assert _token(http, grant_type="refresh_token", refresh_token=second).status_code == 200


def test_reuse_can_revoke_the_whole_family(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.set_rotation(True, revoke_family_on_reuse=True)
    first = standalone_oauth.mint_token(ALICE, with_refresh_token=True)["refresh_token"]
    rotated = _token(http, grant_type="refresh_token", refresh_token=first).json()
    assert _error(_token(http, grant_type="refresh_token", refresh_token=first)) == "invalid_grant"
    assert _introspect(http, rotated["access_token"]) == {"active": False}
    newest = _token(http, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert _error(newest) == "invalid_grant"


def test_refresh_checks_scope_client_and_expiry(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    refresh = standalone_oauth.mint_token(ALICE, with_refresh_token=True)["refresh_token"]
    wider = _token(http, grant_type="refresh_token", refresh_token=refresh, scope="mail admin")
    assert _error(wider) == "invalid_scope"
    other_client = _token(
        http,
        auth=None,
        grant_type="refresh_token",
        refresh_token=refresh,
        client_id="public-client",
    )
    assert _error(other_client) == "invalid_grant"
    assert standalone_oauth.expire(refresh) == 1
    assert (
        _error(_token(http, grant_type="refresh_token", refresh_token=refresh)) == "invalid_grant"
    )


# --- authorization code + PKCE ---------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize(http: httpx.Client, **params: str) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": PUBLIC_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "state": "xyz",
        "scope": "mail offline_access",
        "login_hint": ALICE,
        **params,
    }
    return http.get("/authorize", params={k: v for k, v in query.items() if v})


def _redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_authorization_code_with_pkce(http: httpx.Client) -> None:
    verifier, challenge = _pkce()
    params = _redirect_params(
        _authorize(http, code_challenge=challenge, code_challenge_method="S256")
    )
    assert params["state"] == "xyz"
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "client_id": PUBLIC_CLIENT_ID,
    }
    bad = _token(http, auth=None, **form, code_verifier=secrets.token_urlsafe(48))
    assert bad.status_code == 400
    assert _error(bad) == "invalid_grant"
    wrong_uri = _token(
        http, auth=None, **{**form, "redirect_uri": REDIRECT + "x"}, code_verifier=verifier
    )
    assert _error(wrong_uri) == "invalid_grant"
    good = _token(http, auth=None, **form, code_verifier=verifier)
    assert good.status_code == 200
    tokens = good.json()
    assert tokens["scope"] == "mail offline_access"
    assert "refresh_token" in tokens
    assert _introspect(http, tokens["access_token"])["email"] == ALICE
    # Single use; a replay also revokes what the code produced (RFC 6749 §4.1.2).
    replay = _token(http, auth=None, **form, code_verifier=verifier)
    assert _error(replay) == "invalid_grant"
    assert _introspect(http, tokens["access_token"]) == {"active": False}


def test_confidential_client_may_skip_pkce_but_not_downgrade(http: httpx.Client) -> None:
    params = _redirect_params(_authorize(http, client_id=CONFIDENTIAL_CLIENT_ID))
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT}
    downgrade = _post_token(http, {**form, "code_verifier": secrets.token_urlsafe(48)})
    assert _error(downgrade) == "invalid_grant"
    assert _post_token(http, form).status_code == 200


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "invalid_request"),  # public client without PKCE
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "x" * 43, "login_hint": "eve@example.test"}, "access_denied"),
        ({"code_challenge": "x" * 43, "response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_authorize_errors_redirect_with_error(
    http: httpx.Client, params: dict[str, str], error: str
) -> None:
    answer = _redirect_params(_authorize(http, **{"code_challenge_method": "S256", **params}))
    assert answer["error"] == error
    assert answer["state"] == "xyz"
    assert "code" not in answer


@pytest.mark.parametrize(
    "params",
    [{"redirect_uri": "https://evil.example/cb"}, {"client_id": "nobody"}, {"redirect_uri": ""}],
)
def test_authorize_never_redirects_to_an_unverified_uri(
    http: httpx.Client, params: dict[str, str]
) -> None:
    response = _authorize(http, code_challenge="x" * 43, code_challenge_method="S256", **params)
    assert response.status_code == 400
    assert "location" not in response.headers


# --- device flow -----------------------------------------------------------------------------


def _device(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/device_authorization", data={"client_id": PUBLIC_CLIENT_ID})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _poll(http: httpx.Client, device_code: str) -> httpx.Response:
    return _token(
        http,
        auth=None,
        grant_type=DEVICE_CODE_GRANT,
        device_code=device_code,
        client_id=PUBLIC_CLIENT_ID,
    )


def test_device_flow_pending_slow_down_then_approved(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.configure(device_interval=1)
    device = _device(http)
    assert device["interval"] == 1
    assert device["verification_uri"] == f"{standalone_oauth.base_url}/device"
    assert len(device["user_code"]) == 9
    assert _error(_poll(http, device["device_code"])) == "authorization_pending"
    slow = _poll(http, device["device_code"])  # at once: faster than the interval
    assert _error(slow) == "slow_down"
    assert "6 s" in slow.json()["error_description"]  # interval + 5 (RFC 8628 §3.5)
    standalone_oauth.approve_device(device["user_code"], BOB)
    approved = _poll(http, device["device_code"])
    assert approved.status_code == 200
    assert "refresh_token" in approved.json()
    assert _introspect(http, approved.json()["access_token"])["email"] == BOB
    assert _error(_poll(http, device["device_code"])) == "invalid_grant"  # used


def test_device_flow_waiting_the_interval_is_not_slow_down(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.configure(device_interval=1)
    device = _device(http)
    assert _error(_poll(http, device["device_code"])) == "authorization_pending"
    time.sleep(1)
    assert _error(_poll(http, device["device_code"])) == "authorization_pending"


def test_device_flow_denied_and_expired(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    denied, expired = _device(http), _device(http)
    standalone_oauth.deny_device(denied["user_code"])
    assert _error(_poll(http, denied["device_code"])) == "access_denied"
    standalone_oauth.expire_device(expired["user_code"])
    assert _error(_poll(http, expired["device_code"])) == "expired_token"
    with pytest.raises(OAuthControlError):
        standalone_oauth.approve_device("NOPE-NOPE", ALICE)


# --- JWT bearer (service accounts) -----------------------------------------------------------

SERVICE_ACCOUNT = "mailer@project.iam.example.test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assertion(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.fixture
def service_key(standalone_oauth: OAuthServerControl) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    standalone_oauth.register_service_account(SERVICE_ACCOUNT, pem)
    return key


def _claims(standalone_oauth: OAuthServerControl, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": SERVICE_ACCOUNT,
        "sub": ALICE,
        "aud": standalone_oauth.token_url,
        "scope": "mail",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(overrides)
    return claims


def test_jwt_bearer_good_assertion(
    http: httpx.Client, standalone_oauth: OAuthServerControl, service_key: rsa.RSAPrivateKey
) -> None:
    assertion = _assertion(service_key, **_claims(standalone_oauth))
    response = _token(http, auth=None, grant_type=JWT_BEARER_GRANT, assertion=assertion)
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    info = _introspect(http, body["access_token"])
    assert info["email"] == ALICE
    assert info["client_id"] == SERVICE_ACCOUNT


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
        ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 900}, "invalid_grant"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant"),  # valid for over an hour
        ({"iss": "stranger@example.test"}, "invalid_grant"),
        ({"sub": "eve@example.test"}, "invalid_grant"),
        ({"scope": ""}, "invalid_scope"),
    ],
)
def test_jwt_bearer_bad_claims(
    http: httpx.Client,
    standalone_oauth: OAuthServerControl,
    service_key: rsa.RSAPrivateKey,
    overrides: dict[str, Any],
    error: str,
) -> None:
    assertion = _assertion(service_key, **_claims(standalone_oauth, **overrides))
    response = _token(http, auth=None, grant_type=JWT_BEARER_GRANT, assertion=assertion)
    assert response.status_code == 400
    assert _error(response) == error


def test_jwt_bearer_signed_with_another_key(
    http: httpx.Client, standalone_oauth: OAuthServerControl, service_key: rsa.RSAPrivateKey
) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assertion = _assertion(impostor, **_claims(standalone_oauth))
    response = _token(http, auth=None, grant_type=JWT_BEARER_GRANT, assertion=assertion)
    assert _error(response) == "invalid_grant"
    assert "signature" in response.json()["error_description"]
    garbage = _token(http, auth=None, grant_type=JWT_BEARER_GRANT, assertion="a.b")
    assert _error(garbage) == "invalid_grant"


# --- introspection and revocation ------------------------------------------------------------


def test_introspection_of_active_and_inactive_tokens(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    minted = standalone_oauth.mint_token(ALICE, scope="mail other", with_refresh_token=True)
    info = _introspect(http, minted["access_token"])
    assert info["active"] is True
    assert info["email"] == info["sub"] == ALICE
    assert info["scope"] == "mail other"
    assert info["client_id"] == CONFIDENTIAL_CLIENT_ID
    assert info["exp"] - time.time() == pytest.approx(3600, abs=5)
    # Anything bad is 200 {"active": false}: Dovecot needs the 200 to send its challenge.
    assert _introspect(http, "no-such-token") == {"active": False}
    assert _introspect(http, minted["refresh_token"]) == {"active": False}
    expired = standalone_oauth.mint_token(ALICE, expires_in=0)["access_token"]
    assert _introspect(http, expired) == {"active": False}
    assert standalone_oauth.expire(user=ALICE) == 2
    assert _introspect(http, minted["access_token"]) == {"active": False}


def test_introspection_requires_the_dovecot_client(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    token = standalone_oauth.mint_token(ALICE)["access_token"]
    assert http.post("/introspect", data={"token": token}).status_code == 401
    other = http.post("/introspect", data={"token": token}, auth=CLIENT_AUTH)
    assert other.status_code == 400
    # What Dovecot 2.3 really sends: client_secret_post, plus empty fields when unset.
    dovecot = http.post(
        "/introspect",
        data={
            "token": token,
            "client_id": DOVECOT_CLIENT_ID,
            "client_secret": DOVECOT_CLIENT_SECRET,
        },
    )
    assert dovecot.json()["active"] is True
    empty = http.post(
        "/introspect",
        data={"token": token, "client_id": "", "client_secret": ""},
        auth=(DOVECOT_CLIENT_ID, DOVECOT_CLIENT_SECRET),
    )
    assert empty.json()["active"] is True


def test_revoke_user_kills_access_and_refresh_tokens(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    alice = standalone_oauth.mint_token(ALICE, with_refresh_token=True)
    bob = standalone_oauth.mint_token(BOB)
    assert standalone_oauth.revoke_user(ALICE) == 2
    assert _introspect(http, alice["access_token"]) == {"active": False}
    refresh = _token(http, grant_type="refresh_token", refresh_token=alice["refresh_token"])
    assert _error(refresh) == "invalid_grant"
    assert _introspect(http, bob["access_token"])["active"] is True


def test_rfc7009_revocation(http: httpx.Client, standalone_oauth: OAuthServerControl) -> None:
    minted = standalone_oauth.mint_token(ALICE, with_refresh_token=True)
    other = standalone_oauth.mint_token(ALICE)
    refreshed = _token(http, grant_type="refresh_token", refresh_token=minted["refresh_token"])
    # Unknown tokens are fine (200), and revoking an access token leaves its siblings alone.
    assert http.post("/revoke", data={"token": "unknown"}, auth=CLIENT_AUTH).status_code == 200
    assert http.post("/revoke", data={"token": other["access_token"]}, auth=CLIENT_AUTH).is_success
    assert _introspect(http, other["access_token"]) == {"active": False}
    assert _introspect(http, minted["access_token"])["active"] is True
    # Revoking the refresh token revokes every access token of its grant (RFC 7009 §2.1).
    response = http.post("/revoke", data={"token": minted["refresh_token"]}, auth=CLIENT_AUTH)
    assert response.status_code == 200
    assert _introspect(http, minted["access_token"]) == {"active": False}
    assert _introspect(http, refreshed.json()["access_token"]) == {"active": False}
    retry = _token(http, grant_type="refresh_token", refresh_token=minted["refresh_token"])
    assert _error(retry) == "invalid_grant"


# --- faults, token size, counters ------------------------------------------------------------


def test_fail_next_with_retry_after_then_recovers(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.fail_next("token", 2, 503, retry_after=7)
    for _ in range(2):
        response = _token(http, grant_type="client_credentials")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"] == "temporarily_unavailable"
    assert _token(http, grant_type="client_credentials").status_code == 200
    stats = standalone_oauth.stats()
    assert stats["failed"] == {"client_credentials": 2}
    assert stats["issued"] == {"client_credentials": 1}
    assert stats["calls"]["token"] == 3


def test_fail_next_raw_body_and_429(
    http: httpx.Client, standalone_oauth: OAuthServerControl
) -> None:
    standalone_oauth.fail_next("token", 1, 502, body="<html>Bad Gateway</html>")
    response = _token(http, grant_type="client_credentials")
    assert response.status_code == 502
    assert response.text == "<html>Bad Gateway</html>"
    assert "retry-after" not in response.headers
    standalone_oauth.fail_next("introspect", 1, 429, "slow_down", retry_after=1)
    token = standalone_oauth.mint_token(ALICE)["access_token"]
    limited = http.post(
        "/introspect", data={"token": token}, auth=(DOVECOT_CLIENT_ID, DOVECOT_CLIENT_SECRET)
    )
    assert limited.status_code == 429
    assert limited.json()["error"] == "slow_down"
    assert _introspect(http, token)["active"] is True


def test_delay(http: httpx.Client, standalone_oauth: OAuthServerControl) -> None:
    standalone_oauth.delay("token", 0.3)
    started = time.monotonic()
    assert _token(http, grant_type="client_credentials").status_code == 200
    assert time.monotonic() - started >= 0.3
    standalone_oauth.delay("token", 0)
    started = time.monotonic()
    _token(http, grant_type="client_credentials")
    assert time.monotonic() - started < 0.3
    with pytest.raises(OAuthControlError, match="endpoint"):
        standalone_oauth.delay("nowhere", 1)


def test_token_size(http: httpx.Client, standalone_oauth: OAuthServerControl) -> None:
    assert len(standalone_oauth.mint_token(ALICE, size=2000)["access_token"]) == 2000
    standalone_oauth.configure(token_size=1500, expires_in=60)
    body = _token(http, grant_type="client_credentials").json()
    assert len(body["access_token"]) == 1500
    assert body["expires_in"] == 60
    with pytest.raises(OAuthControlError):
        standalone_oauth.configure(no_such_setting=1)


def test_counters_and_reset(http: httpx.Client, standalone_oauth: OAuthServerControl) -> None:
    token = _token(http, grant_type="client_credentials", subject=ALICE).json()["access_token"]
    _token(http, auth=(CONFIDENTIAL_CLIENT_ID, "wrong"), grant_type="client_credentials")
    _introspect(http, token)
    _introspect(http, "bogus")
    stats = standalone_oauth.stats()
    assert stats["issued"] == {"client_credentials": 1}
    assert stats["failed"] == {"client_credentials": 1}
    assert stats["calls"] == {"token": 2, "introspect": 2}
    assert stats["introspection"] == {"active": 1, "inactive": 1, "total": 2}
    assert stats["active_tokens"] == 1
    standalone_oauth.reset()
    assert _introspect(http, token) == {"active": False}  # tokens are gone too
    stats = standalone_oauth.stats()
    assert stats["issued"] == {}
    assert stats["introspection"]["inactive"] == 1


def test_unknown_control_is_an_error(standalone_oauth: OAuthServerControl) -> None:
    assert standalone_oauth.health()
    with pytest.raises(OAuthControlError, match="404"):
        standalone_oauth._call("nonsense")
    with pytest.raises(OAuthControlError, match="unknown user"):
        standalone_oauth.mint_token("eve@example.test")
    with pytest.raises(OAuthControlError, match=r"400.*bad arguments"):
        standalone_oauth._call("fail_next", {"endpoint": "token", "count": "many"})
    assert standalone_oauth.health()  # still serving


def test_log_holds_no_secrets(
    http: httpx.Client,
    standalone_oauth: OAuthServerControl,
    standalone_oauth_server: OAuthServerProcess,
) -> None:
    verifier, challenge = _pkce()
    location = _authorize(http, code_challenge=challenge, code_challenge_method="S256")
    code = _redirect_params(location)["code"]
    tokens = _token(
        http,
        auth=None,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=PUBLIC_CLIENT_ID,
        code_verifier=verifier,
    ).json()
    _introspect(http, tokens["access_token"])
    assert standalone_oauth_server.log_path is not None
    log = standalone_oauth_server.log_path.read_text()
    assert "POST /token 200" in log  # the log is there, and it is this server's
    for secret in (code, verifier, tokens["access_token"], tokens["refresh_token"], "secret"):
        assert secret not in log


# --- state logic with a fake clock (no HTTP) -------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_codes_and_devices_expire_with_the_clock() -> None:
    clock = FakeClock()
    state = OAuthState([ALICE], clock=clock)
    client = state.authenticate_client(CLIENT_AUTH, {})
    assert client is not None
    location = state.authorize(
        {
            "client_id": CONFIDENTIAL_CLIENT_ID,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "login_hint": ALICE,
        }
    )
    code = parse_qs(urlsplit(location).query)["code"][0]
    clock.now += 601
    with pytest.raises(OAuthError, match="expired"):
        state.token(
            client,
            {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            [],
        )
    device = state.device_authorization(client, {}, "http://x/device")
    clock.now += device["expires_in"]
    with pytest.raises(OAuthError) as excinfo:
        state.token(
            client, {"grant_type": DEVICE_CODE_GRANT, "device_code": device["device_code"]}, []
        )
    assert excinfo.value.error == "expired_token"


def test_access_tokens_expire_with_the_clock() -> None:
    clock = FakeClock()
    state = OAuthState([ALICE], clock=clock)
    token = state.mint({"user": ALICE, "expires_in": 10})["access_token"]
    assert state.introspect(token)["exp"] == int(clock.now) + 10
    clock.now += 10
    assert state.introspect(token) == {"active": False}
