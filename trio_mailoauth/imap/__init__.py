"""IMAP: the sans-I/O core (:class:`IMAPConnection`) and the async client (:func:`open_imap`)."""

from trio_mailoauth.errors import FetchInterruptedError as FetchInterruptedError
from trio_mailoauth.imap import commands as commands
from trio_mailoauth.imap import events as events
from trio_mailoauth.imap import mailbox as mailbox
from trio_mailoauth.imap import message as message
from trio_mailoauth.imap import search as search
from trio_mailoauth.imap._connection import IMAPConnection as IMAPConnection
from trio_mailoauth.imap._reader import Limits as Limits
from trio_mailoauth.imap._state import IMAPState as IMAPState
from trio_mailoauth.imap.client import IMAPClient as IMAPClient
from trio_mailoauth.imap.client import open_imap as open_imap
from trio_mailoauth.imap.commands import QResync as QResync
from trio_mailoauth.imap.mailbox import MailboxInfo as MailboxInfo
from trio_mailoauth.imap.message import Fetch as Fetch
from trio_mailoauth.imap.search import Q as Q

__all__ = [
    "Fetch",
    "FetchInterruptedError",
    "IMAPClient",
    "IMAPConnection",
    "IMAPState",
    "Limits",
    "MailboxInfo",
    "Q",
    "QResync",
    "commands",
    "events",
    "mailbox",
    "message",
    "open_imap",
    "search",
]
