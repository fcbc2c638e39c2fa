"""Envelope checks and encodings: addresses in MAIL FROM / RCPT TO, and their ESMTP parameters.

An address goes on the wire as ``<address>`` followed by ``SP keyword=value`` parameters, so
a caller's address holding ``>``, a space outside a quoted local part, CR, LF or NUL could
end the address early and smuggle parameters (``NOTIFY=NEVER``) or a whole second command.
Every check here runs when a command is *constructed*, before anything can be queued.

Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from trio_mailoauth.errors import LocalProtocolError

__all__ = [
    "MAX_ADDRESS",
    "check_address",
    "check_envid",
    "check_notify",
    "needs_smtputf8",
    "orcpt_value",
    "original_recipients",
    "utf8_addr_xtext",
    "xtext",
]

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_ADDRESS = 254

# RFC 3461 §4.4: ENVID is at most 100 characters (before xtext encoding).
MAX_ENVID = 100

# Characters that may never appear in an address, quoted or not: controls end lines or
# confuse parsers, and angle brackets end the path.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f<>]")

_SPACE_OR_QUOTE = re.compile(r'[\s"]')

NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def check_address(address: str, *, what: str, allow_empty: bool = False) -> None:
    """LocalProtocolError when ``address`` cannot be written inside ``<...>`` safely.

    ``what`` names the address in the message ("sender", "recipient"). The null
    reverse-path ``""`` (bounces) is allowed only for the sender.
    """
    if not isinstance(address, str):
        raise LocalProtocolError(f"the {what} address must be a str, not {type(address).__name__}")
    if not address:
        if allow_empty:
            return
        raise LocalProtocolError(f"the {what} address is empty")
    _check_nonempty_address(address, what)


# A client sends to the same few addresses again and again (the benchmark: 2,000 messages, one
# sender, one recipient); the checks cost microseconds each. Only good addresses are
# remembered (a raising call is not cached), and 4,096 of them are a few hundred KB at most.
@functools.lru_cache(maxsize=4096)
def _check_nonempty_address(address: str, what: str) -> None:
    shown = repr(address[:60])
    if _FORBIDDEN.search(address):
        raise LocalProtocolError(
            f"the {what} address {shown} contains a control character, '<' or '>' "
            "(CR, LF and NUL would inject commands)"
        )
    if len(address.encode("utf-8")) > MAX_ADDRESS:
        raise LocalProtocolError(f"the {what} address is longer than {MAX_ADDRESS} octets")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise LocalProtocolError(f"the {what} address {shown} is not local-part@domain")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        # A quoted local part may hold spaces; its quotes and backslashes must pair up.
        inner = local[1:-1]
        if re.search(r'(?<!\\)(?:\\\\)*"', inner) or _odd_tail(inner):
            raise LocalProtocolError(f"the {what} address {shown} has unbalanced quotes")
    elif _SPACE_OR_QUOTE.search(local):
        raise LocalProtocolError(
            f"the {what} address {shown} contains a space or quote outside a quoted local "
            "part (it would smuggle ESMTP parameters)"
        )
    if _SPACE_OR_QUOTE.search(domain):
        raise LocalProtocolError(f"the {what} address {shown} has a space in its domain")


def _odd_tail(text: str) -> bool:
    """True when ``text`` ends in an odd number of backslashes (escaping the closing quote)."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def needs_smtputf8(address: str) -> bool:
    """A non-ASCII address can only be sent with SMTPUTF8 (RFC 6531)."""
    return not address.isascii()


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext: printable ASCII except ``+`` and ``=`` as is, the rest as ``+HH``.

    For ENVID and for ASCII ORCPT addresses. (Non-ASCII characters would be encoded as their
    UTF-8 octets; :func:`orcpt_value` uses RFC 6533's forms for non-ASCII addresses instead.)
    """
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def utf8_addr_xtext(address: str, *, unitext: bool) -> str:
    """RFC 6533 §3: ``utf-8-addr-xtext`` or, with ``unitext``, ``utf-8-addr-unitext``.

    QCHAR (printable ASCII but ``+``, ``=`` and ``\\``) as is; other ASCII (the space of a
    quoted local part, ``+``, ``=``, ``\\``) as ``\\x{HEX}`` of its code point; non-ASCII
    characters as ``\\x{HEX}`` too (xtext, 7-bit, for a transaction without SMTPUTF8) or as
    raw UTF-8 (unitext, only with SMTPUTF8). HEX is upper case, at least two digits, no
    leading zeros beyond that (HEXPOINT).
    """
    out = []
    for char in address:
        code = ord(char)
        if (33 <= code <= 126 and char not in "+=\\") or (code > 127 and unitext):
            out.append(char)
        else:
            out.append(f"\\x{{{code:02X}}}")
    return "".join(out)


def orcpt_value(address: str, *, smtputf8: bool) -> str:
    """The value of ``ORCPT=`` for an original recipient ``address`` (RFC 3461 §4.2).

    An ASCII address is ``rfc822;`` and xtext; a non-ASCII one is ``utf-8;`` (RFC 6533 §3)
    and utf-8-addr-unitext when the transaction uses SMTPUTF8, else utf-8-addr-xtext, which
    is 7-bit and safe on any server.
    """
    if address.isascii():
        return "rfc822;" + xtext(address)
    return "utf-8;" + utf8_addr_xtext(address, unitext=smtputf8)


def check_envid(envid: str) -> None:
    if not envid or len(envid) > MAX_ENVID or not envid.isascii() or not envid.isprintable():
        raise LocalProtocolError(
            f"ENVID must be 1-{MAX_ENVID} printable ASCII characters (RFC 3461 §4.4)"
        )


def check_notify(notify: tuple[str, ...]) -> None:
    """``("NEVER",)`` or a non-empty subset of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)."""
    if notify == ("NEVER",):
        return
    if not notify or len(set(notify)) != len(notify) or not set(notify) <= NOTIFY_VALUES:
        raise LocalProtocolError(
            "NOTIFY must be ('NEVER',) or a non-empty set of SUCCESS, FAILURE, DELAY; "
            f"got {notify!r}"
        )


def original_recipients(
    orcpt: Mapping[str, str] | bool | None, recipients: list[str]
) -> dict[str, str]:
    """Recipient → the ORCPT address to send for it (RFC 3461 §4.2), from ``orcpt``."""
    if orcpt is None or orcpt is False:
        return {}
    if orcpt is True:
        return {r: r for r in recipients}
    known = set(recipients)
    unknown = [r for r in orcpt if r not in known]
    if unknown:
        raise LocalProtocolError(f"ORCPT given for {unknown[0]!r}, which is not a recipient")
    return dict(orcpt)
