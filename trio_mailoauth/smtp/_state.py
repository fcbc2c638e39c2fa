"""Every state of an SMTP client connection and every transition, as two tables.

``SEND_TRANSITIONS``: (state, verb of the command we send) -> state while its reply is awaited.
``REPLY_TRANSITIONS``: (state, verb the reply answers, reply class) -> state after the reply.

The reply class is the first digit of the code (``"2"`` .. ``"5"``), except ``"421"``: the
server is closing the transmission channel (RFC 5321 §3.8), which it may answer to any command.

Anything missing from a table is an error naming the state and the event: for a command we
were asked to send, LocalProtocolError (nothing is queued); for a reply, RemoteProtocolError.

Two facts are flags rather than states, because they only forbid a command and would
otherwise double the table: ``tls_active`` (no second STARTTLS) and ``authenticated``
(RFC 4954 §4: no second AUTH). The connection checks them next to the table lookup.
"""

from __future__ import annotations

import enum

__all__ = [
    "GREETING",
    "PIPELINE_MAY_CONTINUE",
    "PIPELINE_MAY_END",
    "REPLY_CLASSES",
    "REPLY_TRANSITIONS",
    "SEND_TRANSITIONS",
    "State",
    "reply_class",
]


class State(enum.Enum):
    AWAIT_GREETING = "await greeting"  # connected; the server speaks first
    REFUSED = "refused"  # 554 greeting: the server serves us nothing but QUIT (RFC 5321 §3.1)
    GREETED = "greeted"  # greeting read (or TLS just started): EHLO/HELO comes next
    READY = "ready"  # EHLO/HELO done: STARTTLS, AUTH (later MAIL) may follow
    EHLO_SENT = "EHLO sent"
    HELO_SENT = "HELO sent"
    STARTTLS_SENT = "STARTTLS sent"
    TLS_HANDSHAKE = "TLS handshake"  # 220 go-ahead read; the I/O layer runs the handshake
    AUTHENTICATING = "authenticating"  # AUTH sent; challenges until the final reply
    # A mail transaction (RFC 5321 §3.3). With PIPELINING, replies to MAIL/RCPT/BDAT may
    # still be on their way in any of these states: they never change the state (a refused
    # MAIL or RCPT shows in the replies to what follows; the client reads them all).
    MAIL_SENT = "in a mail transaction"  # MAIL sent: RCPT, DATA or BDAT may follow
    DATA_SENT = "DATA sent"  # waiting for the 354 go-ahead
    DATA_OPEN = "sending message data"  # 354 read: the message content must come next
    CHUNKING = "sending BDAT chunks"  # BDAT chunks sent, the LAST one not yet
    FINISHING = "awaiting the final reply"  # the data's end sent (".", BDAT LAST)
    QUIT_SENT = "QUIT sent"
    CLOSING = "closing"  # the server said 421: only the end of the stream may follow
    CLOSED = "closed"  # QUIT answered, or the server closed the connection
    ERROR = "error"  # a protocol error or a failed write; nothing works any more

    # Members are singletons compared by identity: hash them by identity too, in C, not by
    # Enum's Python-level hash of the name (the tables below are looked up per command/reply).
    __hash__ = object.__hash__


# The pseudo-verb of the reply nobody asked for but everybody waits for.
GREETING = "greeting"


