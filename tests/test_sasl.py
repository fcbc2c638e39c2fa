"""SASL mechanisms driven by hand: exact bytes, error challenges, classification."""

from __future__ import annotations

import json

import pytest

from trio_mailoauth.oauth import AccessToken, StaticTokenProvider
from trio_mailoauth.sasl import (
    FRESH_TOKEN_SECONDS,
    Login,
    OAuthBearer,
    Plain,
    SASLFlow,
    XOAuth2,
    classify_failure,
    oauthbearer_steps,
    xoauth2_steps,
)

GMAIL_CHALLENGE = json.dumps(
    {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()
DOVECOT_XOAUTH2_CHALLENGE = b'{"status":"401","schemes":"bearer","scope":"mail"}'
DOVECOT_OAUTHBEARER_CHALLENGE = b'{"status":"invalid_token"}'


async def test_xoauth2_initial_response_bytes() -> None:
    flow = await XOAuth2("alice@example.com", "tok123").start("imap.example.com", 993)
    assert flow.initial_response() == b"user=alice@example.com\x01auth=Bearer tok123\x01\x01"
    assert flow.token == AccessToken("tok123")


async def test_xoauth2_error_challenge_answered_with_empty_response() -> None:
    flow = await XOAuth2("alice@example.com", "tok").start("h", 1)
    flow.initial_response()
    assert flow.respond(GMAIL_CHALLENGE) == b""
    assert flow.error_detail == {
        "status": "400",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }
    # A second challenge makes no sense: cancel.
    assert flow.respond(b"again") is None
    assert flow.unexpected_challenge


async def test_two_step_form_answers_first_challenge_with_initial_response() -> None:
    flow = await XOAuth2("u", "t").start("h", 1)
    assert flow.respond(b"") == b"user=u\x01auth=Bearer t\x01\x01"
    assert flow.respond(DOVECOT_XOAUTH2_CHALLENGE) == b""
    assert flow.error_detail == {"status": "401", "schemes": "bearer", "scope": "mail"}


async def test_oauthbearer_bytes_and_error_answer() -> None:
    flow = await OAuthBearer("a,b=c@example.com", "tok").start("imap.example.com", 993)
    assert flow.initial_response() == (
        b"n,a=a=2Cb=3Dc@example.com,\x01host=imap.example.com\x01port=993"
        b"\x01auth=Bearer tok\x01\x01"
    )
    assert flow.respond(DOVECOT_OAUTHBEARER_CHALLENGE) == b"\x01"
    assert flow.error_detail == {"status": "invalid_token"}


async def test_plain_and_login() -> None:
    plain = await Plain("alice", "pw").start("h", 1)
    assert plain.initial_response() == b"\x00alice\x00pw"
    assert plain.respond(b"more?") is None

    login = await Login("alice", "pw").start("h", 1)
    assert login.respond(b"Username:") == b"alice"
    assert login.respond(b"Password:") == b"pw"
    assert login.respond(b"?") is None


def test_non_json_error_challenge_is_kept_as_text() -> None:
    flow = SASLFlow("XOAUTH2", xoauth2_steps("u", "t"), token=AccessToken("t"))
    flow.initial_response()
    flow.respond(b"\xffnot json")
    assert flow.error_detail is not None
    assert "not json" in str(flow.error_detail["raw"])


@pytest.mark.parametrize(("user", "password"), [("a\r\nb", "pw"), ("a", "p\x00w"), ("a\x01", "pw")])
def test_control_characters_refused(user: str, password: str) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        Plain(user, password)


def test_token_with_framing_characters_refused() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        AccessToken("abc\x01auth=Bearer evil")
    with pytest.raises(ValueError, match="non-empty"):
        AccessToken("")


def test_reprs_never_show_secrets() -> None:
    token = AccessToken("SECRET-TOKEN", expires_at=123.0)
    for text in (
        repr(token),
        str(token),
        repr(StaticTokenProvider(token)),
        repr(XOAuth2("alice", token)),
        repr(OAuthBearer("alice", "SECRET-TOKEN")),
        repr(Plain("alice", "SECRET-TOKEN")),
        repr(Login("alice", "SECRET-TOKEN")),
    ):
        assert "SECRET-TOKEN" not in text
    assert "alice" in repr(XOAuth2("alice", token))


# --- classification --------------------------------------------------------------------------


def _flow(mechanism: str, challenge: bytes | None, *, obtained_at: float | None = None) -> SASLFlow:
    token = AccessToken("t", obtained_at=obtained_at)
    steps = (
        xoauth2_steps("u", "t") if mechanism == "XOAUTH2" else oauthbearer_steps("u", "t", "h", 1)
    )
    flow = SASLFlow(mechanism, steps, token=token)
    flow.initial_response()
    if challenge is not None:
        flow.respond(challenge)
    return flow


def test_gmail_400_challenge_is_token_rejected() -> None:
    assert classify_failure(_flow("XOAUTH2", GMAIL_CHALLENGE)) == "token_rejected"


def test_dovecot_challenges_are_token_rejected() -> None:
    assert classify_failure(_flow("XOAUTH2", DOVECOT_XOAUTH2_CHALLENGE)) == "token_rejected"
    assert classify_failure(_flow("OAUTHBEARER", DOVECOT_OAUTHBEARER_CHALLENGE)) == (
        "token_rejected"
    )


@pytest.mark.parametrize("status", ["insufficient_scope", "invalid_request"])
def test_oauthbearer_scope_and_request_errors_are_permanent(status: str) -> None:
    challenge = json.dumps({"status": status}).encode()
    assert classify_failure(_flow("OAUTHBEARER", challenge)) == "permanent"


def test_temporary_and_permanent_flags_win() -> None:
    flow = _flow("XOAUTH2", DOVECOT_XOAUTH2_CHALLENGE)
    assert classify_failure(flow, temporary=True) == "temporary"
    assert classify_failure(_flow("XOAUTH2", None), permanent=True) == "permanent"


def test_microsoft_bare_failure_depends_on_token_age() -> None:
    now = 1_000_000.0
    fresh = _flow("XOAUTH2", None, obtained_at=now - 5)
    old = _flow("XOAUTH2", None, obtained_at=now - FRESH_TOKEN_SECONDS - 1)
    unknown = _flow("XOAUTH2", None, obtained_at=None)
    assert classify_failure(fresh, now=now) == "permanent"
    assert classify_failure(old, now=now) == "token_rejected"
    assert classify_failure(unknown, now=now) == "token_rejected"


async def test_password_mechanisms_fail_permanently() -> None:
    flow = await Plain("u", "p").start("h", 1)
    flow.initial_response()
    assert classify_failure(flow) == "permanent"
    assert classify_failure(flow, temporary=True) == "temporary"
