"""SMTP: the sans-I/O core (:class:`SMTPConnection`, its events and commands) and the async
client (:func:`open_smtp`, :class:`SMTPClient`)."""

from trio_mailoauth._sansio import NEED_DATA as NEED_DATA
from trio_mailoauth.smtp._connection import SMTPConnection as SMTPConnection
from trio_mailoauth.smtp._events import Authenticate as Authenticate
from trio_mailoauth.smtp._events import Bdat as Bdat
from trio_mailoauth.smtp._events import Command as Command
from trio_mailoauth.smtp._events import ConnectionClosed as ConnectionClosed
from trio_mailoauth.smtp._events import Data as Data
from trio_mailoauth.smtp._events import Ehlo as Ehlo
from trio_mailoauth.smtp._events import Event as Event
from trio_mailoauth.smtp._events import Helo as Helo
from trio_mailoauth.smtp._events import Mail as Mail
from trio_mailoauth.smtp._events import MessageData as MessageData
from trio_mailoauth.smtp._events import Noop as Noop
from trio_mailoauth.smtp._events import Quit as Quit
from trio_mailoauth.smtp._events import Rcpt as Rcpt
from trio_mailoauth.smtp._events import Reply as Reply
from trio_mailoauth.smtp._events import Rset as Rset
from trio_mailoauth.smtp._events import SASLChallenge as SASLChallenge
from trio_mailoauth.smtp._events import StartTLS as StartTLS
from trio_mailoauth.smtp._events import Vrfy as Vrfy
from trio_mailoauth.smtp._state import State as State
from trio_mailoauth.smtp.client import SMTPClient as SMTPClient
from trio_mailoauth.smtp.client import open_smtp as open_smtp
from trio_mailoauth.smtp.client import send as send
from trio_mailoauth.smtp.message import SendResult as SendResult

__all__ = [
    "NEED_DATA",
    "Authenticate",
    "Bdat",
    "Command",
    "ConnectionClosed",
    "Data",
    "Ehlo",
    "Event",
    "Helo",
    "Mail",
    "MessageData",
    "Noop",
    "Quit",
    "Rcpt",
    "Reply",
    "Rset",
    "SASLChallenge",
    "SMTPClient",
    "SMTPConnection",
    "SendResult",
    "StartTLS",
    "State",
    "Vrfy",
    "open_smtp",
    "send",
]
