"""Every state of an IMAP connection and every transition between them, as tables.

RFC 9051 §3 describes four states (not authenticated, authenticated, selected, logout). A
sans-I/O core needs a few more: before the greeting, between STARTTLS's OK and the end of
the TLS handshake, after the server closed, and after an error. Anything that is not in
these tables is an error: :class:`LocalProtocolError` for a command we were asked to send,
:class:`RemoteProtocolError` for something the server did, naming the state and the event.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "COMMAND_STATES",
    "EXCLUSIVE_COMMANDS",
    "GREETING_TRANSITIONS",
    "ON_SEND",
    "ON_TAGGED_NO",
    "ON_TAGGED_OK",
    "IMAPState",
    "is_exclusive",
]


class IMAPState(enum.Enum):
    """Where an IMAP conversation stands."""

    GREETING = "GREETING"  # connected; the server has not greeted us yet
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    AUTHENTICATED = "AUTHENTICATED"
    SELECTED = "SELECTED"  # a mailbox is open (SELECT/EXAMINE)
    STARTING_TLS = "STARTING_TLS"  # STARTTLS got its OK; nothing may flow until TLS is up
    LOGOUT = "LOGOUT"  # we sent LOGOUT or the server said BYE: the server will close
    CLOSED = "CLOSED"  # the server closed the connection
    ERROR = "ERROR"  # a protocol error or a failed send: the connection is unusable


_N: Final = IMAPState.NOT_AUTHENTICATED
_A: Final = IMAPState.AUTHENTICATED
_S: Final = IMAPState.SELECTED
_ANY_SESSION: Final = frozenset({_N, _A, _S})
_AUTHENTICATED: Final = frozenset({_A, _S})
_SELECTED: Final = frozenset({_S})

# In which states each command may be sent (RFC 9051 §6; ENABLE is lenient: RFC 5161 says
# authenticated state, servers accept it when selected too, and refuse with BAD otherwise).
COMMAND_STATES: Final[dict[str, frozenset[IMAPState]]] = {
    "CAPABILITY": _ANY_SESSION,
    "NOOP": _ANY_SESSION,
    "LOGOUT": _ANY_SESSION,
    "ID": _ANY_SESSION,
    "STARTTLS": frozenset({_N}),
    "AUTHENTICATE": frozenset({_N}),
    "LOGIN": frozenset({_N}),
    **dict.fromkeys(
        (
            "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
            "LIST", "LSUB", "STATUS", "APPEND", "IDLE", "ENABLE", "NAMESPACE", "GETQUOTA",
            "GETQUOTAROOT",
        ),
        _AUTHENTICATED,
    ),
    **dict.fromkeys(
        (
            "CLOSE", "UNSELECT", "CHECK", "EXPUNGE", "UID EXPUNGE", "SEARCH", "FETCH",
            "STORE", "COPY", "MOVE", "SORT", "THREAD",
        ),
        _SELECTED,
    ),
}  # fmt: skip

# Commands that change the state or take over the line (continuations, a TLS handshake,
# IDLE): one may be sent only when nothing is in flight, and nothing may follow it until its
# tagged response (RFC 9051 §5.5: no pipelining around state changes; EXPUNGE renumbers).
EXCLUSIVE_COMMANDS: Final = frozenset(
    {
        "STARTTLS", "AUTHENTICATE", "LOGIN", "SELECT", "EXAMINE", "CLOSE", "UNSELECT",
        "IDLE", "ENABLE", "EXPUNGE",
    }
)  # fmt: skip

# Commands that name messages by sequence number: their numbers shift when a concurrent
# command (NOOP, a UID command) lets the server report an EXPUNGE, so RFC 9051 §5.5 forbids
# pipelining them with anything; their UID forms may be pipelined.
_SEQUENCE_COMMANDS: Final = frozenset(
    {"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "SORT", "THREAD"}
)


def is_exclusive(name: str, wire_name: str) -> bool:
    """Whether a command must run alone (nothing else in flight before or during it)."""
    if name in EXCLUSIVE_COMMANDS:
        return True
    return name in _SEQUENCE_COMMANDS and not wire_name.startswith("UID ")


# State changes as soon as a command is queued: after LOGOUT nothing else may be sent.
ON_SEND: Final[dict[str, IMAPState]] = {"LOGOUT": IMAPState.LOGOUT}

# State changes on a command's tagged OK, keyed by (command, state when the OK arrives).
ON_TAGGED_OK: Final[dict[tuple[str, IMAPState], IMAPState]] = {
    ("LOGIN", _N): _A,
    ("AUTHENTICATE", _N): _A,
    ("STARTTLS", _N): IMAPState.STARTING_TLS,
    ("SELECT", _A): _S,
    ("SELECT", _S): _S,
    ("EXAMINE", _A): _S,
    ("EXAMINE", _S): _S,
    ("CLOSE", _S): _A,
    ("UNSELECT", _S): _A,
}

# A refused SELECT/EXAMINE closes the mailbox that was open (RFC 9051 §6.3.2).
ON_TAGGED_NO: Final[dict[tuple[str, IMAPState], IMAPState]] = {
    ("SELECT", _S): _A,
    ("EXAMINE", _S): _A,
}

# The greeting's status decides the first state (RFC 9051 §7.1.1, §7.1.4, §7.1.5).
GREETING_TRANSITIONS: Final[dict[str, IMAPState]] = {
    "OK": _N,
    "PREAUTH": _A,
    "BYE": IMAPState.LOGOUT,
}
