"""AccessToken, StaticTokenProvider and the exception tree."""

from __future__ import annotations

import pytest

import trio_mailoauth.errors as errors
from trio_mailoauth.oauth import AccessToken, StaticTokenProvider, TokenProvider


def test_access_token_expiry() -> None:
    token = AccessToken("t", expires_at=1000.0)
    assert token.expires_in(now=900.0) == 100.0
    assert not token.is_expired(now=900.0)
    assert token.is_expired(now=950.0, leeway=60)
    assert token.is_expired(now=1000.0)
    assert AccessToken("t").expires_in() is None
    assert not AccessToken("t").is_expired()


def test_access_token_is_frozen() -> None:
    token = AccessToken("t")
    with pytest.raises(AttributeError):
        token.token = "other"  # type: ignore[misc]


async def test_static_provider() -> None:
    provider = StaticTokenProvider("abc")
    assert isinstance(provider, TokenProvider)
    first = await provider.get_token()
    assert first.token == "abc"
    provider.invalidate(AccessToken("other"))
    assert not provider.invalidated
    provider.invalidate(first)
    assert provider.invalidated
    assert await provider.get_token() is first


def test_exception_tree() -> None:
    e = errors
    assert issubclass(e.LocalProtocolError, e.ProtocolError)
    assert issubclass(e.RemoteProtocolError, e.ProtocolError)
    refusals: tuple[type[Exception], ...] = (
        e.IMAPResponseError,
        e.SMTPResponseError,
        e.POP3ResponseError,
    )
    for cls in refusals:
        assert issubclass(cls, e.ResponseError)
    assert issubclass(e.AuthenticationError, e.ResponseError)
    for transport in (e.ConnectError, e.TLSError, e.ConnectionBrokenError):
        assert issubclass(transport, e.TransportError)
    for oauth in (e.InvalidGrantError, e.TemporaryOAuth2Error):
        assert issubclass(oauth, e.OAuth2Error)
    for name in e.__all__:
        obj = getattr(e, name)
        if isinstance(obj, type):
            assert issubclass(obj, e.MailOAuthError), name
    # The docstring draws the tree: every class is in it.
    assert e.__doc__ is not None
    for name in e.__all__:
        if isinstance(getattr(e, name), type):
            assert name in e.__doc__, name


def test_smtp_reply_classes() -> None:
    transient = errors.SMTPResponseError.for_reply(454, "try later", "4.7.0")
    permanent = errors.SMTPResponseError.for_reply(535, "no", "5.7.8")
    assert isinstance(transient, errors.SMTPTransientError)
    assert isinstance(permanent, errors.SMTPPermanentError)
    assert str(permanent) == "535 5.7.8 no"


def test_authentication_error_fields() -> None:
    refusal = errors.IMAPResponseError("NO", "Authentication failed.", "AUTHENTICATIONFAILED")
    exc = errors.AuthenticationError(
        str(refusal),
        mechanism="XOAUTH2",
        kind="token_rejected",
        detail={"status": "401"},
        response=refusal,
    )
    assert exc.token_rejected
    assert not exc.temporary
    assert exc.detail == {"status": "401"}
    assert "XOAUTH2" in str(exc)
    assert "AUTHENTICATIONFAILED" in str(exc)
    assert errors.TemporaryOAuth2Error("temporarily_unavailable", retry_after=3).retry_after == 3
