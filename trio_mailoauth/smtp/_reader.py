"""The SMTP reply reader: bytes in, one :class:`Reply` per complete multi-line reply out.

RFC 5321 §4.2::

    Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF

Every line of one reply must carry the same code (a server that mixes them is broken, and
guessing which code counts would hide it). Lines are taken from the receive buffer one
complete line at a time and kept here until the last one arrives, so feeding the bytes one
at a time gives exactly the same replies as feeding them all at once.

Also here: parsing an EHLO reply into the extensions mapping, and the enhanced status code
(RFC 2034 / RFC 3463) that may start each line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from trio_mailoauth._sansio import ReceiveBuffer, TraceHook, printable_line
from trio_mailoauth.errors import RemoteProtocolError
from trio_mailoauth.smtp._events import Reply

__all__ = [
    "MAX_REPLY_BYTES",
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "ReplyReader",
    "auth_mechanisms",
    "parse_ehlo",
    "size_limit",
]

# RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets, but servers exceed it (long
# banners, SASL challenges: a Kerberos/GSSAPI token in base64 can reach ~12 KB). We are
# lenient up to 16 KiB a line (CRLF included): still a fixed, small bound per connection.
MAX_REPLY_LINE = 16 * 1024

# The longest real replies are EHLO lists (~20-30 lines) and chatty multi-line banners;
# 256 lines is ten times that. A reply past it is a server gone wrong, not a long list.
MAX_REPLY_LINES = 256

# And a whole reply may hold at most 64 KiB, whatever its line count: the most one
# connection ever keeps of a reply in memory.
MAX_REPLY_BYTES = 64 * 1024

# "5.7.8 " at the start of a line: class 2/4/5, subject and detail of 1-3 digits (RFC 3463).
# One pattern per reply class, looked up by the code's first digit: the match is then the
# status itself, with no group to check against the code (this runs for every reply).
_ENHANCED = {cls: re.compile(rf"{cls}\.[0-9]{{1,3}}\.[0-9]{{1,3}}(?= |$)") for cls in (2, 4, 5)}

# An EHLO keyword (RFC 5321 §4.1.1.1): a letter or digit, then letters, digits and dashes.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

# The three digits a reply line may start with, and the code they stand for: one dict
# lookup checks and converts them (RFC 5321 §4.2: the first digit is 2 to 5; we accept any
# second and third digit, which servers use freely).
_CODES = {str(code).encode("ascii"): code for code in range(200, 600)}


class ReplyReader:
    """Collects the lines of one reply; ``read()`` returns it once the last line is in."""

    def __init__(self) -> None:
        self._code: int | None = None
        self._texts: list[str] = []
        self._size = 0

    @property
    def in_progress(self) -> bool:
        """True when some lines of a reply arrived but not its last one."""
        return self._code is not None

    def read(self, buffer: ReceiveBuffer, trace: TraceHook | None = None) -> Reply | None:
        """The next complete reply from ``buffer``, or None when it needs more bytes."""
        while True:
            line = buffer.maybe_extract_line(MAX_REPLY_LINE)
            if line is None:
                if self._size + len(buffer) > MAX_REPLY_BYTES:
                    raise RemoteProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes")
                return None
            if trace is not None:
                trace(printable_line("S: ", line))
            # The line, checked and added, here rather than in a method of its own: this
            # is the hot path of every reply (three per message sent).
            size = self._size + len(line)
            if size > MAX_REPLY_BYTES:
                raise RemoteProtocolError(f"reply longer than {MAX_REPLY_BYTES} bytes")
            texts = self._texts
            if len(texts) >= MAX_REPLY_LINES:
                raise RemoteProtocolError(f"reply with more than {MAX_REPLY_LINES} lines")
            code = _CODES.get(line[:3])
            separator = line[3:4]
            if code is None or (separator not in b" -" and len(line) != 5):
                # ``separator`` is CR only in "250\r\n" (RFC 5321 allows a reply with no text).
                raise RemoteProtocolError(f"malformed reply line: {_shown(line)}")
            if self._code is None:
                if separator == b" ":  # the common case: a whole reply in one line
                    return _one_line_reply(code, line[4:-2].decode("utf-8", "replace"))
            elif code != self._code:
                raise RemoteProtocolError(
                    f"reply code changed from {self._code} to {code} within one reply"
                )
            texts.append(line[4:-2].decode("utf-8", "replace"))
            if separator == b"-":
                self._code, self._size = code, size
                continue
            self._code, self._texts, self._size = None, [], 0
            return _make_reply(code, texts)


def _shown(line: bytes) -> str:
    return printable_line("", line[:80])


def _one_line_reply(code: int, text: str) -> Reply:
    """:func:`_make_reply` for a reply of one line (most of them), without the list."""
    pattern = _ENHANCED.get(code // 100)
    match = None if pattern is None else pattern.match(text)
    if match is None:
        return Reply(code, None, (text,))
    status = match.group()
    return Reply(code, status, (text[len(status) + 1 :],))


def _make_reply(code: int, texts: list[str]) -> Reply:
    """Split the enhanced status off when the first line has one of the code's class.

    RFC 2034 puts it on every line; we strip it from each line that starts with the same
    one, and keep lines that differ (or lack it) as they are.
    """
    first = texts[0]
    if len(texts) == 1:
        return _one_line_reply(code, first)
    pattern = _ENHANCED.get(code // 100)
    match = None if pattern is None else pattern.match(first)
    if match is None:
        return Reply(code, None, tuple(texts))
    status = match.group()
    lines = tuple(
        text[len(status) :].removeprefix(" ") if _has_status(text, status) else text
        for text in texts
    )
    return Reply(code, status, lines)


def _has_status(text: str, status: str) -> bool:
    return text.startswith(status) and (len(text) == len(status) or text[len(status)] == " ")


def parse_ehlo(reply: Reply) -> dict[str, tuple[str, ...]]:
    """The service extensions of a positive EHLO reply: keyword (upper case) -> parameters.

    The first line is the server's name and greeting, not an extension. Lines that are not
    ``keyword *(SP param)`` are ignored rather than fatal: a server's odd advertisement is
    not worth failing a connection for, and an extension we cannot read is one we won't use.
    ``AUTH=PLAIN LOGIN`` (the pre-RFC form old Microsoft servers send) is read as AUTH when
    there is no real AUTH line.
    """
    extensions: dict[str, tuple[str, ...]] = {}
    old_style_auth: tuple[str, ...] | None = None
    for text in reply.lines[1:]:
        words = text.split()
        if not words:
            continue
        keyword = words[0]
        if keyword.upper().startswith("AUTH="):
            old_style_auth = tuple(w.upper() for w in [keyword[5:], *words[1:]] if w)
            continue
        if not _KEYWORD.fullmatch(keyword):
            continue
        keyword = keyword.upper()
        params = tuple(words[1:])
        if keyword == "AUTH":
            # SASL mechanism names are case-insensitive; upper case makes lookups simple.
            params = tuple(p.upper() for p in params)
        extensions.setdefault(keyword, params)
    if old_style_auth is not None and "AUTH" not in extensions:
        extensions["AUTH"] = old_style_auth
    return extensions


def auth_mechanisms(extensions: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The SASL mechanisms an extensions mapping offers (empty without an AUTH keyword)."""
    return extensions.get("AUTH", ())


def size_limit(extensions: Mapping[str, tuple[str, ...]]) -> int | None:
    """The SIZE limit in octets, or None: no SIZE, ``SIZE`` alone or ``SIZE 0`` (RFC 1870 §4:
    no fixed maximum), or a value we cannot read."""
    params = extensions.get("SIZE")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not params or not params[0].isascii() or not params[0].isdigit() or len(params[0]) > 20:
        return None
    limit = int(params[0])
    return limit or None
