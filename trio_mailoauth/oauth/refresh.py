"""The refreshing-provider core (single flight, proactive refresh, backoff) and the
refresh-token provider on top of it.

How one refresh serves every waiter, without a task group the user has to open: the first
caller that needs a new token becomes the *leader*; it runs the grant inside a **shielded**
cancel scope (with its own deadline, ``refresh_timeout``) and publishes the outcome on one
event (see :func:`_new_signal`). Every other caller waits on that event and does nothing else:
10,000 of them cost what waking 10,000 tasks costs the event loop, no more (docs/tokens.md,
the token storm). A waiter that is cancelled stops waiting at once; a leader that is
cancelled finishes the refresh first (at most ``refresh_timeout`` seconds) and is cancelled
right after, so the token it paid for is never thrown away and the other waiters are served.
This keeps providers usable from any task, on trio and asyncio alike, with no background task
to own or leak.

Proactive refresh: inside the window before expiry (5 minutes or half the lifetime, whichever
is shorter, minus up to 25 % jitter so a fleet does not refresh in lockstep; when the issuer
suggests a time, Microsoft's ``refresh_in``, the window starts there, with the same jitter),
the next caller leads a refresh while every other caller keeps getting the still-valid token;
if that refresh fails, the valid token is served and the refresh is tried again later.

Failures: a 429/5xx/network error (:class:`TemporaryOAuth2Error`) never touches the refresh
token; the provider backs off for ``Retry-After`` (seconds or HTTP date) or exponentially
(1 s, 2 s, ... 60 s) and, while backing off, answers at once with a TemporaryOAuth2Error whose
``retry_after`` says how long is left, instead of hammering the endpoint.

HTTP: pass an ``httpx.AsyncClient`` as ``http=`` to share its connection pool; otherwise the
provider creates one on first use and :meth:`CachingTokenProvider.aclose` closes it (an
injected client is never closed by the provider).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Protocol, Self

import anyio
import anyio.lowlevel
import httpx
import sniffio
import trio

from trio_mailoauth.errors import (
    InteractionRequiredError,
    InvalidGrantError,
    OAuth2ClientError,
    OAuth2Error,
    TemporaryOAuth2Error,
)
from trio_mailoauth.oauth.grants import (
    MAX_RESPONSE_BYTES,
    Endpoint,
    TokenRequest,
    TokenResponse,
    parse_token_response,
    refresh_request,
)
from trio_mailoauth.oauth.stores import MemoryTokenStore, StoredTokens, TokenStore
from trio_mailoauth.oauth.tokens import AccessToken

__all__ = ["CachingTokenProvider", "ProviderStats", "RefreshTokenProvider"]

logger = logging.getLogger("trio_mailoauth.oauth")

DEFAULT_REFRESH_WINDOW = 300.0
# Early refreshes start up to this fraction of their window late (see _plan_refresh).
_JITTER = 0.25
DEFAULT_REFRESH_TIMEOUT = 60.0
# A token with less than this left is not handed out: a login takes a few round trips.
EXPIRY_LEEWAY = 10.0
# Exponential backoff after temporary failures without Retry-After: 1, 2, 4 ... 60 s.
_BACKOFF_BASE = 1.0
_BACKOFF_MAX = 60.0
# Rejected tokens remembered so a store's copy of one is never served again.
_REJECTED_MEMORY = 16


@dataclass
class ProviderStats:
    """Counters of one provider (read them; the provider updates them)."""

    requests: int = 0  # token requests sent
    refreshes: int = 0  # successful token responses (any grant)
    failures: Counter[str] = field(default_factory=Counter)  # by kind, see _failure_kind
    waiters_served: int = 0  # get_token() calls answered by a refresh another call led
    cache_hits: int = 0
    store_hits: int = 0  # tokens another process (or provider) had already refreshed
    invalidations: int = 0  # invalidate() calls that dropped the current token


def _failure_kind(error: OAuth2Error) -> str:
    if isinstance(error, InteractionRequiredError):
        return "interaction_required"
    if isinstance(error, InvalidGrantError):
        return "invalid_grant"
    if isinstance(error, OAuth2ClientError):
        return "client_error"
    if isinstance(error, TemporaryOAuth2Error):
        return "temporary"
    return "other"


def _clone(error: OAuth2Error) -> OAuth2Error:
    """A copy of the flight's error for one more waiter (raising one object from thousands of
    tasks would grow its traceback with every raise). It keeps the original's cause."""
    copy = type(error).__new__(type(error))
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    copy.__cause__ = error.__cause__
    copy.__suppress_context__ = error.__suppress_context__
    return copy


