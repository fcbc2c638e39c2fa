"""A local OAuth2 authorization server for tests, and a client for its test controls.

Run it as its own process::

    python -m trio_mailoauth.testing.oauth_server --host 127.0.0.1 --port 10080 \\
        [--user alice@example.test ...] [--state-file PATH]

It is built on the stdlib's :class:`http.server.ThreadingHTTPServer` on purpose: it adds no
dependency, every grant is a few lines, and fault injection (delays, 5xx with ``Retry-After``,
garbage bodies) needs full control of what goes on the wire. It is a real HTTP server on
loopback because Dovecot calls its introspection endpoint.

Endpoints (form-encoded requests, JSON answers, RFC 6749 errors):

- ``POST /token``: ``refresh_token`` (rotation is a test setting), ``client_credentials``,
  ``authorization_code`` (+ PKCE S256), ``urn:ietf:params:oauth:grant-type:device_code``,
  ``urn:ietf:params:oauth:grant-type:jwt-bearer`` (RS256 assertion, ``aud`` = the token URL).
  ``client_credentials`` accepts a test-only form field ``subject=<mailbox>`` that binds the
  app-only token to that mailbox, so Dovecot's introspection has an ``email`` to log in as;
  without it the token belongs to no mailbox and Dovecot rejects it.
- ``GET /authorize``: no browser; ``login_hint=<user>`` is the user who consents. Answers 302.
- ``POST /device_authorization`` (RFC 8628), ``POST /introspect`` (RFC 7662, client
  ``dovecot`` with Basic auth; a bad token is ``200 {"active": false}``), ``POST /revoke``
  (RFC 7009), ``GET /.well-known/oauth-authorization-server[/<issuer path>]`` (RFC 8414).
- ``/_test/...``: JSON controls for tests (no auth; loopback peers only). Use
  :class:`OAuthServerControl` rather than calling them by hand.

Clients: confidential ``test-client``/``test-secret`` (Basic or form secret), public
``public-client`` (PKCE required), ``dovecot``/``dovecot-secret`` (introspection only).
Access tokens are opaque random strings; the log shows method, path and status, never a token,
code or secret.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import os
import signal
import socketserver
import sys
import tempfile
import threading
import time
import types
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from trio_mailoauth.testing.oauth_grants import OAuthState
from trio_mailoauth.testing.oauth_model import (
    CONFIDENTIAL_CLIENT_ID,
    CONFIDENTIAL_CLIENT_SECRET,
    DEFAULT_SCOPE,
    DEFAULT_USERS,
    DEVICE_CODE_GRANT,
    DOVECOT_CLIENT_ID,
    DOVECOT_CLIENT_SECRET,
    ENDPOINTS,
    JWT_BEARER_GRANT,
    PUBLIC_CLIENT_ID,
    OAuthError,
)

__all__ = [
    "CONFIDENTIAL_CLIENT_ID",
    "CONFIDENTIAL_CLIENT_SECRET",
    "DEFAULT_SCOPE",
    "DEFAULT_USERS",
    "DEVICE_CODE_GRANT",
    "DOVECOT_CLIENT_ID",
    "DOVECOT_CLIENT_SECRET",
    "ENDPOINTS",
    "JWT_BEARER_GRANT",
    "PUBLIC_CLIENT_ID",
    "OAuthControlError",
    "OAuthServerControl",
    "main",
    "make_server",
]

# Cap on request bodies: every legitimate request here is well under this (a JWT assertion is
# ~1 KB); anything larger is a bug or an attack on a test process, answered 413.
_MAX_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Benchmarks open thousands of XOAUTH2 sessions; Dovecot then opens many introspection
    # connections at once, more than the stdlib's default backlog of 5.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: OAuthState) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind's socket.getfqdn(): a DNS lookup that can hang for
        # seconds in a sandbox without DNS, for a name nobody uses.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def base_url(self) -> str:
        return f"http://{self.server_name}:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Dovecot and httpx reuse connections
    server_version = "trio-mailoauth-test-oauth/1"
    # Idle keep-alive connections die after this, so threads do not pile up forever.
    timeout = 60
    # Headers and body go out in two writes; with Nagle on, the second waits for the peer's
    # delayed ACK and every keep-alive request takes ~40 ms instead of ~1 ms.
    disable_nagle_algorithm = True

    @property
    def _server(self) -> _Server:
        server = self.server
        assert isinstance(server, _Server)
        return server

    @property
    def state(self) -> OAuthState:
        return self._server.state

    # --- plumbing -----------------------------------------------------------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line may hold codes or hints in its query string: log the path only.
        path = urlsplit(self.path).path
        self.log_message("%s %s %s", self.command, path, code)

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self._server.base_url

    def _token_urls(self) -> set[str]:
        # The URL the client used (Host header) and the canonical one both count as `aud`.
        return {f"{self._base_url()}/token", f"{self._server.base_url}/token"}

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise OAuthError("invalid_request", "body too large", status=413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise OAuthError("invalid_request", "body too large", status=413)
        return self.rfile.read(length) if length > 0 else b""

    def _form(self, body: bytes) -> dict[str, str]:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise OAuthError("invalid_request", "body is not UTF-8") from exc
        form: dict[str, str] = {}
        for key, value in pairs:
            if key in form:  # RFC 6749 §3.1: parameters MUST NOT repeat
                raise OAuthError("invalid_request", f"repeated parameter {key}")
            form[key] = value
        return form

    def _basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(
                "invalid_client",
                "unsupported authorization scheme",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="trio-mailoauth-test"'},
            )
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_request", "malformed Basic credentials") from exc
        client_id, _, secret = decoded.partition(":")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # RFC 6749 §5.1: token responses must not be cached.
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    # --- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        try:
            body = self._read_body() if self.command == "POST" else b""
            if parts.path.startswith("/_test/"):
                self._control(parts.path[len("/_test/") :], body)
                return
            route = {
                ("POST", "/token"): self._token,
                ("GET", "/authorize"): self._authorize,
                ("POST", "/device_authorization"): self._device_authorization,
                ("POST", "/introspect"): self._introspect,
                ("POST", "/revoke"): self._revoke,
            }.get((self.command, parts.path))
            if route is None:
                self._public_get(parts.path)
                return
            endpoint = parts.path.strip("/")
            delay = self.state.count_call(endpoint)
            if delay:
                time.sleep(delay)
            fault = self.state.take_fault(endpoint)
            if fault is not None:
                if endpoint == "token":
                    self.state.count_failure(self._form(body).get("grant_type", ""))
                self._send(fault.status, fault.body, fault.content_type, fault.headers)
                return
            route(parts.query, body)
        except OAuthError as exc:
            self._send_json(exc.status, exc.body(), exc.headers)

    def _public_get(self, path: str) -> None:
        well_known = "/.well-known/oauth-authorization-server"
        if self.command == "GET" and (path == well_known or path.startswith(well_known + "/")):
            base = self._base_url()
            # RFC 8414 §3.1: an issuer with a path (https://host/tenant/v2.0) has its metadata
            # at /.well-known/oauth-authorization-server/tenant/v2.0. Any path names an issuer
            # here (a tenant, say), served by the same endpoints.
            self._send_json(
                200,
                {
                    "issuer": base + path[len(well_known) :],
                    "token_endpoint": f"{base}/token",
                    "authorization_endpoint": f"{base}/authorize",
                    "device_authorization_endpoint": f"{base}/device_authorization",
                    "introspection_endpoint": f"{base}/introspect",
                    "revocation_endpoint": f"{base}/revoke",
                    "grant_types_supported": [
                        "refresh_token",
                        "client_credentials",
                        "authorization_code",
                        DEVICE_CODE_GRANT,
                        JWT_BEARER_GRANT,
                    ],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                        "none",
                    ],
                },
            )
        elif self.command == "GET" and path == "/device":
            text = b"No browser here: tests approve user codes with /_test/device.\n"
            self._send(200, text, "text/plain; charset=utf-8")
        else:
            self._send_json(404, {"error": "not_found", "error_description": "no such endpoint"})

    # --- endpoints ----------------------------------------------------------------------------

    def _token(self, query: str, body: bytes) -> None:
        form = self._form(body)
        grant = form.get("grant_type", "")
        try:
            client = self.state.authenticate_client(
                self._basic_auth(), form, required=grant != JWT_BEARER_GRANT
            )
        except OAuthError:
            self.state.count_failure(grant)
            raise
        self._send_json(200, self.state.token(client, form, self._token_urls()))

    def _authorize(self, query: str, body: bytes) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        location = self.state.authorize(params)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _device_authorization(self, query: str, body: bytes) -> None:
        form = self._form(body)
        client = self.state.authenticate_client(self._basic_auth(), form)
        assert client is not None
        answer = self.state.device_authorization(client, form, f"{self._base_url()}/device")
        self._send_json(200, answer)

    def _introspect(self, query: str, body: bytes) -> None:
        form = self._form(body)
        client = self.state.authenticate_client(self._basic_auth(), form)
        if client is None or client.client_id != DOVECOT_CLIENT_ID:
            raise OAuthError("unauthorized_client", "only the resource server may introspect")
        self._send_json(200, self.state.introspect(form.get("token", "")))

    def _revoke(self, query: str, body: bytes) -> None:
        form = self._form(body)
        client = self.state.authenticate_client(self._basic_auth(), form)
        assert client is not None
        if "token" not in form:
            raise OAuthError("invalid_request", "token is required")
        self.state.revoke(client, form["token"])
        self._send(200, b"", "text/plain")

    # --- test controls ------------------------------------------------------------------------

    def _control(self, name: str, body: bytes) -> None:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._send_json(403, {"error": "forbidden", "error_description": "loopback only"})
            return
        if self.command == "GET" and name == "health":
            self._send_json(200, {"ok": True})
            return
        try:
            req = json.loads(body or b"{}")
        except ValueError as exc:
            raise OAuthError("invalid_request", "control body must be JSON") from exc
        if self.command != "POST" or not isinstance(req, dict):
            raise OAuthError("invalid_request", "controls take a POSTed JSON object")
        try:
            answer = self._run_control(name, req)
        except (TypeError, ValueError) as exc:  # e.g. "count": "many"
            raise OAuthError("invalid_request", f"bad arguments for {name}: {exc}") from exc
        self._send_json(200, answer)

    def _run_control(self, name: str, req: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        if name == "mint":
            return state.mint(req)
        if name == "service_account":
            state.register_service_account(str(req.get("issuer")), str(req.get("public_key")))
        elif name == "device":
            state.answer_device(
                str(req.get("user_code")),
                user=req.get("user"),
                deny=bool(req.get("deny")),
                expire=bool(req.get("expire")),
            )
        elif name == "expire":
            return {"count": state.expire(req.get("token"), req.get("user"))}
        elif name == "revoke_user":
            return {"count": state.revoke_user(str(req.get("user")))}
        elif name == "configure":
            return state.configure(req)
        elif name == "delay":
            state.set_delay(str(req.get("endpoint")), float(req.get("seconds", 0)))
        elif name == "fail_next":
            state.set_fault(str(req.get("endpoint")), req)
        elif name == "stats":
            return state.stats()
        elif name == "reset":
            state.reset()
        else:
            raise OAuthError("invalid_request", f"unknown control {name!r}", status=404)
        return {"ok": True}


def make_server(host: str, port: int, users: tuple[str, ...] = DEFAULT_USERS) -> _Server:
    """The server, bound and ready for ``serve_forever()`` (port 0 picks a free port)."""
    return _Server((host, port), OAuthState(users))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trio_mailoauth.testing.oauth_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--user", action="append", help="a mailbox (repeatable)")
    parser.add_argument(
        "--state-file",
        type=Path,
        help="written (atomically) once listening: JSON with pid, host, port, base_url",
    )
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, tuple(args.user or DEFAULT_USERS))
    info = {
        "pid": os.getpid(),
        "host": server.server_name,
        "port": server.server_port,
        "base_url": server.base_url,
    }
    if args.state_file is not None:
        fd, tmp = tempfile.mkstemp(dir=args.state_file.parent, prefix=".oauth-state-")
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, args.state_file)

    def stop(signum: int, frame: types.FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it must not run on its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"oauth test server listening on {info['base_url']}", file=sys.stderr, flush=True)
    with server:
        server.serve_forever(poll_interval=0.2)


# --- the control client ---------------------------------------------------------------------


class OAuthControlError(RuntimeError):
    """A test control call failed (bad arguments, or the server is not there)."""


class OAuthServerControl:
    """Synchronous client for the test server's ``/_test/`` controls and URLs.

    Sync (httpx.Client) so sync fixtures and scripts can use it; each call is a loopback round
    trip of a millisecond, fine to make from async tests too.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        # trust_env=False: a proxy from the environment must never see loopback test traffic.
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OAuthServerControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OAuthServerControl({self.base_url!r})"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def authorization_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def device_authorization_url(self) -> str:
        return f"{self.base_url}/device_authorization"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    @property
    def revocation_url(self) -> str:
        return f"{self.base_url}/revoke"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/oauth-authorization-server"

    def _call(self, name: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._client.post(f"/_test/{name}", json=dict(payload or {}))
        except httpx.HTTPError as exc:
            raise OAuthControlError(f"control {name}: {exc!r}") from exc
        if response.status_code != 200:
            # The body is our own error JSON; it never carries a token.
            raise OAuthControlError(f"control {name}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def health(self) -> bool:
        try:
            return self._client.get("/_test/health").status_code == 200
        except httpx.HTTPError:
            return False

    def mint_token(
        self,
        user: str,
        *,
        scope: str = DEFAULT_SCOPE,
        expires_in: int = 3600,
        size: int | None = None,
        with_refresh_token: bool = False,
        client_id: str = CONFIDENTIAL_CLIENT_ID,
    ) -> dict[str, Any]:
        """Issue a token directly: ``access_token``, ``expires_in``, ``scope``, ``refresh_token``.

        ``size`` pads the access token to that many characters; ``expires_in=0`` gives a token
        that is already expired; ``scope="other"`` one that Dovecot rejects for its scope.
        """
        payload: dict[str, Any] = {
            "user": user,
            "scope": scope,
            "expires_in": expires_in,
            "with_refresh_token": with_refresh_token,
            "client_id": client_id,
        }
        if size is not None:
            payload["size"] = size
        return self._call("mint", payload)

    def register_service_account(self, issuer: str, public_key_pem: str | bytes) -> None:
        """Accept RS256 jwt-bearer assertions with ``iss=issuer`` signed by this key's pair."""
        pem = public_key_pem.decode() if isinstance(public_key_pem, bytes) else public_key_pem
        self._call("service_account", {"issuer": issuer, "public_key": pem})

    def approve_device(self, user_code: str, user: str) -> None:
        self._call("device", {"user_code": user_code, "user": user})

    def deny_device(self, user_code: str) -> None:
        self._call("device", {"user_code": user_code, "deny": True})

    def expire_device(self, user_code: str) -> None:
        self._call("device", {"user_code": user_code, "expire": True})

    def expire(self, token: str | None = None, *, user: str | None = None) -> int:
        """Expire one token (access or refresh) or every access token of ``user``; the count."""
        count: int = self._call("expire", {"token": token, "user": user})["count"]
        return count

    def revoke_user(self, user: str) -> int:
        """Revoke every access and refresh token of ``user`` (a password change, say)."""
        count: int = self._call("revoke_user", {"user": user})["count"]
        return count

    def set_rotation(self, enabled: bool, *, revoke_family_on_reuse: bool = False) -> None:
        """Refresh-token rotation; with ``revoke_family_on_reuse``, reuse locks the user out."""
        self.configure(rotation=enabled, revoke_family_on_reuse=revoke_family_on_reuse)

    def configure(self, **settings: int | bool | None) -> dict[str, Any]:
        """Change settings (``rotation``, ``expires_in``, ``token_size``, ``device_interval``,
        ``device_expires_in``, ``slow_down_increment``, ``code_lifetime``,
        ``revoke_family_on_reuse``); returns all current settings."""
        return self._call("configure", settings)

    def delay(self, endpoint: str, seconds: float) -> None:
        """Delay every call of ``endpoint`` (one of ENDPOINTS) by ``seconds``; 0 turns it off."""
        self._call("delay", {"endpoint": endpoint, "seconds": seconds})

    def fail_next(
        self,
        endpoint: str,
        count: int = 1,
        status: int = 503,
        error: str = "temporarily_unavailable",
        *,
        error_description: str = "injected by a test",
        retry_after: int | str | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``endpoint`` with ``status`` and an error body.

        ``retry_after`` adds a ``Retry-After`` header (seconds or an HTTP date); ``body``
        replaces the JSON with raw text (an HTML error page from a proxy, say).
        """
        payload: dict[str, Any] = {
            "endpoint": endpoint,
            "count": count,
            "status": status,
            "error": error,
            "error_description": error_description,
            "retry_after": retry_after,
            "body": body,
        }
        self._call("fail_next", payload)

    def stats(self) -> dict[str, Any]:
        """``issued``/``failed`` per grant type, ``calls`` per endpoint, ``introspection``
        (active, inactive, total), ``active_tokens``."""
        return self._call("stats")

    def reset(self) -> None:
        """Forget every token, code, key, fault and counter; settings back to defaults."""
        self._call("reset")


if __name__ == "__main__":
    main()
