"""Quickstart: everything trio_mailoauth can do so far, against real local servers.

Starts a private Dovecot (IMAP, POP3, submission), Postfix and an OAuth2 server on 127.0.0.1
(``trio_mailoauth.testing``), then:

1. logs in with XOAUTH2 and OAUTHBEARER on IMAP, SMTP and POP3, over STARTTLS and implicit
   TLS, with tokens from the local OAuth2 server;
2. uses a refresh-token provider with the SQLite store (rotation on): the server expires the
   access token mid-run, the next login is refused, the client tells the provider, gets a
   fresh token and retries once — the redacted protocol trace shows it, with no secret in it;
3. shows what a token-server outage looks like (a temporary failure, not retried);
4. IMAP: select, search, fetch the newest messages (streamed), IDLE until new mail arrives;
5. SMTP: sends a message (pipelined) with a refused recipient, then finds it over IMAP;
6. POP3: lists and retrieves, then fetches only the new messages and deletes them safely.

Run it with ``bash scripts/demo`` (sets everything up first), or
``.venv/bin/python examples/quickstart.py`` once set up. Needs root (the servers).
"""

from __future__ import annotations

import io
import logging
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import trio

from trio_mailoauth import (
    AuthenticationError,
    OAuthBearer,
    SASLMechanism,
    XOAuth2,
    open_imap,
    open_pop3,
    open_smtp,
)
from trio_mailoauth.imap.events import Exists
from trio_mailoauth.imap.search import Q
from trio_mailoauth.oauth import RefreshTokenProvider, SQLiteTokenStore, providers
from trio_mailoauth.testing import HarnessError, MailServers, run_mail_servers

USER = "alice@example.test"
BOB = "bob@example.test"


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


async def refreshing_provider(servers: MailServers, context: ssl.SSLContext) -> None:
    step("A refresh-token provider with the SQLite store (rotation on)")
    oauth = servers.oauth
    oauth.set_rotation(True, revoke_family_on_reuse=True)
    refresh_token = oauth.mint_token(USER, with_refresh_token=True)["refresh_token"]
    endpoint = providers.generic(
        token_url=oauth.token_url,
        client_id="test-client",
        client_secret="test-secret",
        scopes=["mail"],
    )
    host, ports = servers.host, servers.ports
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tokens.db"
        store = SQLiteTokenStore(db)
        async with RefreshTokenProvider(
            endpoint, account=USER, refresh_token=refresh_token, store=store
        ) as tokens:
            auth = XOAuth2(USER, tokens)
            async with open_imap(host, ports.imaps, ssl_context=context, auth=auth) as imap:
                await imap.noop()
            async with open_smtp(host, ports.submissions, ssl_context=context, auth=auth):
                pass
            async with open_pop3(host, ports.pop3s, ssl_context=context, auth=auth):
                pass
            print(f"  IMAP, SMTP and POP3 logged in, {tokens.stats.refreshes} token request in all")
            print(f"  store {db.name}: mode {oct(db.stat().st_mode & 0o777)}, rotated token saved")

            current = await tokens.get_token()
            oauth.expire(token=current.token)
            print("  the server expires the access token mid-run; the next login recovers:")
            with traced("trio_mailoauth.imap") as trace:
                async with open_imap(host, ports.imaps, ssl_context=context, auth=auth) as imap:
                    await imap.noop()
            for line in trace:
                print(f"    {line[:96]}")
            secrets = (current.token, refresh_token)
            assert not any(secret in line for line in trace for secret in secrets)
            stats = tokens.stats
            print(
                f"  {stats.invalidations} token invalidated, {stats.refreshes} token requests "
                f"in all; the store holds version {(await store.load(tokens.key)).version}"
            )
    oauth.set_rotation(False)


async def token_server_outage(servers: MailServers, context: ssl.SSLContext) -> None:
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


async def demo_imap(servers: MailServers, context: ssl.SSLContext) -> None:
    step("IMAP: select, search, fetch the newest messages (streamed), IDLE for new mail")
    for index in range(3):
        servers.deliver(
            USER,
            f"From: {BOB}\r\nTo: {USER}\r\nSubject: quickstart {index}\r\n\r\n"
            f"Hello number {index}.\r\n".encode(),
        )
    token = servers.oauth.mint_token(USER)["access_token"]
    async with open_imap(
        servers.host, servers.ports.imaps, ssl_context=context, auth=XOAuth2(USER, token)
    ) as imap:
        box = await imap.select("INBOX")
        print(
            f"  INBOX: {box.exists} messages, UIDNEXT {box.uidnext}, UIDVALIDITY {box.uidvalidity}"
        )
        uids = await imap.search(Q.subject("quickstart"), uid=True)
        print(f"  SEARCH SUBJECT quickstart -> {len(uids)} UIDs")
        first = max(1, (box.uidnext or 1) - 3)
        async for message in imap.fetch(
            f"{first}:*", ["UID", "FLAGS", "ENVELOPE", "BODY.PEEK[]"], uid=True
        ):
            subject = message.envelope.subject if message.envelope else None
            size = len(message.body or b"")
            print(f"  UID {message.uid}: {subject!r}, {size} bytes, flags {message.flags}")
        async with imap.idle() as events:
            print("  IDLE: waiting; a message is delivered meanwhile ...")
            servers.deliver(USER, b"Subject: while idling\r\n\r\nYou have mail.\r\n")
            with trio.move_on_after(10):
                async for event in events:
                    print(f"  IDLE event: {event!r}")
                    if isinstance(event, Exists):
                        print(f"  new mail arrived: the mailbox now holds {event.count} messages")
                        break
        print("  IDLE ended with DONE; the connection is still usable:", imap.state.value)


