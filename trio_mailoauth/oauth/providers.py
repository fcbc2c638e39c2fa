"""Presets for the big mail providers, and a generic one from OIDC / RFC 8414 discovery.

Each preset returns an :class:`~trio_mailoauth.oauth.grants.Endpoint`: token and
authorization URLs, scopes, quirks, the SASL mechanism the provider's servers accept and where
those servers are::

    endpoint = providers.microsoft(client_id="...", tenant="contoso.onmicrosoft.com")
    tokens = RefreshTokenProvider(endpoint, account="alice@contoso.com", store=store)
    auth = endpoint_sasl(endpoint, "alice@contoso.com", tokens)
    async with open_imap(endpoint.imap.host, endpoint.imap.port, auth=auth) as imap: ...
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpx

from trio_mailoauth.errors import OAuth2Error, TemporaryOAuth2Error
from trio_mailoauth.oauth.grants import Endpoint, MailServer, decode_json_object
from trio_mailoauth.oauth.refresh import read_capped
from trio_mailoauth.oauth.tokens import AccessToken, TokenProvider

if TYPE_CHECKING:
    from trio_mailoauth.sasl import SASLMechanism

__all__ = [
    "GOOGLE_MAIL_SCOPE",
    "MICROSOFT_APP_ONLY_SCOPE",
    "MICROSOFT_DELEGATED_SCOPES",
    "aol",
    "discover",
    "endpoint_sasl",
    "generic",
    "google",
    "microsoft",
    "yahoo",
]

GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_DELEGATED_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/POP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",  # without it Microsoft returns no refresh token
)
MICROSOFT_APP_ONLY_SCOPE = "https://outlook.office365.com/.default"


def google(
    *,
    client_id: str,
    client_secret: str | None = None,
    scopes: Sequence[str] = (GOOGLE_MAIL_SCOPE,),
    need_refresh_token: bool = True,
) -> Endpoint:
    """Gmail. ``access_type=offline`` (and ``prompt=consent`` so a returning user gets a
    refresh token again) when a refresh token is needed. Installed apps have a "secret" that
    is not secret; pass it anyway, Google requires it."""
    params = {"access_type": "offline", "prompt": "consent"} if need_refresh_token else {}
    return Endpoint(
        token_url="https://oauth2.googleapis.com/token",
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
        device_authorization_url="https://oauth2.googleapis.com/device/code",
        authorization_params=params,
        mechanism="XOAUTH2",
        imap=MailServer("imap.gmail.com", 993),
        smtp=MailServer("smtp.gmail.com", 465),
        pop3=MailServer("pop.gmail.com", 995),
        name="google",
    )


def microsoft(
    *,
    client_id: str,
    tenant: str = "common",
    client_secret: str | None = None,
    app_only: bool = False,
    scopes: Sequence[str] | None = None,
) -> Endpoint:
    """Microsoft 365 / Outlook.com (Entra ID v2 endpoint).

    Delegated (a user logs in): IMAP, POP and SMTP scopes plus ``offline_access``.
    ``app_only=True``: the client credentials grant with ``.default`` (needs a secret and a
    tenant; one token for every mailbox the app was granted). Microsoft refuses tokens without
    an error challenge, so the clients' retry logic relies on ``obtained_at``.
    """
    if app_only and (client_secret is None or tenant in ("common", "organizations")):
        raise ValueError("app-only access needs client_secret= and a specific tenant")
    default = (MICROSOFT_APP_ONLY_SCOPE,) if app_only else MICROSOFT_DELEGATED_SCOPES
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    return Endpoint(
        token_url=f"{base}/token",
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(default if scopes is None else scopes),
        authorization_url=f"{base}/authorize",
        device_authorization_url=f"{base}/devicecode",
        mechanism="XOAUTH2",
        imap=MailServer("outlook.office365.com", 993),
        smtp=MailServer("smtp.office365.com", 587, "starttls"),
        pop3=MailServer("outlook.office365.com", 995),
        name="microsoft",
    )


def _yahoo_platform(
    name: str,
    login: str,
    mail: str,
    client_id: str,
    client_secret: str | None,
    scopes: Sequence[str],
) -> Endpoint:
    """Yahoo and AOL share one platform: the same endpoints and rules on their own hosts."""
    return Endpoint(
        token_url=f"https://{login}/oauth2/get_token",
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        authorization_url=f"https://{login}/oauth2/request_auth",
        client_auth="basic",
        mechanism="OAUTHBEARER",
        imap=MailServer(f"imap.{mail}", 993),
        smtp=MailServer(f"smtp.{mail}", 465),
        pop3=MailServer(f"pop.{mail}", 995),
        name=name,
    )


def yahoo(
    *, client_id: str, client_secret: str | None = None, scopes: Sequence[str] = ("mail-w",)
) -> Endpoint:
    """Yahoo Mail: OAUTHBEARER only."""
    return _yahoo_platform(
        "yahoo", "api.login.yahoo.com", "mail.yahoo.com", client_id, client_secret, scopes
    )


def aol(
    *, client_id: str, client_secret: str | None = None, scopes: Sequence[str] = ("mail-w",)
) -> Endpoint:
    """AOL Mail (the Yahoo platform): OAUTHBEARER only."""
    return _yahoo_platform("aol", "api.login.aol.com", "aol.com", client_id, client_secret, scopes)


def generic(
    *,
    token_url: str,
    client_id: str,
    client_secret: str | None = None,
    scopes: Sequence[str] = (),
    authorization_url: str | None = None,
    device_authorization_url: str | None = None,
    client_auth: Literal["basic", "post"] = "post",
    mechanism: Literal["XOAUTH2", "OAUTHBEARER"] = "XOAUTH2",
) -> Endpoint:
    """Any RFC 6749 server."""
    return Endpoint(
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        authorization_url=authorization_url,
        device_authorization_url=device_authorization_url,
        client_auth=client_auth,
        mechanism=mechanism,
    )


async def discover(
    issuer_url: str,
    *,
    client_id: str,
    client_secret: str | None = None,
    scopes: Sequence[str] = (),
    mechanism: Literal["XOAUTH2", "OAUTHBEARER"] = "XOAUTH2",
    http: httpx.AsyncClient | None = None,
) -> Endpoint:
    """An endpoint from the issuer's metadata: OpenID Connect Discovery first, then RFC 8414.

    For an issuer with a path (``https://host/tenant/v2.0``) the two documents live at
    different places: OIDC Discovery §4 appends ``/.well-known/openid-configuration`` to the
    path; RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between the host
    and the path. Without a path they are ``https://host/.well-known/...`` both.

    The metadata's ``issuer`` must be ``issuer_url`` (OIDC Discovery §4.3, RFC 8414 §3.3):
    otherwise a document served for another issuer could send our secrets elsewhere. The
    issuer and the token, authorization and device endpoints must be ``https`` (plain
    ``http`` only to a loopback host, for tests): a client secret or a refresh token must
    never cross a network in clear. Failures raise :class:`OAuth2Error` (``discovery_failed``,
    ``insecure_endpoint``), or :class:`TemporaryOAuth2Error` for 5xx and network errors.
    """
    base = issuer_url.rstrip("/")
    _require_secure(base, "the issuer")
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
    try:
        metadata = None
        for url in _metadata_urls(base):
            try:
                async with client.stream("GET", url) as response:
                    body = await read_capped(response)
            except httpx.HTTPError as exc:
                raise TemporaryOAuth2Error(
                    "network_error", f"discovery at {base}: {type(exc).__name__}"
                ) from None
            if response.status_code == 200:
                metadata = decode_json_object(body)
                break
            if response.status_code >= 500:
                raise TemporaryOAuth2Error(f"http_{response.status_code}", f"discovery at {base}")
    finally:
        if http is None:
            await client.aclose()
    if metadata is None or not isinstance(metadata.get("token_endpoint"), str):
        raise OAuth2Error("discovery_failed", f"no usable metadata for the issuer {base}")
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != base:
        raise OAuth2Error("discovery_failed", f"the metadata at {base} is for another issuer")
    token_url = str(metadata["token_endpoint"])
    authorize = _url(metadata.get("authorization_endpoint"))
    device = _url(metadata.get("device_authorization_endpoint"))
    for what, found in (("token", token_url), ("authorization", authorize), ("device", device)):
        if found is not None:
            _require_secure(found, f"the {what} endpoint")
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth: Literal["basic", "post"] = (
        "basic" if isinstance(methods, list) and "client_secret_basic" in methods else "post"
    )
    return generic(
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        authorization_url=authorize,
        device_authorization_url=device,
        client_auth=auth,
        mechanism=mechanism,
    )


def _metadata_urls(issuer_url: str) -> tuple[str, str]:
    """Where an issuer's metadata may be, in the order :func:`discover` tries them:
    OpenID Connect Discovery (path, then ``/.well-known/openid-configuration``) and RFC 8414
    (``/.well-known/oauth-authorization-server``, then the path)."""
    parts = urlsplit(issuer_url)
    if parts.query or parts.fragment:
        # RFC 8414 §2 and OIDC Discovery §3: an issuer has neither.
        raise OAuth2Error("discovery_failed", "an issuer URL has no query or fragment")
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    return (
        f"{origin}{path}/.well-known/openid-configuration",
        f"{origin}/.well-known/oauth-authorization-server{path}",
    )


def _is_secure_url(url: str) -> bool:
    """``https``, or ``http`` to a loopback host (127.0.0.0/8, ::1, localhost)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # a malformed [IPv6] netloc
        return False
    if not host:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_secure(url: str, what: str) -> None:
    if not _is_secure_url(url):
        raise OAuth2Error(
            "insecure_endpoint",
            f"{what} ({url}) is not https; plain http is accepted for a loopback host only",
        )


def _url(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def endpoint_sasl(
    endpoint: Endpoint, user: str, source: TokenProvider | AccessToken | str
) -> SASLMechanism:
    """The SASL mechanism the endpoint's mail servers want (Yahoo/AOL: OAUTHBEARER)."""
    # Imported here: trio_mailoauth.sasl imports this package (for AccessToken).
    from trio_mailoauth.sasl import OAuthBearer, XOAuth2

    if endpoint.mechanism == "OAUTHBEARER":
        return OAuthBearer(user, source)
    return XOAuth2(user, source)
