"""Providers for apps acting without a user at the keyboard: client credentials (Microsoft
app-only) and JWT bearer (Google service accounts with domain-wide delegation).

Both get a new token with the same grant each time (no refresh token to keep), on top of the
single-flight core of :mod:`.refresh`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from trio_mailoauth.oauth.grants import (
    Endpoint,
    client_credentials_request,
    jwt_bearer_request,
)
from trio_mailoauth.oauth.jwt import load_rsa_private_key, service_account_claims, sign_rs256
from trio_mailoauth.oauth.refresh import (
    DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_REFRESH_WINDOW,
    CachingTokenProvider,
)
from trio_mailoauth.oauth.tokens import AccessToken

__all__ = ["ClientCredentialsProvider", "ServiceAccountProvider"]

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"


class ClientCredentialsProvider(CachingTokenProvider):
    """App-only tokens (RFC 6749 §4.4). With Microsoft, one token serves every mailbox of the
    tenant the app has rights on: share one provider between all the accounts' clients
    (``XOAuth2(mailbox, provider)``).

    ``extra_params`` are added to the token request form (``resource`` for old endpoints).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        scopes: tuple[str, ...] | None = None,
        extra_params: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
        refresh_window: float = DEFAULT_REFRESH_WINDOW,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
    ) -> None:
        if endpoint.client_secret is None:
            raise ValueError("the client credentials grant needs a client secret")
        super().__init__(http=http, refresh_window=refresh_window, refresh_timeout=refresh_timeout)
        self.endpoint = endpoint
        self.scopes = endpoint.scopes if scopes is None else tuple(scopes)
        self._extra = dict(extra_params or {})

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsProvider({self.endpoint.name}, client={self.endpoint.client_id!r})"
        )

    async def _fetch(self, stale: AccessToken | None) -> AccessToken:
        request = client_credentials_request(self.endpoint, self.scopes, self._extra)
        return (await self._post(request)).access_token


class ServiceAccountProvider(CachingTokenProvider):
    """Tokens for one mailbox (``subject``) from a service account key (RFC 7523, RS256).

    Google: ``ServiceAccountProvider.from_service_account_info(json.load(f),
    subject="alice@example.com", scopes=("https://mail.google.com/",))``; the account needs
    domain-wide delegation for the scopes. One provider per subject (:meth:`for_subject`
    makes another sharing the key and the HTTP client). Needs ``cryptography``.
    """

    def __init__(
        self,
        *,
        issuer: str,
        private_key: str | bytes,
        subject: str | None,
        scopes: tuple[str, ...],
        token_url: str = GOOGLE_TOKEN_URL,
        key_id: str | None = None,
        http: httpx.AsyncClient | None = None,
        refresh_window: float = DEFAULT_REFRESH_WINDOW,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
    ) -> None:
        super().__init__(http=http, refresh_window=refresh_window, refresh_timeout=refresh_timeout)
        self.issuer = issuer
        self.subject = subject
        self.scopes = tuple(scopes)
        self.token_url = token_url
        self._key_id = key_id
        self._key: Any = load_rsa_private_key(private_key)
        self._pem = private_key

    @classmethod
    def from_service_account_info(
        cls,
        info: Mapping[str, Any],
        *,
        subject: str | None,
        scopes: tuple[str, ...],
        http: httpx.AsyncClient | None = None,
    ) -> ServiceAccountProvider:
        """From Google's key file (``client_email``, ``private_key``, ``private_key_id``...)."""
        try:
            issuer, pem = str(info["client_email"]), str(info["private_key"])
        except KeyError as exc:
            raise ValueError(f"the service account info lacks {exc.args[0]!r}") from None
        return cls(
            issuer=issuer,
            private_key=pem,
            subject=subject,
            scopes=scopes,
            token_url=str(info.get("token_uri", GOOGLE_TOKEN_URL)),
            key_id=str(info["private_key_id"]) if "private_key_id" in info else None,
            http=http,
        )

    def for_subject(self, subject: str) -> ServiceAccountProvider:
        """Another provider for another mailbox, same key and HTTP client."""
        return ServiceAccountProvider(
            issuer=self.issuer,
            private_key=self._pem,
            subject=subject,
            scopes=self.scopes,
            token_url=self.token_url,
            key_id=self._key_id,
            http=self._http if not self._owns_http else None,
            refresh_window=self._refresh_window,
            refresh_timeout=self._refresh_timeout,
        )

    def __repr__(self) -> str:
        return f"ServiceAccountProvider({self.issuer!r}, subject={self.subject!r})"

    async def _fetch(self, stale: AccessToken | None) -> AccessToken:
        claims = service_account_claims(
            issuer=self.issuer,
            subject=self.subject,
            scopes=self.scopes,
            audience=self.token_url,
            now=self._clock(),
        )
        assertion = sign_rs256(claims, self._key, key_id=self._key_id)
        return (await self._post(jwt_bearer_request(self.token_url, assertion))).access_token
