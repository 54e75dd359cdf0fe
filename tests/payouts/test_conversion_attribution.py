"""Attribution of conversions: by the click they came from, then tracking code, then coupon, inside the
attribution window; the customer's email kept only as keyed hashes; and the fraud signals fire on
conversions that arrived through /api/conversions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from partnerflow.models import Conversion, Partner, Stage, session_scope, utcnow
from partnerflow.models.tracking import Click
from partnerflow.tasks.compliance.fraud import fraud_signals
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.onboarding import clicks
from partnerflow.tasks.payouts.conversions import add_source, import_csv
from partnerflow.web.app import create_app

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def shop(configure):
    configure(partner_landing_url="https://shop.example/", click_flush_ms=60_000, attribution_window_days=30)
    clicks.WRITER.close()
    ids = {}
    with session_scope() as session:
        for n in (1, 2):
            p = Partner(email=f"owner{n}@blog{n}.example", legal_name=f"Blog {n} LLC", contact_name="Owner",
                        country="US", domain=f"blog{n}.example", stage=Stage.ACTIVE,
                        created_at=utcnow() - timedelta(days=200), activated_at=utcnow() - timedelta(days=200),
                        tracking_code=f"blog{n}-code", coupon_code=f"BLOG{n}")
            session.add(p)
            session.flush()
            ids[n] = p.id
    return TestClient(create_app()), add_source("shop"), ids


def _click(client: TestClient, code: str) -> str:
    location = client.get(f"/r/{code}", follow_redirects=False, headers={"user-agent": BROWSER}).headers["location"]
    return location.rsplit("pf_click=", 1)[1]


def _post(client, key, *records):
    response = client.post("/api/conversions", json={"conversions": list(records)}, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return response.json()


def _stored() -> dict[str, Conversion]:
    with session_scope() as session:
        return {c.external_id: c for c in session.exec(select(Conversion)).all()}


def _iso(at) -> str:
    return at.isoformat().replace("+00:00", "Z")


def test_the_click_wins_over_code_and_coupon_and_the_way_is_stored(shop):
    client, key, ids = shop
    click_id = _click(client, "blog1-code")
    clicks.WRITER.flush()
    now = utcnow()
    base = {"amount": "10.00", "currency": "USD", "occurred_at": _iso(now)}
    report = _post(client, key,
                   {**base, "external_id": "by-click", "click_id": click_id, "tracking_code": "blog2-code",
                    "coupon_code": "BLOG2"},
                   {**base, "external_id": "by-code", "tracking_code": "blog2-code", "coupon_code": "BLOG1"},
                   {**base, "external_id": "by-coupon", "coupon_code": "BLOG2"},
                   {**base, "external_id": "unknown-click", "click_id": "x" * 16, "coupon_code": "BLOG1"},
                   {**base, "external_id": "nothing"})
    assert (report["created"], report["unattributed"], report["errors"]) == (5, 1, [])
    got = {ext: (c.partner_id, c.attribution) for ext, c in _stored().items()}
    assert got == {"by-click": (ids[1], "click"), "by-code": (ids[2], "tracking_code"),
                   "by-coupon": (ids[2], "coupon"), "unknown-click": (ids[1], "coupon"), "nothing": (None, None)}
    assert _stored()["by-click"].clicked_at is not None  # our own record of the click time


def test_clicks_and_codes_count_only_inside_the_window(shop, configure):
    client, key, ids = shop
    click_id = _click(client, "blog1-code")
    clicks.WRITER.flush()
    configure(attribution_window_days=7)
    with session_scope() as session:  # the click happened eight days ago
        row = session.exec(select(Click).where(Click.click_id == click_id)).one()
        row.clicked_at = utcnow() - timedelta(days=8)
    base = {"amount": "10.00", "currency": "USD", "occurred_at": _iso(utcnow())}
    _post(client, key,
          {**base, "external_id": "old-click", "click_id": click_id, "coupon_code": "BLOG2"},
          {**base, "external_id": "old-code", "tracking_code": "blog1-code",
           "clicked_at": _iso(utcnow() - timedelta(days=9))},
          {**base, "external_id": "fresh-code", "tracking_code": "blog1-code",
           "clicked_at": _iso(utcnow() - timedelta(days=1))})
    got = {ext: (c.partner_id, c.attribution) for ext, c in _stored().items()}
    assert got == {"old-click": (ids[2], "coupon"), "old-code": (None, None), "fresh-code": (ids[1], "tracking_code")}


def test_the_customer_email_is_stored_only_as_keyed_hashes(shop):
    client, key, _ = shop
    _post(client, key, {"external_id": "o1", "amount": "1.00", "currency": "USD", "occurred_at": _iso(utcnow()),
                        "tracking_code": "blog1-code", "customer_email": "Buyer@Example.org"})
    row = _stored()["o1"]
    assert row.customer_email is None and row.customer_email_hash and row.customer_domain_hash
    dumped = " ".join(str(v) for v in row.model_dump().values()).lower()
    assert "buyer" not in dumped and "example.org" not in dumped


@pytest.mark.parametrize("record,error", [
    ({"click_id": "../../etc"}, "click_id must be"),
    ({"customer_email": "not-an-email"}, "customer_email is not an email address"),
    ({"clicked_at": "yesterday"}, "clicked_at 'yesterday' is not an ISO 8601 date-time"),
    ({"clicked_at": "2099-01-01T00:00:00Z"}, "clicked_at '2099-01-01T00:00:00Z' is in the future"),
])
def test_bad_click_and_customer_fields_are_refused_by_name(shop, record, error):
    client, key, _ = shop
    response = client.post("/api/conversions", headers={"X-API-Key": key}, json={
        "external_id": "o1", "amount": "1.00", "currency": "USD", "occurred_at": _iso(utcnow()), **record})
    assert response.status_code == 422
    assert error in response.json()["errors"][0]["error"]


def test_a_click_after_the_conversion_is_refused(shop):
    client, key, _ = shop
    now = utcnow()
    response = client.post("/api/conversions", headers={"X-API-Key": key}, json={
        "external_id": "o1", "amount": "1.00", "currency": "USD", "occurred_at": _iso(now - timedelta(hours=2)),
        "clicked_at": _iso(now)})
    assert response.status_code == 422 and "clicked_at is after occurred_at" in response.text


def test_fraud_signals_fire_on_conversions_that_came_through_the_api(shop):
    client, key, ids = shop
    click_ids = [_click(client, "blog1-code") for _ in range(3)]
    clicks.WRITER.flush()
    soon = _iso(utcnow() + timedelta(seconds=2))  # two seconds after the click: no person buys that fast
    _post(client, key, *[{"external_id": f"fast{n}", "amount": "10.00", "currency": "USD", "occurred_at": soon,
                          "click_id": cid} for n, cid in enumerate(click_ids)],
          {"external_id": "self", "amount": "10.00", "currency": "USD", "occurred_at": soon,
           "tracking_code": "blog1-code", "customer_email": "OWNER1@blog1.example"},
          {"external_id": "colleague", "amount": "10.00", "currency": "USD", "occurred_at": soon,
           "tracking_code": "blog1-code", "customer_email": "sales@blog1.example"},
          {"external_id": "stranger", "amount": "10.00", "currency": "USD", "occurred_at": soon,
           "tracking_code": "blog2-code", "customer_email": "owner1@blog1.example.net"})
    with session_scope() as session:
        found = {(d.partner_id, d.rule): d for d in fraud_signals(session, list(ids.values()), load_policy(),
                                                                 now=utcnow() + timedelta(minutes=1))}
    assert found[(ids[1], "fraud.click_to_conversion")].evidence["fast_conversions"] == 3
    self_referral = found[(ids[1], "fraud.self_referral")]
    assert self_referral.evidence["conversions"] == 2
    assert "owner1" not in str(self_referral.evidence).lower()
    assert (ids[2], "fraud.self_referral") not in found


def test_the_csv_import_takes_click_id_and_customer_email_too(shop, tmp_path):
    client, _, ids = shop
    click_id = _click(client, "blog2-code")
    clicks.WRITER.flush()
    path = tmp_path / "conversions.csv"
    path.write_text("external_id,amount,currency,occurred_at,click_id,customer_email\n"
                    f"o1,10.00,USD,{_iso(utcnow())},{click_id},buyer@example.org\n")
    report = import_csv(str(path))
    assert (report.created, report.errors) == (1, [])
    row = _stored()["o1"]
    assert (row.partner_id, row.attribution, row.customer_email) == (ids[2], "click", None)
    assert row.customer_email_hash
