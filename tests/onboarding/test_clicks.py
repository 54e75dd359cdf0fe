"""Tracking-link clicks: recorded with a random click id and no visitor in clear, deep links only to allowed
hosts (never an open redirect), bots counted apart, and a clean shutdown of the web app loses no queued click."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import Partner, session_scope
from partnerflow.models.tracking import Click
from partnerflow.tasks.onboarding import clicks
from partnerflow.web.app import create_app

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15"


@pytest.fixture
def code(configure):
    # A long flush interval: only an explicit flush or the shutdown writes, so the tests see exactly what is queued.
    configure(partner_landing_url="https://shop.example/start?utm_source=partners",
              partner_landing_domains="shop.example,docs.shop.example", click_flush_ms=60_000)
    clicks.WRITER.close()  # nothing left over from another test
    with session_scope() as session:
        partner = Partner(email="ana@example.com", legal_name="Ana Media LLC", contact_name="Ana", country="US",
                          tracking_code="anamedia-x7k2")
        session.add(partner)
    return "anamedia-x7k2"


def _stored() -> list[Click]:
    with session_scope() as session:
        return list(session.exec(select(Click).order_by(Click.id)).all())


def test_a_click_is_recorded_and_its_id_travels_to_the_landing_page(code):
    with TestClient(create_app()) as client:
        response = client.get(f"/r/{code}", follow_redirects=False,
                              headers={"user-agent": BROWSER + " x" * 400, "referer": "https://blog.example/post"})
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example", "/start")
    assert query["utm_source"] == ["partners"] and query["ref"] == [code]
    [click] = _stored()
    assert query["pf_click"] == [click.click_id] and len(click.click_id) >= 16
    assert click.tracking_code == code and click.referrer == "https://blog.example/post" and not click.is_bot
    assert click.ip_hash and "testclient" not in click.ip_hash and len(click.ip_hash) == 64  # keyed hash only
    assert len(click.user_agent) == clicks.MAX_USER_AGENT
    assert click.landing_url == response.headers["location"]


def test_deep_link_goes_to_an_allowed_host_with_the_click_id(code):
    with TestClient(create_app()) as client:
        response = client.get(f"/r/{code}", params={"to": "https://docs.shop.example/guide?x=1#top"},
                              follow_redirects=False, headers={"user-agent": BROWSER})
    location = response.headers["location"]
    assert location.startswith(f"https://docs.shop.example/guide?x=1&ref={code}&pf_click=")
    assert location.endswith("#top")


@pytest.mark.parametrize("target", [
    "//evil.example/", "https:evil.example", "https:/evil.example", "/\\evil.example", "https://evil.example\\.shop.example",
    "https://shop.example@evil.example/", "https://shop.example:pw@evil.example/", "https://evil.example/?shop.example",
    "https://shop.example.evil.example/", "https://evilshop.example/", "javascript:alert(1)//shop.example",
    "https://shоp.example/",  # Cyrillic о
    "https://xn--shp-wqa.example/", "https://shop.example:8443/", " https://evil.example", "https://evil.example\t",
    "http://shop.example%2eevil.example/", "data:text/html,hi", "ftp://shop.example/",
])
def test_a_deep_link_never_redirects_off_the_allowed_hosts(code, target):
    with TestClient(create_app()) as client:
        response = client.get(f"/r/{code}", params={"to": target}, follow_redirects=False,
                              headers={"user-agent": BROWSER})
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"https://shop.example/start?utm_source=partners&ref={code}&")


def test_bots_and_prefetches_are_counted_apart(code):
    with TestClient(create_app()) as client:
        client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": "Googlebot/2.1"})
        client.head(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER})
        client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER, "sec-purpose": "prefetch"})
        client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER})
    assert [c.is_bot for c in _stored()] == [True, True, True, False]


def test_a_bot_click_is_not_partner_activity(code):
    with TestClient(create_app()) as client:
        client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": "facebookexternalhit/1.1"})
    with session_scope() as session:
        assert session.exec(select(Partner.last_activity_at).where(Partner.tracking_code == code)).one() is None


def test_clean_shutdown_writes_every_queued_click(code):
    client = TestClient(create_app())
    with client:
        ids = [client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER}).headers["location"]
               .rsplit("pf_click=", 1)[1] for _ in range(30)]
        assert _stored() == [] and clicks.WRITER.pending() == 30  # still queued: the request path never waits
    assert sorted(c.click_id for c in _stored()) == sorted(ids)
    assert clicks.WRITER.pending() == 0


def test_unknown_codes_are_redirected_but_not_stored(code):
    with TestClient(create_app()) as client:
        assert client.get("/r/nobody-0000", follow_redirects=False).status_code == 302
    assert _stored() == []


def test_a_failed_write_keeps_the_clicks_for_the_next_flush(code, monkeypatch):
    with TestClient(create_app()) as client:
        client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER})
        original = clicks.write_clicks

        def database_away(batch):
            raise ConnectionError("database away")

        monkeypatch.setattr(clicks, "write_clicks", database_away)
        with pytest.raises(ConnectionError):
            clicks.WRITER.flush()
        assert clicks.WRITER.pending() == 1
        monkeypatch.setattr(clicks, "write_clicks", original)
    assert len(_stored()) == 1


def test_while_the_database_is_away_the_queue_stays_bounded(code, monkeypatch):
    monkeypatch.setattr(clicks, "MAX_QUEUED", 3)
    with TestClient(create_app()) as client:
        for _ in range(5):
            assert client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER}).status_code == 302
        assert clicks.WRITER.pending() == 3 and clicks.WRITER.dropped == 2
    assert len(_stored()) == 3
