"""Signing in to the partner portal and out again: sessions, their expiry, the cookie, CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from factories import make_partner
from fastapi.testclient import TestClient
from sqlmodel import select
from support import link, mail_text, mails

from partnerflow.models import session_scope, utcnow
from partnerflow.models.portal import PortalSession, PortalSignInLink
from partnerflow.tasks.portal import sessions
from partnerflow.tasks.portal.sessions import COOKIE_NAME, start_session, visitor_for
from partnerflow.web.app import create_app


def _sessions() -> list[PortalSession]:
    with session_scope() as session:
        return list(session.exec(select(PortalSession)).all())


def test_the_row_holds_only_a_hash_of_the_session_id(portal_partner):
    cookie, csrf = start_session(portal_partner)
    [row] = _sessions()
    session_id = sessions._session_id(cookie)
    assert len(session_id) >= 40 and session_id not in row.session_hash and csrf != row.session_hash
    with session_scope() as session:
        assert not session.exec(select(PortalSession).where(PortalSession.session_hash == session_id)).all()
    assert visitor_for(cookie).partner_id == portal_partner


def test_a_tampered_or_forged_cookie_signs_nobody_in(portal_partner, anonymous_client):
    cookie, _ = start_session(portal_partner)
    payload, _, signature = cookie.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (payload + "." + flipped, payload, "x" * 40, cookie + "x"):
        assert visitor_for(bad) is None
        anonymous_client.cookies.set(COOKIE_NAME, bad)
        answer = anonymous_client.post("/portal/sign-out", data={})
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/sign-in"
    assert len(_sessions()) == 1  # nothing signed out by a forged cookie


def test_sign_out_deletes_the_session_row(portal_client, portal_partner):
    client = portal_client(portal_partner)
    other = portal_client(portal_partner)  # the same partner on another device stays signed in
    answer = client.post("/portal/sign-out", data={"csrf_token": client.csrf_token})
    assert answer.status_code == 303 and answer.headers["location"] == "/portal/sign-in"
    assert visitor_for(client.session_cookie) is None and visitor_for(other.session_cookie) is not None
    assert len(_sessions()) == 1
    again = client.post("/portal/sign-out", data={"csrf_token": client.csrf_token})
    assert again.status_code == 303 and again.headers["location"] == "/portal/sign-in"


def test_a_post_without_this_sessions_csrf_token_is_refused(portal_client, portal_partner):
    client = portal_client(portal_partner)
    other = portal_client(portal_partner)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": other.csrf_token}, {"csrf_token": client.csrf_token + "0"}):
        assert client.post("/portal/sign-out", data=data).status_code == 403
    assert len(_sessions()) == 2  # still signed in


def test_idle_session_ends(configure, portal_partner):
    configure(portal_session_idle_minutes=30, portal_session_absolute_hours=12)
    cookie, _ = start_session(portal_partner)
    with time_machine.travel(utcnow() + timedelta(minutes=20)):
        assert visitor_for(cookie) is not None  # a page view keeps it alive ...
    with time_machine.travel(utcnow() + timedelta(minutes=45)):
        assert visitor_for(cookie) is not None  # ... for another 30 minutes
    with time_machine.travel(utcnow() + timedelta(minutes=80)):
        assert visitor_for(cookie) is None
    assert _sessions() == []  # the stale row is gone
    start_session(portal_partner)  # a session nobody comes back to ...
    other = make_partner(2)
    with time_machine.travel(utcnow() + timedelta(minutes=31)):
        start_session(other)  # ... is cleared when anyone signs in
    assert [row.partner_id for row in _sessions()] == [other]


def test_a_busy_session_still_ends_at_its_absolute_expiry(configure, portal_partner):
    configure(portal_session_idle_minutes=30, portal_session_absolute_hours=2)
    cookie, _ = start_session(portal_partner)
    start = utcnow()
    for minutes in range(20, 120, 20):
        with time_machine.travel(start + timedelta(minutes=minutes)):
            assert visitor_for(cookie) is not None
    with time_machine.travel(start + timedelta(minutes=121)):
        assert visitor_for(cookie) is None


# --- signing in by emailed link ----------------------------------------------------------------------

def _form_token(client) -> str:
    page = client.get("/portal/sign-in")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _ask(client, email: str):
    return client.post("/portal/sign-in", data={"email": email, "csrf_token": _form_token(client)})


def _use(client, path: str):
    page = client.get(path)
    if page.status_code != 200:
        return page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(path, data={"csrf_token": token})


def test_the_answer_is_the_same_whether_or_not_the_address_is_a_partners(portal_partner, anonymous_client, outbox):
    known = _ask(anonymous_client, "P1@Example.com")
    unknown = _ask(anonymous_client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("p1@example.com", "X") == unknown.text.replace("nobody@example.com", "X")
    sent = mails(outbox)
    assert [m["To"] for m in sent] == ["p1@example.com"]
    assert "/portal/sign-in/" in mail_text(sent[0])


def test_a_sign_in_link_works_once(portal_partner, anonymous_client, outbox):
    _ask(anonymous_client, "p1@example.com")
    path = link(outbox, "/portal/sign-in/")
    assert anonymous_client.get(path).status_code == 200  # opening the page (or a mail scanner) spends nothing
    assert anonymous_client.get(path).status_code == 200
    signed = _use(anonymous_client, path)
    assert signed.status_code == 303 and signed.headers["location"] == "/portal"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/portal" in cookie and "Secure" not in cookie
    assert visitor_for(anonymous_client.cookies.get(COOKIE_NAME)).partner_id == portal_partner
    with TestClient(create_app(), follow_redirects=False) as elsewhere:
        again = _use(elsewhere, path)
        assert again.status_code == 410 and "already used" in again.text
        assert again.headers["cache-control"] == "no-store"  # a page of a secret link is never kept
        token = re.search(r'name="csrf_token" value="([^"]+)"', elsewhere.get("/portal/sign-in").text).group(1)
        assert elsewhere.post(path, data={"csrf_token": token}).status_code == 410
    assert len(_sessions()) == 1


def test_a_sign_in_link_expires(configure, portal_partner, anonymous_client, outbox):
    configure(portal_sign_in_link_minutes=10)
    _ask(anonymous_client, "p1@example.com")
    path = link(outbox, "/portal/sign-in/")
    with time_machine.travel(utcnow() + timedelta(minutes=11)):
        assert _use(anonymous_client, path).status_code == 410
        token = _form_token(anonymous_client)
        assert anonymous_client.post(path, data={"csrf_token": token}).status_code == 410
    assert _sessions() == [] and anonymous_client.get("/portal/sign-in/not-a-link").status_code == 404
    with time_machine.travel(utcnow() + timedelta(days=2)):
        _ask(anonymous_client, "p1@example.com")  # an old link is cleared when a new one is made
    with session_scope() as session:
        assert len(session.exec(select(PortalSignInLink)).all()) == 1


def test_the_session_cookie_is_secure_behind_https(configure, portal_partner, outbox):
    configure(public_base_url="https://partners.acme.example")
    with TestClient(create_app(), base_url="https://testserver", follow_redirects=False) as client:
        _ask(client, "p1@example.com")
        signed = _use(client, link(outbox, "/portal/sign-in/"))
    assert "Secure" in signed.headers["set-cookie"]


def test_sign_in_links_are_rate_limited_per_address_and_per_client(configure, portal_partner, outbox):
    configure(portal_sign_in_limit_per_email="2/minute", portal_sign_in_limit_per_ip="4/minute")
    with TestClient(create_app(), follow_redirects=False) as client:
        assert [_ask(client, "p1@example.com").status_code for _ in range(3)] == [200, 200, 429]
        assert len(mails(outbox)) == 2
        assert [_ask(client, f"x{i}@example.com").status_code for i in range(2)] == [200, 429]  # 4 from here
    with TestClient(create_app(), client=("10.1.1.1", 5000), follow_redirects=False) as other:
        assert _ask(other, "someone@example.com").status_code == 200


def test_a_sign_in_form_without_its_token_is_refused(portal_partner, anonymous_client, outbox):
    assert anonymous_client.post("/portal/sign-in", data={"email": "p1@example.com"}).status_code == 403
    _form_token(anonymous_client)
    bad = anonymous_client.post("/portal/sign-in", data={"email": "p1@example.com", "csrf_token": "0" * 64})
    assert bad.status_code == 403 and mails(outbox) == []
    assert _ask(anonymous_client, "not an address").status_code == 422


def test_signing_in_again_ends_the_session_the_browser_had(portal_client, portal_partner, outbox):
    other = make_partner(2)
    client = portal_client(other)
    old_cookie = client.session_cookie
    _ask(client, "p1@example.com")
    assert _use(client, link(outbox, "/portal/sign-in/")).status_code == 303
    assert visitor_for(old_cookie) is None
    assert visitor_for(client.cookies.get(COOKIE_NAME)).partner_id == portal_partner
    assert [row.partner_id for row in _sessions()] == [portal_partner]
