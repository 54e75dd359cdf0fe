"""The opt-out link in news mail (page, RFC 8058 one-click POST, forged tokens) and the portal's email choices."""

from __future__ import annotations

import pytest
from factories import make_partner
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import AuditLog, session_scope
from partnerflow.tasks.news.preferences import choices_of, opt_out_token, opt_out_url, read_token
from partnerflow.tasks.portal.sessions import COOKIE_NAME, start_session
from partnerflow.web.app import create_app

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


@pytest.fixture
def client():
    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


def _path(news_list: str, partner_id: int) -> str:
    return f"/news/u/{opt_out_token(news_list, partner_id)}"


def test_one_click_post_with_a_genuine_token_stops_program_news_only(client):
    partner = make_partner(1)
    page = client.get(_path("news", partner))
    assert page.status_code == 200 and "p1@example.com" in page.text and "<form method=\"post\"" in page.text
    assert choices_of(partner).news  # a GET (a mail scanner) changes nothing
    answer = client.post(_path("news", partner), **ONE_CLICK)
    assert answer.status_code == 200 and "will not get program news" in answer.text
    assert choices_of(partner).news is False and choices_of(partner).weekly is True
    assert client.post(_path("news", partner), **ONE_CLICK).status_code == 200  # idempotent
    with session_scope() as session:
        rows = session.exec(select(AuditLog).where(AuditLog.action == "news.news.left")).all()
        assert [(r.actor, r.subject_id) for r in rows] == [("one-click", str(partner))]


def test_the_weekly_link_stops_only_the_weekly_email(client):
    partner = make_partner(1)
    assert client.post(_path("weekly", partner), data={}).status_code == 200  # the page's button
    assert choices_of(partner).weekly is False and choices_of(partner).news is True


@pytest.mark.parametrize("forge", [
    lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # one character of the signature changed
    lambda t: t.replace("news-1-", "news-2-"),  # another partner's id under this signature
    lambda t: t.replace("news-", "weekly-"),  # the other list under this signature
    lambda t: "news-1-" + "a" * 32,
    lambda t: "news-1",
    lambda t: "news-99999999999999999999999-abc",
    lambda t: "news-1-é" + t[-31:],
])
def test_a_forged_or_altered_token_is_refused_and_changes_nothing(client, forge):
    first, second = make_partner(1), make_partner(2)
    assert first == 1 and second == 2
    forged = forge(opt_out_token("news", first))
    assert read_token(forged) is None
    assert client.post(f"/news/u/{forged}", **ONE_CLICK).status_code == 404
    assert client.get(f"/news/u/{forged}").status_code == 404
    assert choices_of(first) == choices_of(second) and choices_of(first).news and choices_of(first).weekly


def test_a_token_signed_under_an_older_key_still_works_after_rotation(configure, client):
    partner = make_partner(1)
    old_url = opt_out_url("news", partner)
    configure(secret_key="a-brand-new-secret-key-of-enough-length-0001",
              previous_secret_keys="test-secret-key-not-for-production")
    assert client.post(old_url.split("8765", 1)[1], **ONE_CLICK).status_code == 200
    assert choices_of(partner).news is False


def _portal(partner_id: int) -> tuple[TestClient, str]:
    cookie, csrf = start_session(partner_id)
    client = TestClient(create_app(), follow_redirects=False)
    client.cookies.set(COOKIE_NAME, cookie)
    return client, csrf


def test_the_portal_page_turns_each_email_off_and_on_with_csrf():
    partner, other = make_partner(1), make_partner(2)
    client, csrf = _portal(partner)
    assert 'href="/portal/preferences"' in client.get("/portal").text  # reachable from every portal page
    page = client.get("/portal/preferences")
    assert 'href="/portal/preferences" aria-current="page"' in page.text
    assert page.status_code == 200 and page.text.count(" checked") == 2 and f'value="{csrf}"' in page.text
    saved = client.post("/portal/preferences", data={"csrf_token": csrf, "news": "on"})  # weekly unticked
    assert saved.status_code == 200 and "Your choices are saved" in saved.text
    assert choices_of(partner).news is True and choices_of(partner).weekly is False
    assert choices_of(other).weekly is True  # only the signed-in partner's choices
    client.post("/portal/preferences", data={"csrf_token": csrf, "weekly": "on"})
    assert choices_of(partner).news is False and choices_of(partner).weekly is True
    client.post("/portal/preferences", data={"csrf_token": csrf, "news": "on", "weekly": "on"})
    assert choices_of(partner).news is True and choices_of(partner).weekly is True


def test_the_portal_page_refuses_a_post_without_csrf_and_a_visitor_without_a_session():
    partner = make_partner(1)
    client, _ = _portal(partner)
    assert client.post("/portal/preferences", data={"weekly": ""}).status_code == 403
    assert client.post("/portal/preferences", data={"csrf_token": "guess"}).status_code == 403
    assert choices_of(partner).news and choices_of(partner).weekly
    with TestClient(create_app(), follow_redirects=False) as anonymous:
        assert anonymous.get("/portal/preferences").status_code == 303
        assert anonymous.post("/portal/preferences", data={"csrf_token": "x"}).status_code == 303
