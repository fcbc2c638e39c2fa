"""SASL mechanisms: PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER, as flows with no I/O.

A mechanism's steps are a generator: it yields the client's responses and is sent the
server's (already base64-decoded) challenges. Base64 and framing (``+ ``, ``334 ``) belong
to the protocol cores; choosing between an initial response and the two-step form belongs
to the protocol too (SASL-IR on IMAP, line length on SMTP, always two-step on POP3).

When a bearer token is refused, XOAUTH2 and OAUTHBEARER servers send an *error challenge*
carrying JSON. The client must answer it (XOAUTH2 with an empty response, OAUTHBEARER with
``\\x01``) and the server then sends its final refusal. The JSON becomes
``AuthenticationError.detail`` and decides whether a fresh token may help; see
:func:`classify_failure` and PROTOCOL-NOTES.md.

The user-facing objects (:class:`XOAuth2`, :class:`OAuthBearer`, :class:`Plain`,
:class:`Login`) hold credentials; ``start()`` gets a token (the only await) and returns a
:class:`SASLFlow` for one exchange.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import ClassVar

from trio_mailoauth.errors import AuthFailureKind
from trio_mailoauth.oauth.tokens import AccessToken, StaticTokenProvider, TokenProvider

__all__ = [
    "ErrorAnswer",
    "Login",
    "OAuthBearer",
    "Plain",
    "SASLFlow",
    "SASLMechanism",
    "XOAuth2",
    "classify_failure",
]

# A token obtained this recently that a server refuses without saying why (Microsoft sends
# no error challenge) is refused for a reason a new token will not fix: wrong scope, no
# mailbox permission, protocol disabled. An older one has probably expired or been revoked.
FRESH_TOKEN_SECONDS = 60.0

# OAUTHBEARER error statuses (RFC 6750 registry) a new token can fix. XOAUTH2 servers send
# HTTP-like numbers ("401"; Gmail really sends "400"): any error challenge after an XOAUTH2
# initial response means the token was refused.
_TOKEN_STATUSES = frozenset({"invalid_token", "400", "401"})


@dataclass(frozen=True)
class ErrorAnswer:
    """Yielded by a mechanism's steps in place of a response when a challenge was an error."""

    answer: bytes
    detail: Mapping[str, object]


SASLSteps = Generator["bytes | ErrorAnswer", bytes, None]


class SASLFlow:
    """One SASL exchange, driven by the protocol client.

    ``initial_response()`` gives the response to send with the command (SASL-IR, ``AUTH X
    <ir>``) and may be skipped: then the first challenge (normally empty) is answered with it.
    ``respond(challenge)`` answers a challenge, or returns ``None`` when the challenge makes
    no sense for this mechanism: the client must then cancel the exchange (``*``).
    """

    def __init__(
        self, mechanism: str, steps: SASLSteps, *, token: AccessToken | None = None
    ) -> None:
        self.mechanism = mechanism
        self.token = token
        self.error_detail: dict[str, object] | None = None
        self.unexpected_challenge = False
        self._steps = steps
        self._started = False

    def __repr__(self) -> str:
        return f"<SASLFlow {self.mechanism}>"

    def initial_response(self) -> bytes:
        """The first response; call at most once, and only before any ``respond()``."""
        if self._started:
            raise RuntimeError("the initial response was already produced")
        self._started = True
        first = next(self._steps)
        if isinstance(first, ErrorAnswer):  # pragma: no cover - mechanisms never start so
            raise TypeError("a mechanism's first step cannot be an error answer")
        return first

    def respond(self, challenge: bytes) -> bytes | None:
        """The response to ``challenge``; ``None`` means: cancel the exchange."""
        if not self._started:
            # Two-step form: the server's first (empty) challenge asks for the initial response.
            return self.initial_response()
        try:
            step = self._steps.send(challenge)
        except StopIteration:
            self.unexpected_challenge = True
            return None
        if isinstance(step, ErrorAnswer):
            self.error_detail = dict(step.detail)
            return step.answer
        return step


def _decode_error(challenge: bytes) -> dict[str, object]:
    """The JSON of an error challenge; a challenge that is not JSON is kept as text."""
    try:
        value = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"raw": challenge.decode("utf-8", "replace")[:200]}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {"raw": str(value)[:200]}


def _check_field(name: str, value: str) -> None:
    if any(c in value for c in "\x00\x01\r\n"):
        raise ValueError(f"{name} must not contain NUL, ^A, CR or LF")


# --- mechanism steps (pure generators) -----------------------------------------------------


def plain_steps(user: str, password: str, authzid: str = "") -> SASLSteps:
    """RFC 4616: ``authzid NUL authcid NUL passwd``, one response."""
    yield f"{authzid}\x00{user}\x00{password}".encode()


