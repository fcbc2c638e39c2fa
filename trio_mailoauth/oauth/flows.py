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
import errno
import inspect
import ipaddress
import logging
import secrets
import socket
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
# RFC 8252 §7.3: loopback redirects use the IP literal; its spelling in the redirect URI.
_LOOPBACK_LITERALS = {"127.0.0.1": "127.0.0.1", "::1": "::1", "[::1]": "::1"}
# Binding "localhost"'s addresses on one ephemeral port can collide with another program's
# socket on the second address; a few fresh ports settle it.
_BIND_ATTEMPTS = 10

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


async def _loopback_addresses(host: str) -> list[str]:
    """The addresses to listen on for ``redirect_host``: the literal itself, or every
    address ``localhost`` resolves to, which must all be loopback addresses."""
    if host != "localhost":
        return [_LOOPBACK_LITERALS[host]]
    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    strays = [a for a in addresses if not ipaddress.ip_address(a.partition("%")[0]).is_loopback]
    if strays or not addresses:
        # A hosts file can map localhost anywhere: the redirect (with its code) would then
        # be offered on a network interface (RFC 8252 §8.3).
        raise ValueError(
            f"'localhost' resolves to {', '.join(strays) or 'nothing'}, not only to loopback"
            " addresses: refusing to listen there; use redirect_host='127.0.0.1'"
        )
    return addresses


async def _bind_loopback(addresses: list[str]) -> list[anyio.abc.SocketListener]:
    """One listener per address, all on the same ephemeral port (the redirect URI names
    one port, and the browser may connect to any address of the name)."""
    for attempt in range(_BIND_ATTEMPTS):
        listeners: list[anyio.abc.SocketListener] = []
        try:
            port = 0
            for address in addresses:
                multi = await anyio.create_tcp_listener(local_host=address, local_port=port)
                listener = multi.listeners[0]
                assert isinstance(listener, anyio.abc.SocketListener)
                listeners.append(listener)
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
            # The port the first address got may be taken on another: try a new one.
            in_use = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            if not in_use or attempt == _BIND_ATTEMPTS - 1:
                raise
            continue
        return listeners
    raise AssertionError("unreachable")  # pragma: no cover


class AuthorizationCodeFlow:
    """Log a user in through their browser; ``await flow.run()`` returns the provider.

    ``redirect_host`` is the loopback IP literal ``127.0.0.1`` (RFC 8252 §7.3) or ``::1``.
    ``"localhost"`` (RFC 8252 §8.3: not recommended, but some registrations accept nothing
    else) listens on every address the name resolves to, on one port, and is refused if any
    of them is not a loopback address; any other host is refused (``ValueError``).
    ``login_hint`` pre-fills the account at the provider (defaults to ``account``). The
    listener only accepts the redirect that carries this flow's ``state``; others get a
    404/400 page and the flow keeps waiting (cancel it to give up, e.g. with
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
        if redirect_host != "localhost" and redirect_host not in _LOOPBACK_LITERALS:
            raise ValueError(
                f"redirect_host must be '127.0.0.1', '::1' or 'localhost', not {redirect_host!r}:"
                " the redirect listener binds loopback addresses only (RFC 8252 §7.3)"
            )
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
        listeners = await _bind_loopback(await _loopback_addresses(self._redirect_host))
        try:
            port = listeners[0].extra(anyio.abc.SocketAttribute.local_port)
            host = "[::1]" if self._redirect_host in ("::1", "[::1]") else self._redirect_host
            redirect_uri = f"http://{host}:{port}/"
            url = authorization_url(
                self.endpoint,
                redirect_uri=redirect_uri,
                state=state,
                code_challenge=challenge,
                login_hint=self._login_hint,
            )
            # The first listener that gets our redirect decides; its outcome (a code or the
            # provider's error) is kept rather than raised inside the task group, where it
            # would reach the caller wrapped in an ExceptionGroup.
            outcome: list[str | OAuth2Error] = []
            async with anyio.create_task_group() as tg:

                async def serve(listener: anyio.abc.SocketListener) -> None:
                    result: str | OAuth2Error
                    try:
                        result = await self._wait_for_code(listener, state)
                    except OAuth2Error as exc:
                        result = exc
                    if not outcome:
                        outcome.append(result)
                    tg.cancel_scope.cancel()

                for listener in listeners:
                    tg.start_soon(serve, listener)
                tg.start_soon(_call, self._open_browser, url)
        finally:
            with anyio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
        if not outcome:  # pragma: no cover - the group only ends once a listener decided
            raise OAuth2Error("no_redirect", "the login ended without a redirect")
        if isinstance(outcome[0], OAuth2Error):
            raise outcome[0]
        request = authorization_code_request(self.endpoint, outcome[0], redirect_uri, verifier)
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
