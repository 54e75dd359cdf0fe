"""Signing in to the partner portal and out again: sessions, their expiry, the cookie, CSRF."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlmodel import select

from partnerflow.models import session_scope, utcnow
from partnerflow.models.portal import PortalSession
from partnerflow.tasks.portal import sessions
from partnerflow.tasks.portal.sessions import COOKIE_NAME, start_session, visitor_for


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


def test_a_busy_session_still_ends_at_its_absolute_expiry(configure, portal_partner):
    configure(portal_session_idle_minutes=30, portal_session_absolute_hours=2)
    cookie, _ = start_session(portal_partner)
    start = utcnow()
    for minutes in range(20, 120, 20):
        with time_machine.travel(start + timedelta(minutes=minutes)):
            assert visitor_for(cookie) is not None
    with time_machine.travel(start + timedelta(minutes=121)):
        assert visitor_for(cookie) is None
