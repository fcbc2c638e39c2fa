"""Session fixtures shared by the test suite.

Real servers (need root and ``scripts/install-system-deps``; tests using them are integration
tests -- mark them ``@pytest.mark.integration``, this file also adds the marker to any test
that requests ``mail_servers`` or ``oauth`` so ``-m "not integration"`` always skips them):

- ``mail_servers`` (session): Dovecot + Postfix + the OAuth2 server, started once (~2-4 s) and
  stopped at the end; a :class:`~trio_mailoauth.testing.servers.MailServers`.
- ``oauth`` (function): ``mail_servers.oauth``, the control client of the OAuth2 server that
  Dovecot introspects against, reset (tokens, faults, counters, settings) before the test.

OAuth2 server alone (no root, no Dovecot):

- ``standalone_oauth_server`` (session): its own process on a free port.
- ``standalone_oauth`` (function): its control client, reset before the test.

The integration tests are marked ``anyio`` as well: each runs on trio and again on asyncio.

Sync fixtures on purpose: starting processes is blocking work, and trio tests can use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trio_mailoauth.testing.oauth_server import OAuthServerControl
from trio_mailoauth.testing.servers import MailServers, OAuthServerProcess

_SERVER_FIXTURES = {"mail_servers", "oauth"}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("anyio") is not None and isinstance(item, pytest.Function):
            # Tests marked anyio run once per backend (the anyio_backend fixture below), by
            # anyio's plugin: take them back from pytest-trio's trio_mode.
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Tests marked ``@pytest.mark.anyio`` run on trio and on asyncio: same library code."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def mail_servers() -> Iterator[MailServers]:
    with MailServers.start() as servers:
        yield servers


@pytest.fixture
def oauth(mail_servers: MailServers) -> OAuthServerControl:
    mail_servers.oauth.reset()
    return mail_servers.oauth


@pytest.fixture(scope="session")
def standalone_oauth_server() -> Iterator[OAuthServerProcess]:
    server = OAuthServerProcess.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def standalone_oauth(standalone_oauth_server: OAuthServerProcess) -> OAuthServerControl:
    standalone_oauth_server.control.reset()
    return standalone_oauth_server.control
