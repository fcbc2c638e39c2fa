"""Interactive logins that end in a stored refresh token.

- :class:`AuthorizationCodeFlow`: authorization code + PKCE S256 for native apps (RFC 8252).
  A one-shot HTTP listener on ``127.0.0.1:<ephemeral port>`` receives the redirect and checks
  its ``state``; the user opens the URL in a browser (``open_browser`` is called with it; by
  default the URL is printed and the system browser is asked to open it).
- :class:`DeviceCodeFlow`: the device authorization grant (RFC 8628) for machines without a
  browser: show a code, poll every ``interval`` seconds (``slow_down`` adds 5 s,
  ``authorization_pending`` keeps polling, ``access_denied``/``expired_token`` stop).

Both return a :class:`~trio_mailoauth.oauth.refresh.RefreshTokenProvider` whose store already
holds the new refresh token and access token.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import secrets
import sys
import webbrowser
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from trio_mailoauth.errors import OAuth2Error, TemporaryOAuth2Error
from trio_mailoauth.oauth.grants import (
    DeviceAuthorization,
    Endpoint,
    TokenResponse,
    authorization_code_request,
    authorization_url,
    device_authorization_request,
    device_token_request,
    make_pkce,
    parse_device_authorization,
    parse_redirect,
)
from trio_mailoauth.oauth.refresh import RefreshTokenProvider
from trio_mailoauth.oauth.stores import StoredTokens, TokenStore

__all__ = ["AuthorizationCodeFlow", "DeviceCodeFlow"]

logger = logging.getLogger("trio_mailoauth.oauth")

# The redirect is one short GET; a request head larger than this is not our browser.
_MAX_REQUEST_HEAD = 16 * 1024
# A connection that sends nothing (a browser's speculative pre-connect) is dropped after this
# so the listener can take the real redirect.
_READ_TIMEOUT = 10.0
# RFC 8628 §3.5: slow_down adds 5 seconds to the polling interval.
SLOW_DOWN_SECONDS = 5.0
# A server that says interval=0 is still not polled in a busy loop.
_MIN_POLL_INTERVAL = 0.05

_PAGE_OK = b"<html><body><p>Logged in. You can close this window.</p></body></html>"
_PAGE_FAILED = b"<html><body><p>The login failed; see the application.</p></body></html>"

Callback = Callable[[str], Awaitable[object] | object]


async def _call(callback: Callable[..., object], *args: object) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


async def _default_browser(url: str) -> None:
    print(f"Open this URL in a browser to log in:\n  {url}", file=sys.stderr)
    await anyio.to_thread.run_sync(webbrowser.open, url)


def _default_prompt(auth: DeviceAuthorization) -> None:
    where = auth.verification_uri_complete or auth.verification_uri
    print(f"To log in, open {where} and enter the code {auth.user_code}", file=sys.stderr)


async def _persist(provider: RefreshTokenProvider, response: TokenResponse) -> None:
    if response.refresh_token is None:
        raise OAuth2Error(
            "no_refresh_token",
            "the server issued no refresh token (Google: access_type=offline and "
            "prompt=consent; Microsoft: the offline_access scope)",
        )
    async with provider.store.lease(provider.key):
        record = await provider.store.load(provider.key)
        tokens = StoredTokens(response.refresh_token, response.access_token)
        await provider._save_newest(tokens, record.version, rotated=True)
    provider._record_success(response.access_token)


async def _read_request_target(stream: anyio.abc.ByteStream) -> str | None:
    head = b""
    with anyio.move_on_after(_READ_TIMEOUT):
        while b"\r\n\r\n" not in head and len(head) < _MAX_REQUEST_HEAD:
            try:
                chunk = await stream.receive(4096)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "GET":
        return None
    return parts[1]


async def _answer(stream: anyio.abc.ByteStream, status: str, page: bytes) -> None:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(page)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(head.encode() + page)


class AuthorizationCodeFlow:
    """Log a user in through their browser; ``await flow.run()`` returns the provider.

    ``redirect_host`` is ``127.0.0.1`` (RFC 8252 §7.3); Microsoft registrations may need
    ``"localhost"``. ``login_hint`` pre-fills the account at the provider (defaults to
    ``account``). The listener only accepts the redirect that carries this flow's ``state``;
    others get a 404/400 page and the flow keeps waiting (cancel it to give up, e.g. with
    ``anyio.fail_after``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        account: str,
        store: TokenStore | None = None,
        open_browser: Callback | None = None,
        login_hint: str | None = None,
        redirect_host: str = "127.0.0.1",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.account = account
        self._store = store
        self._open_browser: Callback = open_browser or _default_browser
        self._login_hint = account if login_hint is None else login_hint
        self._redirect_host = redirect_host
        self._http = http

    def __repr__(self) -> str:
        return f"AuthorizationCodeFlow({self.endpoint.name}, account={self.account!r})"

    async def run(self) -> RefreshTokenProvider:
        provider = RefreshTokenProvider(
            self.endpoint, account=self.account, store=self._store, http=self._http
        )
        try:
            await self._run(provider)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await provider.aclose()  # the HTTP client it may have opened
            raise
        logger.info("%r: logged in", self)
        return provider

    async def _run(self, provider: RefreshTokenProvider) -> None:
        verifier, challenge = make_pkce()
        state = secrets.token_urlsafe(24)
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with multi:
            listener = multi.listeners[0]
            assert isinstance(listener, anyio.abc.SocketListener)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            redirect_uri = f"http://{self._redirect_host}:{port}/"
            url = authorization_url(
                self.endpoint,
                redirect_uri=redirect_uri,
                state=state,
                code_challenge=challenge,
                login_hint=self._login_hint,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(_call, self._open_browser, url)
                code = await self._wait_for_code(listener, state)
                tg.cancel_scope.cancel()
        request = authorization_code_request(self.endpoint, code, redirect_uri, verifier)
        await _persist(provider, await provider._post(request))

    async def _wait_for_code(self, listener: anyio.abc.SocketListener, state: str) -> str:
        while True:
            stream = await listener.accept()
            async with stream:
                target = await _read_request_target(stream)
                if target is None:
                    continue
                path, _, query = target.partition("?")
                if path != "/":
                    await _answer(stream, "404 Not Found", b"")
                    continue
                try:
                    code = parse_redirect(query, state)
                except OAuth2Error as exc:
                    await _answer(stream, "400 Bad Request", _PAGE_FAILED)
                    if exc.error == "invalid_state":
                        logger.warning("%r: ignored a redirect with a wrong state", self)
                        continue  # someone else's redirect: keep waiting for ours
                    raise
                await _answer(stream, "200 OK", _PAGE_OK)
                return code


class DeviceCodeFlow:
    """Log a user in with a code they enter on another device; ``await flow.run()``.

    ``on_prompt`` is called with the :class:`DeviceAuthorization` (user code, URL) to show;
    by default it is printed. ``slow_down_increment`` is RFC 8628's 5 seconds.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        account: str,
        store: TokenStore | None = None,
        on_prompt: Callable[[DeviceAuthorization], Awaitable[object] | object] | None = None,
        slow_down_increment: float = SLOW_DOWN_SECONDS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.account = account
        self._store = store
        self._on_prompt = on_prompt or _default_prompt
        self._slow_down = slow_down_increment
        self._http = http
        self.polls = 0

    def __repr__(self) -> str:
        return f"DeviceCodeFlow({self.endpoint.name}, account={self.account!r})"

    async def run(self) -> RefreshTokenProvider:
        provider = RefreshTokenProvider(
            self.endpoint, account=self.account, store=self._store, http=self._http
        )
        try:
            await self._poll(provider)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await provider.aclose()
            raise
        logger.info("%r: logged in", self)
        return provider

    async def _poll(self, provider: RefreshTokenProvider) -> None:
        reply = await provider._send(device_authorization_request(self.endpoint))
        auth = parse_device_authorization(
            reply.status, reply.headers, reply.body, now=reply.started
        )
        await _call(self._on_prompt, auth)
        interval = max(auth.interval, _MIN_POLL_INTERVAL)
        deadline = anyio.current_time() + auth.expires_in
        while True:
            if anyio.current_time() + interval > deadline:
                raise OAuth2Error("expired_token", "the user did not answer in time")
            await anyio.sleep(interval)
            self.polls += 1
            try:
                tokens = await provider._post(device_token_request(self.endpoint, auth.device_code))
            except TemporaryOAuth2Error as exc:
                interval = max(interval, exc.retry_after or 0.0, 1.0)
                continue
            except OAuth2Error as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += self._slow_down
                    continue
                raise  # access_denied, expired_token, invalid_grant...
            await _persist(provider, tokens)
            return
