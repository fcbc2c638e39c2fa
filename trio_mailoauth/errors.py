"""The exception tree of trio_mailoauth.

Every exception the library raises on purpose derives from :class:`MailOAuthError`.
Foreign exceptions (``OSError``, ``ssl.SSLError``, anyio/trio stream errors) are translated
to these in one place, :mod:`trio_mailoauth.transport`, and keep the original as ``__cause__``.

```
MailOAuthError
├── ProtocolError                 the peer or the caller broke the protocol
│   ├── LocalProtocolError        we were asked to send something invalid (nothing was sent)
│   │   └── FetchInterruptedError a fetch() left unread too long lost its rest (IMAP)
│   └── RemoteProtocolError       the server sent something invalid; the connection is broken
├── ResponseError                 a well-formed refusal; the connection is still usable
│   ├── IMAPResponseError         .status (NO | BAD), .code, .text
│   ├── SMTPResponseError         .code, .enhanced_status, .text
│   │   ├── SMTPTransientError    4xx
│   │   └── SMTPPermanentError    5xx
│   ├── POP3ResponseError         .code (RFC 2449 response code), .text
│   └── AuthenticationError       .mechanism, .detail, .kind (token_rejected|permanent|temporary)
├── TransportError                the connection could not be made or broke; see __cause__
│   ├── ConnectError
│   ├── TLSError
│   └── ConnectionBrokenError     an operation was interrupted midway; the connection is closed
│       └── SessionEndedError     the server ended the session on its own (IMAP * BYE)
├── ConnectionClosedError         you closed it (aclose/LOGOUT/QUIT), then used it again
└── OAuth2Error                   .error, .error_description (from a token endpoint)
    ├── InvalidGrantError         a human has to log in again
    │   └── InteractionRequiredError  ... and pass MFA / consent (AADSTS50076, 50079)
    ├── OAuth2ClientError         the app registration is wrong (invalid_client, invalid_scope)
    └── TemporaryOAuth2Error      5xx, 429, network trouble: try again later
```

No exception message, repr or ``args`` ever carries a secret: messages are built from
server replies (which never echo a token) and from our own words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = [
    "AuthFailureKind",
    "AuthenticationError",
    "ConnectError",
    "ConnectionBrokenError",
    "ConnectionClosedError",
    "FetchInterruptedError",
    "IMAPResponseError",
    "InteractionRequiredError",
    "InvalidGrantError",
    "LocalProtocolError",
    "MailOAuthError",
    "OAuth2ClientError",
    "OAuth2Error",
    "POP3ResponseError",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseError",
    "SMTPPermanentError",
    "SMTPResponseError",
    "SMTPTransientError",
    "SessionEndedError",
    "TLSError",
    "TemporaryOAuth2Error",
    "TransportError",
]


class MailOAuthError(Exception):
    """Base class of every error trio_mailoauth raises."""


# --- protocol -------------------------------------------------------------------------------


class ProtocolError(MailOAuthError):
    """A protocol rule was broken, by us or by the peer."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol does not allow in this state.

    Raised before anything is written: the connection is unchanged.
    """


class FetchInterruptedError(LocalProtocolError):
    """The rest of an IMAP ``fetch()`` was dropped: its task took no message for
    ``STREAM_GRACE_SECONDS`` while another task needed the connection and the stream's
    buffer was full. The messages before this error were all delivered; the connection is
    fine. Fetch in smaller batches, or from a connection of its own, when the work per
    message is slow and other tasks share the connection."""


class RemoteProtocolError(ProtocolError):
    """The server sent bytes that break the protocol (or exceed a limit).

    The connection cannot be trusted any more and is closed.
    """


# --- well-formed refusals -------------------------------------------------------------------


class ResponseError(MailOAuthError):
    """The server completed the round trip with a refusal; the connection is still usable."""


class IMAPResponseError(ResponseError):
    """A tagged ``NO`` or ``BAD``."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        self.status = status
        self.text = text
        self.code = code
        shown = f"[{code}] " if code else ""
        super().__init__(f"{status} {shown}{text}")


class SMTPResponseError(ResponseError):
    """A 4xx or 5xx reply; see :class:`SMTPTransientError` and :class:`SMTPPermanentError`."""

    def __init__(self, code: int, text: str, enhanced_status: str | None = None) -> None:
        self.code = code
        self.text = text
        self.enhanced_status = enhanced_status
        shown = f" {enhanced_status}" if enhanced_status else ""
        super().__init__(f"{code}{shown} {text}")

    @staticmethod
    def for_reply(code: int, text: str, enhanced_status: str | None = None) -> SMTPResponseError:
        """The subclass that fits ``code``: transient for 4xx, permanent otherwise."""
        cls = SMTPTransientError if 400 <= code < 500 else SMTPPermanentError
        return cls(code, text, enhanced_status)


