"""A deliberately simple refresh-token provider for tests, examples and benchmarks.

It does one plain refresh-token grant (RFC 6749 §6) per token it needs and counts them, so a
test can assert how many tokens authentication really used. It has none of the production
provider's guarantees (single-flight refresh, persistence, backoff): use it only against the
local OAuth2 test server.
"""

from __future__ import annotations

import time

import httpx

from trio_mailoauth.errors import OAuth2Error
from trio_mailoauth.oauth.tokens import AccessToken

__all__ = ["LocalTokenProvider"]


class LocalTokenProvider:
    """Gets access tokens from ``token_url`` with a refresh token; ``requests`` counts them.

    ``first`` (optional) is served before any refresh: hand it an expired token to see the
    clients' token-rejected retry at work.
    """

    def __init__(
        self,
        token_url: str,
        *,
        refresh_token: str,
        client_id: str = "test-client",
        client_secret: str = "test-secret",  # noqa: S107 - the local test server's client
        first: AccessToken | None = None,
    ) -> None:
        self._token_url = token_url
        self._refresh_token = refresh_token
        self._client_id = client_id
        self._client_secret = client_secret
        self._current = first
        self.requests = 0
        self.invalidations = 0

    def __repr__(self) -> str:
        return f"LocalTokenProvider({self._token_url!r}, requests={self.requests})"

    async def get_token(self) -> AccessToken:
        if self._current is None:
            self._current = await self._refresh()
        return self._current

    def invalidate(self, token: AccessToken) -> None:
        if token is self._current:
            self._current = None
            self.invalidations += 1

    async def _refresh(self) -> AccessToken:
        started = time.time()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        async with httpx.AsyncClient() as http:
            response = await http.post(self._token_url, data=form)
        self.requests += 1
        body = response.json()
        if response.status_code != 200:
            raise OAuth2Error(str(body.get("error")), body.get("error_description"))
        # With rotation on, the old refresh token is dead from now on.
        self._refresh_token = body.get("refresh_token", self._refresh_token)
        expires_in = body.get("expires_in")
        return AccessToken(
            body["access_token"],
            expires_at=started + float(expires_in) if expires_in is not None else None,
            scopes=tuple(str(body.get("scope", "")).split()),
            obtained_at=started,
        )