def _typed(error: Exception) -> OAuth2Error:
    """The error every caller of a failed refresh gets: OAuth2Errors as they are, anything
    else (a store that cannot decrypt, a bug) wrapped so callers need to catch one type."""
    if isinstance(error, OAuth2Error):
        return error
    wrapped = OAuth2Error("refresh_failed", f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


async def read_capped(response: httpx.Response) -> bytes:
    """A streamed response's body, up to MAX_RESPONSE_BYTES + 1 bytes: enough for the parser
    to see that it is too big, without buffering whatever a broken server sends."""
    body = bytearray()
    # Breaking off leaves httpx's body generators to the garbage collector; closing the
    # stream (the caller's ``async with client.stream(...)``) closes the connection.
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            del body[MAX_RESPONSE_BYTES + 1 :]
            break
    return bytes(body)


@dataclass(frozen=True)
class _Reply:
    """A token endpoint's answer (``started``: when the request began, POSIX time)."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    started: float


class _Signal(Protocol):
    """What a flight needs of an event: trio's, asyncio's and anyio's all have it."""

    def set(self) -> None: ...

    async def wait(self) -> object: ...


def _new_signal() -> _Signal:
    """The running loop's own event where we know it, else anyio's.

    anyio.Event wraps the loop's event, and its ``wait()`` is one more coroutine per waiter:
    one allocation and one more frame to suspend and resume. With 10,000 waiters on a flight
    that was 5-6 % of the time to serve them all (docs/tokens.md). Only ``set()`` and
    ``wait()`` of an unset event are used, where the three behave alike (cancellation
    included: anyio cancels a task the loop's own way).
    """
    library = sniffio.current_async_library()
    if library == "trio":
        return trio.Event()
    if library == "asyncio":
        return asyncio.Event()
    return anyio.Event()


class _Flight:
    """One refresh in progress, and its outcome for the callers waiting on it."""

    __slots__ = ("done", "error", "token")

    def __init__(self) -> None:
        self.done = _new_signal()
        self.token: AccessToken | None = None
        self.error: OAuth2Error | None = None


class CachingTokenProvider:
    """Base of the refreshing providers: caching, single flight, backoff, statistics, HTTP.

    Subclasses implement :meth:`_fetch` (one grant; may raise an OAuth2Error).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        refresh_window: float = DEFAULT_REFRESH_WINDOW,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._owns_http = http is None
        self._refresh_window = refresh_window
        self._refresh_timeout = refresh_timeout
        self._clock = clock
        self._current: AccessToken | None = None
        self._refresh_at = float("inf")
        self._flight: _Flight | None = None
        self._not_before = 0.0
        self._last_temporary: TemporaryOAuth2Error | None = None
        self._failures_in_row = 0
        self._rejected: deque[str] = deque(maxlen=_REJECTED_MEMORY)
        self.stats = ProviderStats()

    # --- the TokenProvider protocol -------------------------------------------------------

    async def get_token(self) -> AccessToken:
        """A token believed valid; at most one refresh runs, whatever the number of callers."""
        now = self._clock()
        current = self._current
        if current is not None and self._usable(current, now):
            if now < self._refresh_at or self._flight is not None or now < self._not_before:
                self.stats.cache_hits += 1
                return current
            try:  # proactive: this caller leads; everyone else keeps the valid token
                return await self._lead(current)
            except OAuth2Error as exc:
                if self._current is None:  # invalidated meanwhile: a server rejected it
                    raise
                logger.warning("%r: early refresh failed (%s); serving the valid token", self, exc)
                remaining = (current.expires_at or now) - now
                self._refresh_at = now + min(30.0, max(remaining / 2, 1.0))
                return current
        flight = self._flight
        if flight is not None:
            await flight.done.wait()
            self.stats.waiters_served += 1
            if flight.error is not None:
                raise _clone(flight.error)
            assert flight.token is not None
            return flight.token
        if now < self._not_before:
            last = self._last_temporary
            raise TemporaryOAuth2Error(
                last.error if last else "backing_off",
                "the token endpoint failed recently; not asking again yet"
                + (f" (last: {last.error_description})" if last and last.error_description else ""),
                retry_after=self._not_before - now,
            )
        return await self._lead(current)

    def invalidate(self, token: AccessToken) -> None:
        """A server rejected ``token``: drop it unless it has already been replaced."""
        if self._current is not None and self._current.token == token.token:
            self._current = None
            self._refresh_at = float("inf")
            self.stats.invalidations += 1
            logger.debug("%r: token invalidated", self)
        if token.token not in self._rejected:
            self._rejected.append(token.token)

    # --- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP client if the provider created it (an injected one stays open)."""
        if self._owns_http and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the single flight ----------------------------------------------------------------

    async def _lead(self, stale: AccessToken | None) -> AccessToken:
        flight = _Flight()
        self._flight = flight
        try:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + self._refresh_timeout
                try:
                    flight.token = await self._fetch(stale)
                except Exception as exc:
                    flight.error = _typed(exc)
            # Only our own deadline can cancel inside the shield; its Cancelled stops here.
            if scope.cancelled_caught:
                flight.error = TemporaryOAuth2Error(
                    "timeout", f"no token after {self._refresh_timeout:g} s"
                )
        finally:
            self._flight = None
            if flight.token is None and flight.error is None:
                # A BaseException (KeyboardInterrupt...) is leaving the leader: the waiters
                # still get an answer instead of waiting forever.
                flight.error = OAuth2Error("refresh_aborted", "the refreshing task was aborted")
            if flight.error is not None:
                self._record_failure(flight.error)
            elif flight.token is not None:
                self._record_success(flight.token)
            flight.done.set()
        # A leader cancelled during the refresh is cancelled now that the waiters are served.
        await anyio.lowlevel.checkpoint_if_cancelled()
        if flight.error is not None:
            raise flight.error
        assert flight.token is not None
        return flight.token

    def _record_success(self, token: AccessToken) -> None:
        self._current = token
        self._failures_in_row = 0
        self._not_before = 0.0
        self._last_temporary = None
        self._refresh_at = self._plan_refresh(token)

    def _record_failure(self, error: OAuth2Error) -> None:
        self.stats.failures[_failure_kind(error)] += 1
        if isinstance(error, TemporaryOAuth2Error):
            self._failures_in_row += 1
            delay = error.retry_after
            if delay is None:
                delay = min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** (self._failures_in_row - 1))
            self._not_before = self._clock() + delay
            self._last_temporary = error
        logger.warning("%r: token request failed: %s", self, error)

    def _plan_refresh(self, token: AccessToken) -> float:
        """When the next caller should lead an early refresh of ``token``.

        Both plans are jittered (later by up to a quarter of the window they leave before
        expiry) so a fleet that got its tokens together does not refresh in lockstep.
        """
        if token.refresh_on is not None:
            # The issuer's suggestion (Microsoft's refresh_in) is one instant for everyone.
            end = token.expires_at if token.expires_at is not None else token.refresh_on
            window = max(end - token.refresh_on, 0.0)
            return token.refresh_on + random.uniform(0.0, window * _JITTER)
        if token.expires_at is None:
            return float("inf")
        lifetime = token.expires_at - (token.obtained_at or self._clock())
        window = min(self._refresh_window, max(lifetime, 0.0) / 2)
        return token.expires_at - window + random.uniform(0.0, window * _JITTER)

    def _usable(self, token: AccessToken, now: float) -> bool:
        return not token.is_expired(now, leeway=EXPIRY_LEEWAY)

    def _fresh_enough(self, token: AccessToken) -> bool:
        """Worth serving instead of refreshing: valid, not rejected, not due for refresh."""
        now = self._clock()
        return (
            self._usable(token, now)
            and token.token not in self._rejected
            and now < self._plan_refresh(token)
        )

    # --- HTTP -----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        return self._http

    async def _send(self, request: TokenRequest) -> _Reply:
        """POST one request; network trouble becomes TemporaryOAuth2Error."""
        started = self._clock()
        self.stats.requests += 1
        logger.debug("%r: %s request to %s", self, request.grant, request.url)
        auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if request.basic_auth is not None:
            auth = httpx.BasicAuth(*request.basic_auth)
        try:
            async with self._client().stream(
                "POST",
                request.url,
                data=dict(request.form),
                auth=auth,
                headers={"Accept": "application/json"},
            ) as response:
                body = await read_capped(response)
        except httpx.HTTPError as exc:
            # `from None`: the httpx exception holds the request, and the request its form.
            raise TemporaryOAuth2Error(
                "network_error", f"{type(exc).__name__} talking to {request.url}: {exc}"
            ) from None
        return _Reply(response.status_code, response.headers, body, started)

    async def _post(self, request: TokenRequest) -> TokenResponse:
        reply = await self._send(request)
        parsed = parse_token_response(
            reply.status, reply.headers, reply.body, started=reply.started
        )
        self.stats.refreshes += 1
        return parsed

    async def _fetch(self, stale: AccessToken | None) -> AccessToken:
        """Get a new token (``stale`` is the one being replaced, if any)."""
        raise NotImplementedError