def reply_class(code: int) -> str:
    """The key a reply code has in REPLY_TRANSITIONS."""
    return "421" if code == 421 else str(code // 100)


# reply_class() of every code a reply line can carry (the reader accepts 200-599), looked
# up once per reply instead of computed.
REPLY_CLASSES = {code: reply_class(code) for code in range(200, 600)}

S = State

SEND_TRANSITIONS: dict[tuple[State, str], State] = {
    # Greeting: EHLO, or HELO for servers that do not know EHLO.
    (S.GREETED, "EHLO"): S.EHLO_SENT,
    (S.GREETED, "HELO"): S.HELO_SENT,
    (S.READY, "EHLO"): S.EHLO_SENT,  # asking again is allowed (and resets a transaction)
    (S.READY, "HELO"): S.HELO_SENT,
    (S.READY, "STARTTLS"): S.STARTTLS_SENT,
    (S.READY, "AUTH"): S.AUTHENTICATING,
    # State-neutral commands: allowed whenever the server listens to commands at all.
    (S.GREETED, "NOOP"): S.GREETED,
    (S.READY, "NOOP"): S.READY,
    (S.GREETED, "RSET"): S.GREETED,
    (S.READY, "RSET"): S.READY,
    (S.GREETED, "QUIT"): S.QUIT_SENT,
    (S.READY, "QUIT"): S.QUIT_SENT,
    (S.REFUSED, "QUIT"): S.QUIT_SENT,  # the one polite thing left after a 554 greeting
    (S.READY, "VRFY"): S.READY,
    # The mail transaction.
    (S.READY, "MAIL"): S.MAIL_SENT,
    (S.MAIL_SENT, "RCPT"): S.MAIL_SENT,
    (S.MAIL_SENT, "DATA"): S.DATA_SENT,
    (S.DATA_OPEN, "MESSAGE DATA"): S.FINISHING,
    (S.MAIL_SENT, "BDAT"): S.CHUNKING,
    (S.MAIL_SENT, "BDAT LAST"): S.FINISHING,
    (S.CHUNKING, "BDAT"): S.CHUNKING,
    (S.CHUNKING, "BDAT LAST"): S.FINISHING,
    # RSET abandons a transaction (after refusals, or a failed BDAT chunk: RFC 3030 §2).
    (S.MAIL_SENT, "RSET"): S.READY,
    (S.CHUNKING, "RSET"): S.READY,
    (S.MAIL_SENT, "NOOP"): S.MAIL_SENT,
    (S.MAIL_SENT, "QUIT"): S.QUIT_SENT,
    (S.CHUNKING, "QUIT"): S.QUIT_SENT,
}

_ALL_CLASSES = ("2", "3", "4", "421", "5")
# The states in which replies to pipelined commands may still arrive, and those commands.
_PIPELINED_STATES = (S.READY, S.MAIL_SENT, S.DATA_SENT, S.CHUNKING, S.FINISHING)
_CONTINUING = ("NOOP", "RSET", "MAIL", "RCPT", "BDAT")

REPLY_TRANSITIONS: dict[tuple[State, str, str], State] = {
    (S.AWAIT_GREETING, GREETING, "2"): S.GREETED,
    (S.AWAIT_GREETING, GREETING, "5"): S.REFUSED,
    # EHLO/HELO refused: still ungreeted (the client may fall back from EHLO to HELO).
    (S.EHLO_SENT, "EHLO", "2"): S.READY,
    (S.EHLO_SENT, "EHLO", "4"): S.GREETED,
    (S.EHLO_SENT, "EHLO", "5"): S.GREETED,
    (S.HELO_SENT, "HELO", "2"): S.READY,
    (S.HELO_SENT, "HELO", "4"): S.GREETED,
    (S.HELO_SENT, "HELO", "5"): S.GREETED,
    (S.STARTTLS_SENT, "STARTTLS", "2"): S.TLS_HANDSHAKE,
    (S.STARTTLS_SENT, "STARTTLS", "4"): S.READY,  # 454 TLS not available
    (S.STARTTLS_SENT, "STARTTLS", "5"): S.READY,
    (S.AUTHENTICATING, "AUTH", "3"): S.AUTHENTICATING,  # 334 challenge
    (S.AUTHENTICATING, "AUTH", "2"): S.READY,  # 235: authenticated
    (S.AUTHENTICATING, "AUTH", "4"): S.READY,
    (S.AUTHENTICATING, "AUTH", "5"): S.READY,
    # The server answers QUIT with 221; whatever it says, we are leaving.
    **{(S.QUIT_SENT, "QUIT", cls): S.CLOSED for cls in _ALL_CLASSES if cls != "3"},
    # NOOP and RSET change nothing, whatever the answer.
    **{
        (state, verb, cls): state
        for state in (S.GREETED, S.READY)
        for verb in ("NOOP", "RSET")
        for cls in ("2", "4", "5")
    },
    **{(S.READY, "VRFY", cls): S.READY for cls in ("2", "4", "5")},
    # Replies to the commands that may continue a pipeline change nothing: they may arrive
    # in any state reached by sending what may follow them.
    **{
        (state, verb, cls): state
        for state in _PIPELINED_STATES
        for verb in _CONTINUING
        for cls in ("2", "4", "5")
    },
    (S.DATA_SENT, "DATA", "3"): S.DATA_OPEN,  # 354: send the message
    (S.DATA_SENT, "DATA", "4"): S.READY,  # refused (no valid recipient, MAIL refused...)
    (S.DATA_SENT, "DATA", "5"): S.READY,
    # The final reply ends the transaction, whatever it says.
    **{
        (S.FINISHING, verb, cls): S.READY
        for verb in ("MESSAGE DATA", "BDAT LAST")
        for cls in ("2", "4", "5")
    },
    # 421 to anything: the server is closing the channel.
    **{
        (state, verb, "421"): S.CLOSING
        for state, verb in [
            (S.AWAIT_GREETING, GREETING),
            (S.EHLO_SENT, "EHLO"),
            (S.HELO_SENT, "HELO"),
            (S.STARTTLS_SENT, "STARTTLS"),
            (S.AUTHENTICATING, "AUTH"),
            (S.GREETED, "NOOP"),
            (S.READY, "NOOP"),
            (S.GREETED, "RSET"),
            (S.READY, "RSET"),
            (S.READY, "VRFY"),
            *((state, verb) for state in _PIPELINED_STATES for verb in _CONTINUING),
            (S.DATA_SENT, "DATA"),
            (S.FINISHING, "MESSAGE DATA"),
            (S.FINISHING, "BDAT LAST"),
        ]
    },
}

# PIPELINING (RFC 2920 §3.1), when the server advertises it. A command may be sent before the
# replies to earlier ones when every command still awaiting its reply is one that may
# *continue* a group: RSET, MAIL, RCPT (their replies change nothing the client must know
# before going on), BDAT chunks (RFC 3030 §4.2) and NOOP. The command sent may also be one
# that *ends* a group: DATA (its 354 must be read before the content), the last BDAT chunk,
# VRFY. EHLO, STARTTLS, AUTH and QUIT are never pipelined. Sending the next transaction's
# MAIL before the final reply of the previous one is not possible at all (the state table
# has no MAIL in FINISHING): it is legal, but Dovecot 2.3 submission crashes on it.
PIPELINE_MAY_CONTINUE = frozenset({"NOOP", "RSET", "MAIL", "RCPT", "BDAT"})
PIPELINE_MAY_END = PIPELINE_MAY_CONTINUE | {"DATA", "BDAT LAST", "VRFY"}
