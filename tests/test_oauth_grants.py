"""Pure grant logic: request builders, response parsers, error classes, Retry-After, PKCE."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from trio_mailoauth.errors import (
    InteractionRequiredError,
    InvalidGrantError,
    OAuth2ClientError,
    OAuth2Error,
    TemporaryOAuth2Error,
)
from trio_mailoauth.oauth import grants, providers
from trio_mailoauth.oauth.grants import Endpoint

NOW = 1_700_000_000.0
EP = Endpoint("https://id.example/token", "cid", "csecret", ("mail", "offline_access"))


def _body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_refresh_request_posts_secret_in_form_and_hides_it() -> None:
    req = grants.refresh_request(EP, "rt-SECRET")
    assert req.url == EP.token_url
    assert dict(req.form) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-SECRET",
        "scope": "mail offline_access",
        "client_id": "cid",
        "client_secret": "csecret",
    }
    assert "SECRET" not in repr(req)
    assert "csecret" not in repr(req)
    assert "csecret" not in repr(EP)


def test_basic_client_auth_and_public_client() -> None:
    basic = Endpoint("https://t", "cid", "sec", client_auth="basic")
    req = grants.client_credentials_request(basic, ("a/.default",), {"subject": "u"})
    assert req.basic_auth == ("cid", "sec")
    assert dict(req.form) == {
        "grant_type": "client_credentials",
        "subject": "u",
        "scope": "a/.default",
    }
    public = Endpoint("https://t", "pub")
    code = grants.authorization_code_request(public, "CODE", "http://127.0.0.1:1/", "v" * 43)
    assert dict(code.form)["client_id"] == "pub"
    assert "client_secret" not in code.form
    jwt = grants.jwt_bearer_request("https://t", "a.b.c")
    assert dict(jwt.form) == {"grant_type": grants.JWT_BEARER_GRANT, "assertion": "a.b.c"}


def test_parse_success_sets_times_from_request_start() -> None:
    body = _body(
        access_token="AT", token_type="Bearer", expires_in=3599, scope="mail", refresh_token="RT2"
    )
    parsed = grants.parse_token_response(200, {}, body, started=NOW)
    assert parsed.access_token.token == "AT"
    assert parsed.access_token.expires_at == NOW + 3599
    assert parsed.access_token.obtained_at == NOW
    assert parsed.access_token.scopes == ("mail",)
    assert parsed.refresh_token == "RT2"
    assert "AT" not in repr(parsed)
    assert "RT2" not in repr(parsed)


def test_parse_microsoft_string_numbers_and_refresh_in() -> None:
    body = _body(access_token="AT", token_type="bearer", expires_in="3600", refresh_in=1800)
    token = grants.parse_token_response(200, {}, body, started=NOW).access_token
    assert token.expires_at == NOW + 3600
    assert token.refresh_on == NOW + 1800


_IG = "invalid_grant"
_CASES: list[tuple[int, dict[str, str], type[OAuth2Error]]] = [
    (
        400,
        {"error": _IG, "error_description": "Token has been expired or revoked."},
        InvalidGrantError,
    ),
    (
        400,
        {"error": _IG, "error_description": "AADSTS700082: expired (inactive)"},
        InvalidGrantError,
    ),
    (400, {"error": _IG, "error_description": "AADSTS70008: expired"}, InvalidGrantError),
    (400, {"error": _IG, "error_description": "AADSTS50173: revoked"}, InvalidGrantError),
    (400, {"error": _IG, "error_description": "AADSTS50076: use MFA"}, InteractionRequiredError),
    (400, {"error": "interaction_required"}, InteractionRequiredError),
    (401, {"error": "invalid_client"}, OAuth2ClientError),
    (400, {"error": "unauthorized_client"}, OAuth2ClientError),
    (400, {"error": "invalid_scope"}, OAuth2ClientError),
    (
        400,
        {"error": "invalid_request", "error_description": "AADSTS50196: loop"},
        TemporaryOAuth2Error,
    ),
    (503, {"error": "temporarily_unavailable"}, TemporaryOAuth2Error),
    (429, {}, TemporaryOAuth2Error),
    (400, {"error": "weird"}, OAuth2Error),
]


@pytest.mark.parametrize(("status", "fields", "cls"), _CASES)
def test_error_classes(status: int, fields: dict[str, str], cls: type[OAuth2Error]) -> None:
    with pytest.raises(OAuth2Error) as info:
        grants.parse_token_response(status, {}, _body(**fields), started=NOW)
    assert type(info.value) is cls
    if "error_description" in fields:
        assert info.value.error_description == fields["error_description"]
        assert fields["error_description"] in str(info.value)


def test_non_json_bodies() -> None:
    with pytest.raises(TemporaryOAuth2Error) as info:
        grants.parse_token_response(
            502, {"retry-after": "7"}, b"<html>bad gateway</html>", started=NOW
        )
    assert info.value.error == "http_502"
    assert info.value.retry_after == 7
    # A 200 that is not a token response (a captive portal) does not condemn the refresh token.
    with pytest.raises(TemporaryOAuth2Error):
        grants.parse_token_response(200, {}, b"<html>", started=NOW)
    with pytest.raises(TemporaryOAuth2Error):
        grants.parse_token_response(200, {}, _body(token_type="Bearer"), started=NOW)
    with pytest.raises(OAuth2Error, match="Bearer"):
        grants.parse_token_response(200, {}, _body(access_token="x", token_type="mac"), started=NOW)
    with pytest.raises(OAuth2Error):
        grants.parse_token_response(200, {}, _body(access_token="a\r\nb"), started=NOW)


def test_retry_after_seconds_and_http_date() -> None:
    assert grants.parse_retry_after("120", NOW) == 120
    assert grants.parse_retry_after(None, NOW) is None
    assert grants.parse_retry_after("soon", NOW) is None
    assert grants.parse_retry_after("99999999", NOW) == 3600  # capped
    date = "Tue, 14 Nov 2023 22:13:50 GMT"  # NOW + 30 s
    assert grants.parse_retry_after(date, NOW) == pytest.approx(30)
    assert grants.parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", NOW) == 0


def test_device_authorization_parsing() -> None:
    body = _body(
        device_code="DC",
        user_code="ABCD-EFGH",
        verification_url="https://g.co/device",
        expires_in=1800,
    )
    auth = grants.parse_device_authorization(200, {}, body, now=NOW)
    assert auth.interval == 5
    assert auth.verification_uri == "https://g.co/device"
    assert "DC" not in repr(auth)
    with pytest.raises(OAuth2Error):
        grants.parse_device_authorization(200, {}, _body(user_code="x"), now=NOW)


def test_pkce_and_authorization_url() -> None:
    verifier, challenge = grants.make_pkce()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    endpoint = providers.google(client_id="gid")
    url = grants.authorization_url(
        endpoint, redirect_uri="http://127.0.0.1:5/", state="st", code_challenge=challenge,
        login_hint="a@b",
    )  # fmt: skip
    query = parse_qs(urlsplit(url).query)
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == ["st"]
    assert query["scope"] == ["https://mail.google.com/"]


def test_parse_redirect_checks_state() -> None:
    assert grants.parse_redirect("code=C&state=S", "S") == "C"
    with pytest.raises(OAuth2Error, match="state"):
        grants.parse_redirect("code=C&state=X", "S")
    with pytest.raises(OAuth2Error) as info:
        grants.parse_redirect("error=access_denied&error_description=no&state=S", "S")
    assert info.value.error == "access_denied"


def test_presets() -> None:
    ms = providers.microsoft(client_id="m", tenant="contoso")
    assert ms.token_url == "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    assert "offline_access" in ms.scopes
    assert ms.scope_string().count(" ") == 3
    assert ms.smtp is not None
    assert ms.smtp.tls == "starttls"
    app = providers.microsoft(client_id="m", tenant="contoso", client_secret="s", app_only=True)
    assert app.scopes == ("https://outlook.office365.com/.default",)
    with pytest.raises(ValueError, match="tenant"):
        providers.microsoft(client_id="m", client_secret="s", app_only=True)
    assert providers.yahoo(client_id="y").mechanism == "OAUTHBEARER"
    assert providers.aol(client_id="a").imap == grants.MailServer("imap.aol.com", 993)
    assert providers.google(client_id="g").mechanism == "XOAUTH2"
    auth = providers.endpoint_sasl(providers.yahoo(client_id="y"), "u@y.com", "tok")
    assert auth.name == "OAUTHBEARER"


def test_parse_redirect_with_a_non_ascii_state_is_a_typed_error() -> None:
    # Anyone can send the loopback listener a request: its state must not crash the flow.
    with pytest.raises(OAuth2Error, match="state"):
        grants.parse_redirect("code=C&state=%C3%A9t%C3%A9", "S")
    assert grants.parse_redirect("code=C&state=%C3%A9", "é") == "C"


def test_retry_after_with_many_digits_is_capped_not_ignored() -> None:
    assert grants.parse_retry_after("99999999999999999999", NOW) == 3600
    assert grants.parse_retry_after("-5", NOW) is None


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "-60"])
def test_nonsense_expiry_numbers_are_ignored(value: str) -> None:
    body = f'{{"access_token": "AT", "expires_in": {value}, "refresh_in": {value}}}'.encode()
    token = grants.parse_token_response(200, {}, body, started=NOW).access_token
    assert token.expires_at is None
    assert token.refresh_on is None
    device = '{"device_code": "D", "user_code": "U", "verification_uri": "https://v",'
    device += f' "expires_in": {value}, "interval": {value}}}'
    auth = grants.parse_device_authorization(200, {}, device.encode(), now=NOW)
    assert auth.expires_in == 1800
    assert auth.interval == 5


def test_decode_json_object_is_public_and_takes_only_objects() -> None:
    assert "decode_json_object" in grants.__all__
    assert grants.decode_json_object(b'{"error": "x"}') == {"error": "x"}
    too_big = b'{"a": "' + b"x" * grants.MAX_RESPONSE_BYTES + b'"}'
    for body in (b"[1]", b"null", b'"s"', b"\xff{}", b"{", b"", too_big):
        assert grants.decode_json_object(body) is None


def test_oauth_modules_use_each_others_public_names_only() -> None:
    package = Path(grants.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "trio_mailoauth"
            ):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
