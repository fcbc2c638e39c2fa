"""POP3: the sans-I/O core (:class:`POP3Connection`) and the async client (:func:`open_pop3`).

``trio_mailoauth.pop3.events`` holds the commands the core accepts and the events it emits.
"""

from trio_mailoauth.pop3 import _events as events
from trio_mailoauth.pop3._connection import POP3Connection as POP3Connection
from trio_mailoauth.pop3._state import State as State
from trio_mailoauth.pop3.client import POP3Client as POP3Client
from trio_mailoauth.pop3.client import open_pop3 as open_pop3

__all__ = ["POP3Client", "POP3Connection", "State", "events", "open_pop3"]