class SMTPTransientError(SMTPResponseError):
    """A 4xx reply: the same request may succeed later."""


class SMTPPermanentError(SMTPResponseError):
    """A 5xx reply: the same request will fail again."""


class POP3ResponseError(ResponseError):
    """An ``-ERR`` reply; ``code`` is its RFC 2449 response code (``AUTH``, ``SYS/TEMP``...)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        self.text = text
        self.code = code
        shown = f"[{code}] " if code else ""
        super().__init__(f"-ERR {shown}{text}")


AuthFailureKind = Literal["token_rejected", "permanent", "temporary"]


class AuthenticationError(ResponseError):
    """The server refused to authenticate us.

    ``kind`` says what to do about it:

    - ``"token_rejected"``: the bearer token was refused (expired, revoked); a fresh token may
      succeed. ``authenticate()`` with a token provider already retried once.
    - ``"temporary"``: the server could not check the credentials right now (its token
      endpoint is down); try again later with the same credentials.
    - ``"permanent"``: retrying will not help (wrong scope, protocol disabled, bad password).

    ``detail`` is the JSON error the server sent in its SASL challenge, if any
    (``{"status": "401", "schemes": "bearer", "scope": "mail"}``).
    ``response`` is the server's final refusal (an :class:`IMAPResponseError`,
    :class:`SMTPResponseError` or :class:`POP3ResponseError`) when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        mechanism: str,
        kind: AuthFailureKind,
        detail: Mapping[str, object] | None = None,
        response: ResponseError | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.kind: AuthFailureKind = kind
        self.detail = dict(detail) if detail is not None else None
        self.response = response
        super().__init__(f"{mechanism} authentication failed ({kind}): {message}")

    @property
    def token_rejected(self) -> bool:
        """True when a fresh token might succeed."""
        return self.kind == "token_rejected"

    @property
    def temporary(self) -> bool:
        """True when the server could not check the credentials right now."""
        return self.kind == "temporary"


# --- transport --------------------------------------------------------------------------------


class TransportError(MailOAuthError):
    """The network failed us; ``__cause__`` holds the original exception."""


class ConnectError(TransportError):
    """The TCP connection (or the greeting) could not be had in time."""


class TLSError(TransportError):
    """The TLS handshake failed: untrusted certificate, wrong host name, bad protocol."""


class ConnectionBrokenError(TransportError):
    """A round trip was interrupted midway (network error, cancellation, protocol error).

    The connection was closed forcefully; every later use raises this again.
    """


class SessionEndedError(ConnectionBrokenError):
    """The server ended the session on its own: an unsolicited IMAP ``* BYE``.

    ``text`` is the server's reason (Microsoft: ``Session invalidated - AccessTokenExpired``,
    which means "reconnect with a fresh token"); ``code`` its response code, if any.
    """

    def __init__(self, text: str, code: str | None = None) -> None:
        self.text = text
        self.code = code
        shown = f"[{code}] " if code else ""
        super().__init__(f"the server ended the session: {shown}{text}")


class ConnectionClosedError(MailOAuthError):
    """The connection was closed by the caller (``aclose()``, LOGOUT, QUIT) and then used."""


# --- OAuth2 -----------------------------------------------------------------------------------


class OAuth2Error(MailOAuthError):
    """A token endpoint refused a request (RFC 6749 §5.2)."""

    def __init__(self, error: str, error_description: str | None = None) -> None:
        self.error = error
        self.error_description = error_description
        suffix = f": {error_description}" if error_description else ""
        super().__init__(f"{error}{suffix}")


class InvalidGrantError(OAuth2Error):
    """The grant (refresh token, code) is expired or revoked: a human must log in again."""


class InteractionRequiredError(InvalidGrantError):
    """The user must sign in interactively again (multi-factor authentication, consent)."""


class OAuth2ClientError(OAuth2Error):
    """The client is misconfigured: ``invalid_client``, ``unauthorized_client``,
    ``invalid_scope``, ``unsupported_grant_type``, ``invalid_request``. Retrying will not help
    and a new login will not either: fix the app registration or the settings."""


class TemporaryOAuth2Error(OAuth2Error):
    """The token endpoint is unavailable (5xx, 429, network): try again later.

    ``retry_after`` is the delay the server asked for, in seconds, if it gave one.
    """

    def __init__(
        self, error: str, error_description: str | None = None, *, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(error, error_description)
