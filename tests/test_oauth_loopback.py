"""The authorization-code flow's loopback redirect (RFC 8252 §7.3, §8.3): which host the
redirect URI names and which addresses the listener binds, driven through the real
authorization server (its 302 carries the code to the listener)."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx
import pytest

from trio_mailoauth.errors import OAuth2Error
from trio_mailoauth.oauth import AuthorizationCodeFlow, Endpoint, providers
from trio_mailoauth.testing.oauth_server import OAuthServerControl

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USER = "alice@example.test"


def _endpoint(oauth: OAuthServerControl) -> Endpoint:
    return providers.generic(
        token_url=oauth.token_url,
        client_id="public-client",
        scopes=["mail"],
        authorization_url=oauth.authorization_url,
    )


class Browser:
    """Asks the authorization server for the code, then delivers the redirect to the address
    it chooses (a browser may pick any address the redirect's host name resolves to)."""

    def __init__(self, connect_to: str | None = None) -> None:
        self.connect_to = connect_to
        self.redirect_uris: list[str] = []

    async def __call__(self, url: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as browser:
            answer = await browser.get(url)
            assert answer.status_code == 302, answer.text
            location = httpx.URL(answer.headers["location"])
            self.redirect_uris.append(httpx.URL(url).params["redirect_uri"])
            if self.connect_to is not None:
                location = location.copy_with(host=self.connect_to)
            page = await browser.get(location)
            assert page.status_code == 200
            assert b"Logged in" in page.content


async def _login(oauth: OAuthServerControl, browser: Browser, **options: Any) -> str:
    flow = AuthorizationCodeFlow(_endpoint(oauth), account=USER, open_browser=browser, **options)
    with anyio.fail_after(10):
        async with await flow.run() as provider:
            return (await provider.get_token()).token


async def test_the_default_redirect_is_the_ipv4_loopback_literal(
    standalone_oauth: OAuthServerControl,
) -> None:
    browser = Browser()
    assert await _login(standalone_oauth, browser)
    assert httpx.URL(browser.redirect_uris[0]).host == "127.0.0.1"


async def test_the_ipv6_loopback_literal(standalone_oauth: OAuthServerControl) -> None:
    browser = Browser()
    assert await _login(standalone_oauth, browser, redirect_host="::1")
    assert browser.redirect_uris[0].startswith("http://[::1]:")


async def test_localhost_listens_on_every_address_it_resolves_to(
    standalone_oauth: OAuthServerControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As this system resolves it (127.0.0.1 here), the browser going to "localhost" itself.
    assert await _login(standalone_oauth, Browser(), redirect_host="localhost")
    # A system whose localhost is both 127.0.0.1 and ::1: a browser may use either one.
    real = anyio.getaddrinfo

    async def getaddrinfo(host: str, port: object, **kwargs: Any) -> Any:
        if host != "localhost":
            return await real(host, port, **kwargs)  # type: ignore[arg-type]
        tcp = socket.SOCK_STREAM
        return [
            (socket.AF_INET6, tcp, 6, "", ("::1", 0, 0, 0)),
            (socket.AF_INET, tcp, 6, "", ("127.0.0.1", 0)),
        ]

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)
    for address in ("::1", "127.0.0.1"):
        browser = Browser(connect_to=address)
        assert await _login(standalone_oauth, browser, redirect_host="localhost")
        assert httpx.URL(browser.redirect_uris[0]).host == "localhost"


async def test_localhost_resolving_off_the_loopback_is_refused(
    standalone_oauth: OAuthServerControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def getaddrinfo(host: str, port: object, **kwargs: Any) -> Any:
        tcp = socket.SOCK_STREAM
        return [(socket.AF_INET, tcp, 6, "", ("192.0.2.7", 0))]  # a hosts file gone wrong

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)
    opened: list[str] = []
    flow = AuthorizationCodeFlow(
        _endpoint(standalone_oauth),
        account=USER,
        open_browser=opened.append,
        redirect_host="localhost",
    )
    with (
        anyio.fail_after(10),
        pytest.raises(ValueError, match=r"192\.0\.2\.7.*not only to loopback"),
    ):
        await flow.run()
    assert opened == []  # nobody was sent to log in


@pytest.mark.parametrize("host", ["example.com", "0.0.0.0", "192.168.1.2", "::", "localhost."])
def test_a_redirect_host_off_the_loopback_is_refused(host: str) -> None:
    endpoint = providers.generic(token_url="https://id.test/t", client_id="c")
    with pytest.raises(ValueError, match="redirect_host"):
        AuthorizationCodeFlow(endpoint, account=USER, redirect_host=host)


async def test_a_refusal_in_the_redirect_is_the_providers_typed_error(
    standalone_oauth: OAuthServerControl,
) -> None:
    pages: list[int] = []

    async def browser(url: str) -> None:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=True) as client:
            pages.append((await client.get(url)).status_code)

    # The server knows no eve: it redirects with error=access_denied.
    flow = AuthorizationCodeFlow(
        _endpoint(standalone_oauth),
        account=USER,
        open_browser=browser,
        login_hint="eve@example.test",
    )
    with anyio.fail_after(10), pytest.raises(OAuth2Error) as info:
        await flow.run()
    assert info.value.error == "access_denied"  # an OAuth2Error, not an ExceptionGroup
