"""Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 (RFC 9051 §5.1).

IMAP4rev1 servers send and expect modified UTF-7 ("&" starts a base64 run of UTF-16,
"," replaces "/", "&-" is "&"); IMAP4rev2 servers and those where UTF8=ACCEPT was enabled
use UTF-8 as it is.
"""

from __future__ import annotations

import base64
import binascii

from trio_mailoauth.errors import RemoteProtocolError

__all__ = ["decode_mailbox", "encode_mailbox", "encode_mutf7"]


def encode_mutf7(name: str) -> bytes:
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    flush()
    return bytes(out)


def decode_mutf7(data: bytes) -> str:
    out: list[str] = []
    index = 0
    while index < len(data):
        amp = data.find(b"&", index)
        if amp < 0:
            out.append(data[index:].decode("ascii", "replace"))
            break
        out.append(data[index:amp].decode("ascii", "replace"))
        end = data.find(b"-", amp + 1)
        if end < 0:
            raise RemoteProtocolError("mailbox name with an unterminated modified UTF-7 run")
        run = data[amp + 1 : end]
        if not run:
            out.append("&")
        else:
            padded = run.replace(b",", b"/") + b"=" * (-len(run) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, ValueError) as exc:
                raise RemoteProtocolError("mailbox name with bad modified UTF-7") from exc
        index = end + 1
    return "".join(out)


def encode_mailbox(name: str, utf8: bool) -> bytes:
    """A mailbox name as it goes on the wire; INBOX in any case is sent as ``INBOX``."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return name.encode("utf-8") if utf8 else encode_mutf7(name)


def decode_mailbox(data: bytes, utf8: bool) -> str:
    """A mailbox name from the wire. Non-ASCII bytes are UTF-8 whatever was negotiated
    (an IMAP4rev1 server never sends them in modified UTF-7)."""
    if utf8 or not data.isascii():
        return data.decode("utf-8", "replace")
    return decode_mutf7(data)
