"""Test support: real local mail servers and an OAuth2 test server.

- :mod:`.servers`: :class:`MailServers` / :func:`run_mail_servers` start a private Dovecot
  (IMAP, POP3, submission, LMTP), Postfix (relay + SMTP AUTH) and the OAuth2 server on
  127.0.0.1 high ports, with a throwaway CA (needs root and ``scripts/install-system-deps``).
- :mod:`.oauth_server`: the OAuth2 server (``python -m trio_mailoauth.testing.oauth_server``)
  and :class:`OAuthServerControl`, the client of its test controls.
- ``python -m trio_mailoauth.testing start|stop|status``: the servers for a shell session.

Names are imported lazily: ``python -m trio_mailoauth.testing.oauth_server`` imports this
package first, and an eager import of that module here would make runpy warn that it is already
in ``sys.modules`` (and would load the harness into the token server process for nothing).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trio_mailoauth.testing.oauth_server import OAuthServerControl as OAuthServerControl
    from trio_mailoauth.testing.servers import USERS as USERS
    from trio_mailoauth.testing.servers import HarnessError as HarnessError
    from trio_mailoauth.testing.servers import MailServers as MailServers
    from trio_mailoauth.testing.servers import OAuthServerProcess as OAuthServerProcess
    from trio_mailoauth.testing.servers import Ports as Ports
    from trio_mailoauth.testing.servers import run_mail_servers as run_mail_servers

__all__ = [
    "USERS",
    "HarnessError",
    "MailServers",
    "OAuthServerControl",
    "OAuthServerProcess",
    "Ports",
    "run_mail_servers",
]

_HOME = {name: "servers" for name in __all__} | {"OAuthServerControl": "oauth_server"}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
