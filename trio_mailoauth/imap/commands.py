"""The commands :meth:`IMAPConnection.send` accepts, one frozen dataclass each.

A command knows its name and its arguments; :mod:`._writer` turns those into bytes
(choosing quoted strings or literals), and :mod:`._state` says when it may be sent.
Secrets (a password, a SASL initial response) are hidden from reprs and from the trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trio_mailoauth._sansio import encode_sasl
from trio_mailoauth.imap._writer import Arg, AString, Atom

__all__ = [
    "Authenticate",
    "Capability",
    "Command",
    "Login",
    "Logout",
    "Noop",
    "StartTLS",
]


class Command:
    """Base class: ``name`` on the wire, ``arguments()`` after it."""

    name: ClassVar[str]

    def arguments(self) -> tuple[Arg, ...]:
        return ()

    def redacted_arguments(self) -> str | None:
        """What the trace shows in place of the arguments; None: show them as they are."""
        return None


@dataclass(frozen=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True)
class Login(Command):
    """``LOGIN user password``; each sent as a quoted string or a literal, whichever is safe."""

    name: ClassVar[str] = "LOGIN"
    user: str
    password: str = field(repr=False)

    def arguments(self) -> tuple[Arg, ...]:
        return (AString(self.user), AString(self.password))

    def redacted_arguments(self) -> str | None:
        return "<redacted>"


@dataclass(frozen=True)
class Authenticate(Command):
    """``AUTHENTICATE mechanism [initial-response]`` (RFC 9051 §6.2.2, RFC 4959 SASL-IR).

    ``initial_response`` is the raw (not base64) first response, sent on the command line;
    ``None`` means the two-step form (the server's empty ``+`` asks for it). While the
    exchange runs the connection emits :class:`~trio_mailoauth.imap.events.SASLChallenge`
    events, answered with :meth:`IMAPConnection.send_sasl_response`.
    """

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)

    def arguments(self) -> tuple[Arg, ...]:
        mechanism = Atom(self.mechanism.upper())
        if self.initial_response is None:
            return (mechanism,)
        # Base64 is made of atom characters; an empty response is sent as "=" (RFC 4959).
        encoded = encode_sasl(self.initial_response).decode("ascii") or "="
        return (mechanism, Atom(encoded))

    def redacted_arguments(self) -> str | None:
        if self.initial_response is None:
            return None
        return f"{self.mechanism.upper()} <redacted>"
