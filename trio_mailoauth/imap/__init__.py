"""IMAP: the sans-I/O core (:class:`IMAPConnection`) and the async client (:func:`open_imap`)."""

from trio_mailoauth.imap import commands as commands
from trio_mailoauth.imap import events as events
from trio_mailoauth.imap._connection import IMAPConnection as IMAPConnection
from trio_mailoauth.imap._reader import Limits as Limits
from trio_mailoauth.imap._state import IMAPState as IMAPState
from trio_mailoauth.imap.client import IMAPClient as IMAPClient
from trio_mailoauth.imap.client import open_imap as open_imap

__all__ = [
    "IMAPClient",
    "IMAPConnection",
    "IMAPState",
    "Limits",
    "commands",
    "events",
    "open_imap",
]