async def demo_smtp(servers: MailServers, context: ssl.SSLContext) -> None:
    step("SMTP: send with XOAUTH2 (pipelined), then find the message over IMAP")
    message = EmailMessage()
    message["From"] = USER
    message["To"] = f"{BOB}, nobody@elsewhere.invalid"  # the second one is refused
    message["Subject"] = "hello from trio_mailoauth"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.test>"
    message.set_content(".a line starting with a dot\nand some 8-bit text: héllo\n")

    token = servers.oauth.mint_token(USER)["access_token"]
    async with open_smtp(
        servers.host,
        servers.ports.submission,
        tls="starttls",
        ssl_context=context,
        auth=XOAuth2(USER, token),
    ) as smtp:
        result = await smtp.send_message(message)  # MAIL, RCPT, RCPT, BDAT: one write
    print(f"  accepted: {', '.join(result.accepted)}")
    for who, reply in result.refused.items():
        print(f"  refused:  {who} ({reply.code} {reply.enhanced_status} {reply.text[:50]}...)")
    print(f"  final reply: {result.reply.code} {result.reply.text}")

    bob_token = servers.oauth.mint_token(BOB)["access_token"]
    async with open_imap(
        servers.host, servers.ports.imaps, ssl_context=context, auth=XOAuth2(BOB, bob_token)
    ) as imap:
        # Delivery goes Dovecot submission -> Postfix -> LMTP -> Dovecot: give it a moment.
        found: list[int] = []
        with trio.move_on_after(10):
            while not found:
                await imap.select("INBOX")
                found = await imap.search(Q.header("Message-ID", message["Message-ID"]))
                if not found:
                    await trio.sleep(0.1)
        print(f"  found over IMAP in {BOB}'s INBOX: message {found}")
        async for fetched in imap.fetch(found, ["BODY.PEEK[]"]):
            body = fetched.body or b""
            print(f"  {len(body)} bytes; the dotted line arrived intact: {b'.a line' in body}")


async def demo_pop3(servers: MailServers, context: ssl.SSLContext) -> None:
    step("POP3: list and retrieve with XOAUTH2, then fetch only the new ones and delete them")
    token = servers.oauth.mint_token(USER)["access_token"]
    async with open_pop3(
        servers.host, servers.ports.pop3s, ssl_context=context, auth=XOAuth2(USER, token)
    ) as pop:
        known = {uid for _, uid in await pop.uidl()}  # whatever earlier sections left
    for subject in ("first", "second"):
        # Seeded straight into the Maildir; ".dots" lines are dot-stuffed on the wire.
        servers.deliver(USER, f"Subject: {subject}\n\n.dots survive\nhello\n".encode())

    token = servers.oauth.mint_token(USER)["access_token"]
    async with open_pop3(
        servers.host,
        servers.ports.pop3,
        tls="starttls",
        ssl_context=context,
        auth=XOAuth2(USER, token),
    ) as pop:
        count, size = await pop.stat()
        print(f"  STAT: {count} messages, {size} octets; PIPELINING: {pop.pipelining}")
        for number, uid in await pop.uidl():
            print(f"  UIDL {number}: {uid}  ({await pop.list(number)} octets)")
        header = await pop.top(count, 0)
        print(f"  TOP {count} 0: {header.splitlines()[0]!r}")
        sink = io.BytesIO()
        await pop.retr_to(count, sink)  # streamed in network-sized chunks
        print(f"  RETR {count}: {sink.getvalue()!r}")

        # Only what is new; each message is deleted only once the loop comes back for the
        # next one (the caller stored it), and only QUIT commits the deletions.
        async with pop.fetch_new(known, delete=True) as messages:
            async for uid, data in messages:
                print(f"  new {uid}: {len(data)} octets, stored; marked for deletion")
        await pop.quit()

    token = servers.oauth.mint_token(USER)["access_token"]
    async with open_pop3(
        servers.host, servers.ports.pop3s, ssl_context=context, auth=XOAuth2(USER, token)
    ) as pop:
        left = {uid for _, uid in await pop.uidl()}
        print(f"  after QUIT: {len(left)} messages, none of the new ones: {not (left - known)}")


async def main(servers: MailServers) -> None:
    context = servers.client_ssl_context()
    await log_in_everywhere(servers, context)
    await refreshing_provider(servers, context)
    await token_server_outage(servers, context)
    await demo_imap(servers, context)
    await demo_smtp(servers, context)
    await demo_pop3(servers, context)


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
