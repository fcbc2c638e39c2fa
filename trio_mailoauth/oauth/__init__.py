"""OAuth2: access tokens and the providers that get, refresh and store them.

```python
from trio_mailoauth.oauth import RefreshTokenProvider, SQLiteTokenStore, providers

tokens = RefreshTokenProvider(
    providers.microsoft(client_id="...", tenant="common"),
    account="alice@example.com",
    store=SQLiteTokenStore("tokens.db"),
)
```
"""

from trio_mailoauth.errors import InteractionRequiredError as InteractionRequiredError
from trio_mailoauth.errors import InvalidGrantError as InvalidGrantError
from trio_mailoauth.errors import OAuth2ClientError as OAuth2ClientError
from trio_mailoauth.errors import OAuth2Error as OAuth2Error
from trio_mailoauth.errors import TemporaryOAuth2Error as TemporaryOAuth2Error
from trio_mailoauth.oauth import providers as providers
from trio_mailoauth.oauth.app_providers import (
    ClientCredentialsProvider as ClientCredentialsProvider,
)
from trio_mailoauth.oauth.app_providers import ServiceAccountProvider as ServiceAccountProvider
from trio_mailoauth.oauth.flows import AuthorizationCodeFlow as AuthorizationCodeFlow
from trio_mailoauth.oauth.flows import DeviceCodeFlow as DeviceCodeFlow
from trio_mailoauth.oauth.grants import DeviceAuthorization as DeviceAuthorization
from trio_mailoauth.oauth.grants import Endpoint as Endpoint
from trio_mailoauth.oauth.grants import MailServer as MailServer
from trio_mailoauth.oauth.providers import endpoint_sasl as endpoint_sasl
from trio_mailoauth.oauth.refresh import CachingTokenProvider as CachingTokenProvider
from trio_mailoauth.oauth.refresh import ProviderStats as ProviderStats
from trio_mailoauth.oauth.refresh import RefreshTokenProvider as RefreshTokenProvider
from trio_mailoauth.oauth.stores import MemoryTokenStore as MemoryTokenStore
from trio_mailoauth.oauth.stores import SQLiteTokenStore as SQLiteTokenStore
from trio_mailoauth.oauth.stores import StoredTokens as StoredTokens
from trio_mailoauth.oauth.stores import TokenStore as TokenStore
from trio_mailoauth.oauth.tokens import AccessToken as AccessToken
from trio_mailoauth.oauth.tokens import StaticTokenProvider as StaticTokenProvider
from trio_mailoauth.oauth.tokens import TokenProvider as TokenProvider

__all__ = [
    "AccessToken",
    "AuthorizationCodeFlow",
    "CachingTokenProvider",
    "ClientCredentialsProvider",
    "DeviceAuthorization",
    "DeviceCodeFlow",
    "Endpoint",
    "InteractionRequiredError",
    "InvalidGrantError",
    "MailServer",
    "MemoryTokenStore",
    "OAuth2ClientError",
    "OAuth2Error",
    "ProviderStats",
    "RefreshTokenProvider",
    "SQLiteTokenStore",
    "ServiceAccountProvider",
    "StaticTokenProvider",
    "StoredTokens",
    "TemporaryOAuth2Error",
    "TokenProvider",
    "TokenStore",
    "endpoint_sasl",
    "providers",
]
