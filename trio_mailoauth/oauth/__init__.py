"""OAuth2: access tokens and the providers that get and refresh them."""

from trio_mailoauth.oauth.tokens import AccessToken as AccessToken
from trio_mailoauth.oauth.tokens import StaticTokenProvider as StaticTokenProvider
from trio_mailoauth.oauth.tokens import TokenProvider as TokenProvider

__all__ = ["AccessToken", "StaticTokenProvider", "TokenProvider"]