def login_steps(user: str, password: str) -> SASLSteps:
    """The LOGIN mechanism: the user name, then the password, each after a challenge."""
    yield user.encode()
    yield password.encode()


def xoauth2_steps(user: str, token: str) -> SASLSteps:
    """Google's XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A``.

    Any challenge after it is an error report; it is answered with an empty response.
    """
    challenge = yield f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    yield ErrorAnswer(b"", _decode_error(challenge))


def oauthbearer_steps(user: str, token: str, host: str, port: int) -> SASLSteps:
    """RFC 7628 OAUTHBEARER: a GS2 header with the authzid, then host, port and the token.

    Dovecot 2.3 needs the authzid (``a=``). An error challenge is answered with ``^A``.
    """
    gs2 = f"n,a={_saslname(user)},"
    challenge = yield f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()
    yield ErrorAnswer(b"\x01", _decode_error(challenge))


def _saslname(value: str) -> str:
    # RFC 5801 saslname: "," and "=" are escaped as =2C and =3D.
    return value.replace("=", "=3D").replace(",", "=2C")


# --- user-facing mechanisms -----------------------------------------------------------------


class SASLMechanism:
    """Credentials for one SASL mechanism. Subclasses set ``name`` and build the flow."""

    name: ClassVar[str]
    user: str

    @property
    def provider(self) -> TokenProvider | None:
        """The token provider to tell about a rejected token (bearer mechanisms only)."""
        return None

    async def start(self, host: str, port: int) -> SASLFlow:
        """Get what the exchange needs (a token, for bearer mechanisms) and begin it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.user!r})"


class Plain(SASLMechanism):
    """SASL PLAIN (RFC 4616) with a password."""

    name = "PLAIN"

    def __init__(self, user: str, password: str, *, authzid: str = "") -> None:
        for label, value in (("user", user), ("password", password), ("authzid", authzid)):
            _check_field(label, value)
        self.user = user
        self._password = password
        self._authzid = authzid

    async def start(self, host: str, port: int) -> SASLFlow:
        return SASLFlow(self.name, plain_steps(self.user, self._password, self._authzid))


class Login(SASLMechanism):
    """The (obsolete but common) LOGIN mechanism with a password."""

    name = "LOGIN"

    def __init__(self, user: str, password: str) -> None:
        _check_field("user", user)
        _check_field("password", password)
        self.user = user
        self._password = password

    async def start(self, host: str, port: int) -> SASLFlow:
        return SASLFlow(self.name, login_steps(self.user, self._password))


class _BearerMechanism(SASLMechanism):
    def __init__(self, user: str, source: TokenProvider | AccessToken | str) -> None:
        _check_field("user", user)
        self.user = user
        if isinstance(source, str | AccessToken):
            source = StaticTokenProvider(source)
        self._provider: TokenProvider = source

    @property
    def provider(self) -> TokenProvider:
        return self._provider


class XOAuth2(_BearerMechanism):
    """Google's XOAUTH2 (Gmail, Microsoft 365, Dovecot) with a token provider or a token."""

    name = "XOAUTH2"

    async def start(self, host: str, port: int) -> SASLFlow:
        token = await self._provider.get_token()
        return SASLFlow(self.name, xoauth2_steps(self.user, token.token), token=token)


class OAuthBearer(_BearerMechanism):
    """RFC 7628 OAUTHBEARER (Gmail, Yahoo, AOL, Dovecot) with a token provider or a token."""

    name = "OAUTHBEARER"

    async def start(self, host: str, port: int) -> SASLFlow:
        token = await self._provider.get_token()
        steps = oauthbearer_steps(self.user, token.token, host, port)
        return SASLFlow(self.name, steps, token=token)


# --- classification -------------------------------------------------------------------------


def classify_failure(
    flow: SASLFlow, *, temporary: bool = False, permanent: bool = False, now: float | None = None
) -> AuthFailureKind:
    """Why an exchange failed, from what the mechanism saw and what the server's refusal said.

    ``temporary``: the protocol's refusal says "try later" (IMAP ``[UNAVAILABLE]``, POP3
    ``[SYS/TEMP]``, SMTP 4xx). ``permanent``: it names a cause no token fixes (SMTP
    ``5.7.139`` client authentication disabled, ``501`` bad auth data).
    """
    if temporary:
        return "temporary"
    if permanent or flow.token is None or flow.unexpected_challenge:
        return "permanent"
    if flow.error_detail is not None:
        if flow.mechanism == "XOAUTH2":
            return "token_rejected"
        status = str(flow.error_detail.get("status", ""))
        return "token_rejected" if status in _TOKEN_STATUSES else "permanent"
    # No error challenge (Microsoft): a token we just got is refused for a lasting reason.
    obtained = flow.token.obtained_at
    current = time.time() if now is None else now
    if obtained is not None and current - obtained < FRESH_TOKEN_SECONDS:
        return "permanent"
    return "token_rejected"
