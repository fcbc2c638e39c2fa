"""Discovery of an issuer's metadata: where the documents are, which issuer they must name,
and which endpoint URLs are acceptable (https, or http to a loopback host only)."""

from __future__ import annotations

import json

import httpx
import pytest

from trio_mailoauth.errors import OAuth2Error
from trio_mailoauth.oauth import Endpoint, RefreshTokenProvider, providers
from trio_mailoauth.testing.oauth_server import OAuthServerControl

ISSUER = "https://id.test/tenant/v2.0"
OIDC = "https://id.test/tenant/v2.0/.well-known/openid-configuration"
RFC8414 = "https://id.test/.well-known/oauth-authorization-server/tenant/v2.0"


class Documents:
    """Serves JSON documents by exact URL (404 otherwise) and records what was asked."""

    def __init__(self, documents: dict[str, dict[str, object]]) -> None:
        self.documents = documents
        self.asked: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.asked.append(url)
        if url in self.documents:
            return httpx.Response(200, content=json.dumps(self.documents[url]).encode())
        return httpx.Response(404, json={"error": "not_found"})


def _metadata(issuer: str = ISSUER, **endpoints: str) -> dict[str, object]:
    base = "https://id.test/tenant/oauth2/v2.0"
    return {
        "issuer": issuer,
        "token_endpoint": f"{base}/token",
        "authorization_endpoint": f"{base}/authorize",
        "device_authorization_endpoint": f"{base}/devicecode",
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        **endpoints,
    }


async def _discover(documents: Documents, issuer: str = ISSUER) -> Endpoint:
    async with httpx.AsyncClient(transport=httpx.MockTransport(documents)) as http:
        return await providers.discover(issuer, client_id="c", http=http)


async def test_a_path_issuer_is_looked_up_the_oidc_way_then_the_rfc8414_way() -> None:
    only_rfc8414 = Documents({RFC8414: _metadata()})
    endpoint = await _discover(only_rfc8414)
    assert only_rfc8414.asked == [OIDC, RFC8414]
    assert endpoint.token_url == "https://id.test/tenant/oauth2/v2.0/token"
    assert endpoint.device_authorization_url == "https://id.test/tenant/oauth2/v2.0/devicecode"
    assert endpoint.client_auth == "post"
    # OIDC's document, when there is one, is the first and only one asked for.
    oidc = Documents({OIDC: _metadata(), RFC8414: _metadata(token_endpoint="https://x/t")})
    assert (await _discover(oidc, ISSUER + "/")).token_url.startswith("https://id.test/")
    assert oidc.asked == [OIDC]


async def test_an_issuer_without_a_path_has_both_documents_under_the_host() -> None:
    rfc8414 = "https://id.test/.well-known/oauth-authorization-server"
    documents = Documents({rfc8414: _metadata("https://id.test")})
    await _discover(documents, "https://id.test/")
    assert documents.asked == [
        "https://id.test/.well-known/openid-configuration",
        "https://id.test/.well-known/oauth-authorization-server",
    ]


@pytest.mark.parametrize(
    "issuer_in_document",
    ["https://id.test", "https://id.test/tenant", "https://id.test/other/v2.0", "https://evil"],
)
async def test_a_path_issuer_must_be_named_exactly(issuer_in_document: str) -> None:
    documents = Documents({RFC8414: _metadata(issuer_in_document)})
    with pytest.raises(OAuth2Error, match="another issuer") as info:
        await _discover(documents)
    assert info.value.error == "discovery_failed"


@pytest.mark.parametrize(
    "field",
    ["token_endpoint", "authorization_endpoint", "device_authorization_endpoint"],
)
@pytest.mark.parametrize(
    "url", ["http://id.test/x", "http://10.0.0.1/x", "ftp://id.test/x", "https:///x", "http://[::1"]
)
async def test_discovered_endpoints_must_be_https(field: str, url: str) -> None:
    documents = Documents({OIDC: _metadata(**{field: url})})
    with pytest.raises(OAuth2Error) as info:
        await _discover(documents)
    assert info.value.error == "insecure_endpoint"


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8080", "127.9.8.7", "[::1]:8443", "localhost:9000", "LOCALHOST"]
)
async def test_plain_http_is_accepted_for_a_loopback_host(host: str) -> None:
    issuer = f"http://{host}/realm"
    oidc = f"http://{host.lower()}/realm/.well-known/openid-configuration"  # as httpx sends it
    token_url = f"http://{host}/realm/token"
    documents = Documents({oidc: _metadata(issuer, token_endpoint=token_url)})
    assert (await _discover(documents, issuer)).token_url == token_url


async def test_a_plain_http_issuer_is_refused_before_anything_is_fetched() -> None:
    documents = Documents({})
    with pytest.raises(OAuth2Error) as info:
        await _discover(documents, "http://id.test/tenant")
    assert info.value.error == "insecure_endpoint"
    assert documents.asked == []
    with pytest.raises(OAuth2Error, match="query"):
        await _discover(documents, "https://id.test/tenant?x=1")


@pytest.mark.integration
async def test_discovery_of_a_path_issuer_at_the_real_server(
    standalone_oauth: OAuthServerControl,
) -> None:
    issuer = f"{standalone_oauth.base_url}/tenant/v2.0"
    # The server has no OIDC document: the RFC 8414 one (host, well-known, path) answers.
    endpoint = await providers.discover(
        issuer, client_id="test-client", client_secret="test-secret", scopes=["mail"]
    )
    assert endpoint.token_url == standalone_oauth.token_url
    minted = standalone_oauth.mint_token("alice@example.test", with_refresh_token=True)
    async with RefreshTokenProvider(
        endpoint, account="alice@example.test", refresh_token=minted["refresh_token"]
    ) as provider:
        assert (await provider.get_token()).token
