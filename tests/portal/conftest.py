"""Portal test fixtures: a partner, and a web-app client already signed in as a given partner.

    def test_home(portal_client, portal_partner):
        client = portal_client(portal_partner)        # cookie set, as after following a sign-in link
        client.get("/portal")
        client.post("/portal/sign-out", data={"csrf_token": client.csrf_token})
"""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn
from factories import make_partner
from fastapi.testclient import TestClient

from partnerflow.stack import free_port
from partnerflow.tasks.portal.sessions import COOKIE_NAME, COOKIE_PATH, start_session
from partnerflow.web.app import create_app


class PortalClient(TestClient):
    """A TestClient of the web app signed in as `partner_id`; forms need `csrf_token`."""

    partner_id: int
    csrf_token: str
    session_cookie: str


def signed_in_client(partner_id: int) -> PortalClient:
    cookie, csrf = start_session(partner_id)
    client = PortalClient(create_app(), follow_redirects=False)
    # Where the server's own Set-Cookie puts it (httpx files a dotless host under .local), so a later
    # sign-in or sign-out replaces this cookie instead of adding a second one.
    client.cookies.set(COOKIE_NAME, cookie, domain="testserver.local", path=COOKIE_PATH)
    client.partner_id, client.csrf_token, client.session_cookie = partner_id, csrf, cookie
    return client


@pytest.fixture
def portal_partner() -> int:
    """An active partner (tracking code P1, signed contract, tax form received)."""
    return make_partner(1)


@pytest.fixture
def portal_client():
    """portal_client(partner_id) -> PortalClient signed in as that partner (redirects are not followed)."""
    clients: list[PortalClient] = []

    def _client(partner_id: int) -> PortalClient:
        clients.append(signed_in_client(partner_id))
        return clients[-1]

    yield _client
    for client in clients:
        client.close()


@pytest.fixture
def portal_csrf():
    """portal_csrf(client) -> the CSRF token its session's forms must carry."""
    return lambda client: client.csrf_token


@pytest.fixture
def anonymous_client():
    """A client of the web app with no session (redirects are not followed)."""
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


@pytest.fixture
def web_url():
    """The web app served by uvicorn in a thread of this process, on this test's database."""
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)
