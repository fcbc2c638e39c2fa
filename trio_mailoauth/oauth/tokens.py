"""Access tokens and the token-provider protocol.

A token provider is anything with ``async get_token()`` and ``invalidate(token)``; the mail
clients ask it for a token before each authentication and tell it when a server rejected one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["AccessToken", "StaticTokenProvider", "TokenProvider"]


@dataclass(frozen=True)
class AccessToken:
    """A bearer token. Its repr and str never show the secret.

    ``expires_at`` is a POSIX timestamp computed from the moment the token request *started*
    (so a slow token endpoint never makes a token look fresher than it is); ``None`` means
    unknown. ``obtained_at`` is that same start time, when known: the clients use it to tell a
    token that was just issued from one that has been cached for a while. ``refresh_on`` is
    when the issuer suggests refreshing it (Microsoft's ``refresh_in``), if it said.
    """

    token: str = field(repr=False)
    expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    obtained_at: float | None = None
    refresh_on: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not self.token:
            raise ValueError("an access token must be a non-empty string")
        if any(c in self.token for c in "\r\n\x00\x01"):
            # These would break the SASL framing (XOAUTH2 separates fields with ^A).
            raise ValueError("an access token must not contain CR, LF, NUL or ^A")

    def __str__(self) -> str:
        return repr(self)

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until expiry (negative once expired); ``None`` when unknown."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def is_expired(self, now: float | None = None, *, leeway: float = 0.0) -> bool:
        """True when the token has expired, or will within ``leeway`` seconds."""
        remaining = self.expires_in(now)
        return remaining is not None and remaining <= leeway


@runtime_checkable
class TokenProvider(Protocol):
    """What the mail clients need from a source of access tokens."""

    async def get_token(self) -> AccessToken:
        """Return a token believed valid, refreshing it first if needed."""
        ...

    def invalidate(self, token: AccessToken) -> None:
        """Note that a server rejected ``token``; the next ``get_token()`` must not return it.

        Invalidating a token that has already been replaced does nothing.
        """
        ...


class StaticTokenProvider:
    """Serves one fixed token; it cannot refresh, so ``invalidate`` only remembers it.

    ``XOAuth2(user, "token-string")`` wraps its string in one of these.
    """

    def __init__(self, token: str | AccessToken) -> None:
        self._token = token if isinstance(token, AccessToken) else AccessToken(token)
        self.invalidated = False

    def __repr__(self) -> str:
        return f"StaticTokenProvider({self._token!r})"

    async def get_token(self) -> AccessToken:
        return self._token

    def invalidate(self, token: AccessToken) -> None:
        if token is self._token:
            self.invalidated = True