def store_key(endpoint: Endpoint, account: str, scopes: tuple[str, ...]) -> str:
    """The store key: one token family per (token URL, client, account, scopes)."""
    return "|".join((endpoint.token_url, endpoint.client_id, account, " ".join(scopes)))


class RefreshTokenProvider(CachingTokenProvider):
    """Access tokens from a refresh token (RFC 6749 §6), rotation-safe.

    ``endpoint`` comes from a preset (``providers.microsoft(...)``). ``refresh_token`` seeds
    the store when it holds nothing for this account yet (a stored, possibly rotated, token
    always wins). The store (default: in memory) keeps the newest refresh token and the current
    access token; a rotated refresh token is saved before the new access token is returned.

    With a shared store (:class:`SQLiteTokenStore`) the refresh runs under the store's lease:
    a second process waits and then uses the tokens the first one stored. After
    ``invalid_grant`` the store is read again: if someone rotated the refresh token meanwhile,
    the new one is tried once.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        account: str,
        refresh_token: str | None = None,
        store: TokenStore | None = None,
        scopes: tuple[str, ...] | None = None,
        http: httpx.AsyncClient | None = None,
        refresh_window: float = DEFAULT_REFRESH_WINDOW,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
    ) -> None:
        super().__init__(http=http, refresh_window=refresh_window, refresh_timeout=refresh_timeout)
        self.endpoint = endpoint
        self.account = account
        self.scopes = endpoint.scopes if scopes is None else tuple(scopes)
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.key = store_key(endpoint, account, self.scopes)
        self._seed = refresh_token

    def __repr__(self) -> str:
        return f"RefreshTokenProvider({self.endpoint.name}, account={self.account!r})"

    async def _fetch(self, stale: AccessToken | None) -> AccessToken:
        # The refresh below ends by our deadline (the leader's shielded scope): the lease
        # must not expire before, or a sibling process could spend the same refresh token.
        async with self.store.lease(self.key, hold_for=self._refresh_timeout):
            record = await self.store.load(self.key)
            if record.version == 0 and self._seed is not None:
                await self.store.save(self.key, StoredTokens(self._seed), 0)
                record = await self.store.load(self.key)
            self._seed = None
            cached = record.access_token
            if (
                cached is not None
                and (stale is None or cached.token != stale.token)
                and self._fresh_enough(cached)
            ):
                self.stats.store_hits += 1
                return cached
            return await self._refresh(record, retried=False)

    async def _refresh(self, record: StoredTokens, *, retried: bool) -> AccessToken:
        if record.refresh_token is None:
            raise InvalidGrantError(
                "no_refresh_token", f"no refresh token is stored for {self.account}: log in first"
            )
        request = refresh_request(self.endpoint, record.refresh_token, self.scopes)
        try:
            response = await self._post(request)
        except InvalidGrantError:
            latest = await self.store.load(self.key)
            if not retried and latest.refresh_token not in (None, record.refresh_token):
                logger.info("%r: the refresh token was rotated elsewhere; retrying", self)
                return await self._refresh(latest, retried=True)
            raise
        new = StoredTokens(response.refresh_token or record.refresh_token, response.access_token)
        await self._save_newest(new, record.version, rotated=response.refresh_token is not None)
        return response.access_token

    async def _save_newest(self, tokens: StoredTokens, version: int, *, rotated: bool) -> None:
        """Persist what the server issued last, before anyone uses its access token.

        ``version`` is the one read before the grant. The compare-and-swap only fails when
        someone wrote since, although we hold the lease (it expired?). A refresh token the
        server just issued (``rotated``) is the newest one: write it over whatever is there.
        One that did not rotate is not: keep the refresh token found in the store then.
        """
        while not await self.store.save(self.key, tokens, version):
            latest = await self.store.load(self.key)
            version = latest.version
            if not rotated:
                tokens = replace(tokens, refresh_token=latest.refresh_token)
