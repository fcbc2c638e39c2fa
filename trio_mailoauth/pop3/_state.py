"""Every state of a POP3 session and every transition, as tables.

RFC 1939 names three states (AUTHORIZATION, TRANSACTION, UPDATE); we add the moments in
between that a client must respect: waiting for the greeting, the USER→PASS pair, the gap
between STLS's +OK and the end of the TLS handshake, and the end of the session.

``SEND_TABLE`` says which command keywords may be sent in each state. ``REPLY_TABLE`` says
where a command's reply leads, for +OK and for -ERR. A send not in the table is a
``LocalProtocolError`` (nothing queued); a reply the table does not expect is a
``RemoteProtocolError``. Both messages name the state and the event.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["GREETING", "PIPELINABLE", "REPLY_TABLE", "SEND_TABLE", "State"]


class State(enum.Enum):
    GREETING = "GREETING"  # connected; the server's first line is due
    AUTHORIZATION = "AUTHORIZATION"  # RFC 1939 §4: not logged in yet
    USER_ACCEPTED = "USER_ACCEPTED"  # USER got +OK: PASS may follow (RFC 1939 §7)
    STARTING_TLS = "STARTING_TLS"  # STLS got +OK: the I/O layer runs the TLS handshake
    TRANSACTION = "TRANSACTION"  # logged in (RFC 1939 §5)
    DONE = "DONE"  # QUIT answered or greeting refused: the server closes
    ERROR = "ERROR"  # a protocol error or a failed write: nothing more is possible


# The pseudo-command whose "reply" is the greeting.
GREETING: Final = "GREETING"

_AUTHORIZATION_COMMANDS = frozenset({"CAPA", "STLS", "USER", "AUTH", "APOP", "QUIT"})

# RFC 1939 §5: the maildrop commands. Each leaves the session in TRANSACTION state, on +OK
# and on -ERR alike.
_MAILDROP_COMMANDS = frozenset({"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"})

# What may be pipelined (RFC 2449 PIPELINING) behind other such commands: the maildrop
# commands, whose answers never change the state the next command is checked against.
PIPELINABLE: Final = _MAILDROP_COMMANDS

SEND_TABLE: Final[dict[State, frozenset[str]]] = {
    State.GREETING: frozenset(),
    State.AUTHORIZATION: _AUTHORIZATION_COMMANDS,
    # After USER's +OK, RFC 1939 allows PASS; a client may also start over or leave.
    State.USER_ACCEPTED: frozenset({"PASS", "USER", "CAPA", "QUIT"}),
    State.STARTING_TLS: frozenset(),
    # RFC 2449: CAPA is valid in TRANSACTION too.
    State.TRANSACTION: _MAILDROP_COMMANDS | {"CAPA", "QUIT"},
    State.DONE: frozenset(),
    State.ERROR: frozenset(),
}

# (state the command was sent in, keyword) -> (state after +OK, state after -ERR)
REPLY_TABLE: Final[dict[tuple[State, str], tuple[State, State]]] = {
    (State.GREETING, GREETING): (State.AUTHORIZATION, State.DONE),
    (State.AUTHORIZATION, "CAPA"): (State.AUTHORIZATION, State.AUTHORIZATION),
    (State.AUTHORIZATION, "STLS"): (State.STARTING_TLS, State.AUTHORIZATION),
    (State.AUTHORIZATION, "USER"): (State.USER_ACCEPTED, State.AUTHORIZATION),
    (State.AUTHORIZATION, "AUTH"): (State.TRANSACTION, State.AUTHORIZATION),
    (State.AUTHORIZATION, "APOP"): (State.TRANSACTION, State.AUTHORIZATION),
    (State.AUTHORIZATION, "QUIT"): (State.DONE, State.DONE),
    (State.USER_ACCEPTED, "PASS"): (State.TRANSACTION, State.AUTHORIZATION),
    (State.USER_ACCEPTED, "USER"): (State.USER_ACCEPTED, State.AUTHORIZATION),
    (State.USER_ACCEPTED, "CAPA"): (State.USER_ACCEPTED, State.USER_ACCEPTED),
    (State.USER_ACCEPTED, "QUIT"): (State.DONE, State.DONE),
    (State.TRANSACTION, "CAPA"): (State.TRANSACTION, State.TRANSACTION),
    **{(State.TRANSACTION, k): (State.TRANSACTION, State.TRANSACTION) for k in _MAILDROP_COMMANDS},
    # -ERR to QUIT in TRANSACTION: some deletions failed (RFC 1939 §6); the session ends anyway.
    (State.TRANSACTION, "QUIT"): (State.DONE, State.DONE),
}
