"""Quickstart: everything trio_mailoauth can do so far, against real local servers.

Starts a private Dovecot (IMAP, POP3, submission), Postfix and an OAuth2 server on 127.0.0.1
(``trio_mailoauth.testing``), then:

1. logs in with XOAUTH2 and OAUTHBEARER on IMAP, SMTP and POP3, over STARTTLS and implicit
   TLS, with tokens from the local OAuth2 server;
2. hands a client an expired token: the server rejects it, the client asks the token provider
   for a fresh one and retries once, and the token server counts exactly one new token; the
   redacted protocol trace shows the exchange (no secret in it);
3. shows what a token-server outage looks like (a temporary failure, not retried).

Run it with ``bash scripts/demo`` (sets everything up first), or
``.venv/bin/python examples/quickstart.py`` once set up. Needs root (the servers).
"""

from __future__ import annotations

import logging
import ssl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from trio_mailoauth import (
    AccessToken,
    AuthenticationError,
    OAuthBearer,
    SASLMechanism,
    XOAuth2,
    open_imap,
    open_pop3,
    open_smtp,
)
from trio_mailoauth.testing import HarnessError, MailServers, run_mail_servers
from trio_mailoauth.testing.token_provider import LocalTokenProvider

USER = "alice@example.test"


def step(title: str) -> None:
    print(f"\n== {title}")


async def log_in_everywhere(servers: MailServers, context: ssl.SSLContext) -> None:
    step("XOAUTH2 and OAUTHBEARER on IMAP, SMTP and POP3 (tokens from the local OAuth2 server)")
    host, ports = servers.host, servers.ports
    for name in ("XOAUTH2", "OAUTHBEARER"):
        token = servers.oauth.mint_token(USER)["access_token"]
        auth: SASLMechanism = (
            XOAuth2(USER, token) if name == "XOAUTH2" else OAuthBearer(USER, token)
        )

        async with open_imap(
            host, ports.imap, tls="starttls", ssl_context=context, auth=auth
        ) as imap:
            await imap.noop()
            print(f"  IMAP  STARTTLS  {name:<11} ok  ({len(imap.capabilities)} capabilities)")
        async with open_imap(host, ports.imaps, ssl_context=context, auth=auth) as imap:
            print(f"  IMAP  implicit  {name:<11} ok  (SASL-IR: {imap.has_capability('SASL-IR')})")

        async with open_smtp(
            host, ports.submission, tls="starttls", ssl_context=context, auth=auth
        ) as smtp:
            await smtp.noop()
            print(f"  SMTP  STARTTLS  {name:<11} ok  (Dovecot submission)")
        async with open_smtp(
            host, ports.postfix_submissions, ssl_context=context, auth=auth
        ) as smtp:
            print(f"  SMTP  implicit  {name:<11} ok  (Postfix, SASL via Dovecot)")

        async with open_pop3(
            host, ports.pop3, tls="starttls", ssl_context=context, auth=auth
        ) as pop:
            await pop.noop()
            print(f"  POP3  STLS      {name:<11} ok")
        async with open_pop3(host, ports.pop3s, ssl_context=context, auth=auth) as pop:
            print(f"  POP3  implicit  {name:<11} ok  (SASL: {' '.join(pop.sasl_mechanisms)})")

    step("A 2.5 KB token (as long as Microsoft's) on SMTP uses the two-step AUTH form")
    long_token = servers.oauth.mint_token(USER, size=2500)["access_token"]
    async with open_smtp(
        host, ports.submission, tls="starttls", ssl_context=context, auth=XOAuth2(USER, long_token)
    ) as smtp:
        print(f"  SMTP  {len(long_token)}-character token: authenticated={smtp.authenticated}")


@contextmanager
def traced(logger_name: str) -> Iterator[list[str]]:
    """Collect what a client logs at DEBUG: its redacted protocol trace."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage().split(" ", 1)[1])

    logger = logging.getLogger(logger_name)
    handler = Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


async def retry_with_fresh_token(servers: MailServers, context: ssl.SSLContext) -> None:
    step("An expired token: rejected by the server, replaced by the provider, retried once")
    minted = servers.oauth.mint_token(USER, expires_in=60, with_refresh_token=True)
    servers.oauth.expire(
        token=minted["access_token"]
    )  # expired at the server, as if an hour passed
    provider = LocalTokenProvider(
        servers.oauth.token_url,
        refresh_token=minted["refresh_token"],
        first=AccessToken(minted["access_token"]),
    )
    issued_before = servers.oauth.stats()["issued"].get("refresh_token", 0)
    with traced("trio_mailoauth.imap") as trace:
        async with open_imap(
            servers.host, servers.ports.imaps, ssl_context=context, auth=XOAuth2(USER, provider)
        ) as imap:
            await imap.noop()
    print("  the IMAP trace (logger 'trio_mailoauth.imap' at DEBUG; secrets redacted):")
    for line in trace:
        print(f"    {line[:96]}")
    secrets = (minted["access_token"], minted["refresh_token"])
    assert not any(secret in line for line in trace for secret in secrets)
    issued = servers.oauth.stats()["issued"].get("refresh_token", 0) - issued_before
    print(
        f"  logged in; provider invalidated {provider.invalidations} token, "
        f"the token server issued {issued} new token"
    )
    assert (provider.invalidations, issued) == (1, 1)

    step("A token server outage: Dovecot cannot introspect, the failure is temporary")
    servers.oauth.fail_next("introspect", count=1, status=503)
    token = servers.oauth.mint_token(USER)["access_token"]
    try:
        async with open_imap(
            servers.host, servers.ports.imaps, ssl_context=context, auth=XOAuth2(USER, token)
        ):
            pass
    except AuthenticationError as exc:
        print(f"  AuthenticationError kind={exc.kind!r}: {exc.response}")
        if exc.kind != "temporary":
            raise
    else:
        raise AssertionError("the outage went unnoticed")


async def main(servers: MailServers) -> None:
    context = servers.client_ssl_context()
    await log_in_everywhere(servers, context)
    await retry_with_fresh_token(servers, context)


def run() -> int:
    started = time.monotonic()
    print("Starting Dovecot, Postfix and the OAuth2 server on 127.0.0.1 ...")
    try:
        with run_mail_servers() as servers:
            print(
                f"  ready in {servers.startup_seconds:.1f} s, ports from {servers.ports.imap - 143}"
            )
            trio.run(main, servers)
    except HarnessError as exc:
        print(f"cannot start the local servers: {exc}", file=sys.stderr)
        return 1
    print(f"\nDone in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(run())
