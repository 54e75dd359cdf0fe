"""Fraud signals on conversion histories built to trigger — and not trigger — each signal."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from partnerflow.models import Conversion, Partner, Stage, session_scope, utcnow
from partnerflow.tasks.compliance.fraud import fraud_signals
from partnerflow.tasks.compliance.policy import load_policy

NOW = utcnow()
_ids = count(1)


def partner(email="ann@annblog.example", domain="annblog.example", days_active=120) -> int:
    with session_scope() as session:
        p = Partner(email=email, legal_name=email.split("@")[0], domain=domain, stage=Stage.ACTIVE,
                    created_at=NOW - timedelta(days=days_active), activated_at=NOW - timedelta(days=days_active))
        session.add(p)
        session.flush()
        return p.id


def conv(pid, ago=timedelta(days=2), kind="sale", customer_ref=None, customer_email=None, click_before=None):
    with session_scope() as session:
        at = NOW - ago
        session.add(Conversion(source="shop", external_id=f"c{next(_ids)}", kind=kind, partner_id=pid,
                               amount_minor=1000, currency="USD", occurred_at=at, customer_ref=customer_ref,
                               customer_email=customer_email,
                               clicked_at=at - click_before if click_before is not None else None))


def signals(pids):
    with session_scope() as session:
        return {(d.partner_id, d.rule): d for d in fraud_signals(session, pids, load_policy(), now=NOW)}


def test_self_referral_by_email_and_own_domain_but_not_shared_free_mail():
    a = partner()
    b = partner(email="bob@gmail.com", domain="")
    conv(a, customer_email="ANN@annblog.example")
    conv(a, customer_email="sales@annblog.example")
    conv(a, customer_email="someone@else.example")
    conv(b, customer_email="carol@gmail.com")  # same free mail provider: not self-referral
    found = signals([a, b])
    s = found[(a, "fraud.self_referral")]
    assert s.evidence["conversions"] == 2 and s.evidence["of_conversions"] == 3
    assert "2 of 3" in s.evidence["reason"]
    assert "ann@" not in str(s.evidence["examples"])  # customer emails are masked in evidence
    assert (b, "fraud.self_referral") not in found


def test_emails_kept_in_clear_by_older_rows_are_hashed_and_still_caught():
    from sqlmodel import select

    from partnerflow.tasks.shared.customers import hash_clear_customer_emails

    a = partner()
    conv(a, customer_email="Ann@annblog.example")
    conv(a, customer_email="someone@else.example")
    conv(a, customer_email="not an email")
    assert hash_clear_customer_emails.fn(chunk=2) == 3
    with session_scope() as session:
        rows = session.exec(select(Conversion).where(Conversion.partner_id == a)).all()
        assert [r.customer_email for r in rows] == [None, None, None]
        assert [bool(r.customer_email_hash) for r in rows] == [True, True, False]
    assert signals([a])[(a, "fraud.self_referral")].evidence["conversions"] == 1
    assert hash_clear_customer_emails.fn() == 0


def test_click_to_conversion_too_fast_only_when_repeated():
    fast, normal = partner(email="f@f.example", domain="f.example"), partner(email="n@n.example", domain="n.example")
    for secs in (2, 3, 4):
        conv(fast, click_before=timedelta(seconds=secs))
    conv(fast, click_before=timedelta(minutes=5))
    conv(normal, click_before=timedelta(seconds=3))  # one fast one is not a pattern
    conv(normal, click_before=timedelta(minutes=20))
    found = signals([fast, normal])
    s = found[(fast, "fraud.click_to_conversion")]
    assert s.evidence["fast_conversions"] == 3 and s.evidence["timed_conversions"] == 4
    assert s.evidence["fastest_seconds"] == 2.0
    assert (normal, "fraud.click_to_conversion") not in found


def test_velocity_spike_against_own_history():
    spiky, steady = partner(email="s@s.example", domain="s.example"), partner(email="t@t.example", domain="t.example")
    for day in range(2, 62):  # 60 days of about 1 a day for both
        conv(spiky, ago=timedelta(days=day))
        conv(steady, ago=timedelta(days=day, hours=1))
    for i in range(30):  # 30 in the last day for the spiky one
        conv(spiky, ago=timedelta(hours=i % 20 + 1))
    for i in range(3):
        conv(steady, ago=timedelta(hours=i + 1))
    found = signals([spiky, steady])
    s = found[(spiky, "fraud.velocity")]
    assert s.evidence["recent_conversions"] == 30 and s.evidence["history_conversions"] == 60
    assert s.evidence["ratio"] == "30.0" and "30 conversions in the last 1 day" in s.evidence["reason"]
    assert (steady, "fraud.velocity") not in found


def test_velocity_needs_a_minimum_count():
    new = partner(email="new@n.example", domain="n.example", days_active=1)
    for i in range(10):
        conv(new, ago=timedelta(hours=i + 1))
    assert (new, "fraud.velocity") not in signals([new])


def test_duplicate_customers_across_partners():
    a, b, c = (partner(email=f"{x}@{x}.example", domain=f"{x}.example") for x in "abc")
    conv(a, customer_ref="cust-1")
    conv(b, customer_ref="CUST-1")  # same customer, different case
    conv(c, customer_ref="cust-2")
    conv(a, customer_ref="cust-old", ago=timedelta(days=200))
    conv(c, customer_ref="cust-old", ago=timedelta(days=200))  # outside the window
    found = signals([a, c])  # b is not in this batch, but still counts as the other partner
    s = found[(a, "fraud.duplicate_customer")]
    assert s.evidence["customers"] == 1 and s.evidence["other_partner_ids"] == [b]
    assert (c, "fraud.duplicate_customer") not in found


@pytest.mark.parametrize("refunds,sales,fires", [(4, 12, True), (3, 12, False), (5, 8, False)])
def test_refund_rate(refunds, sales, fires):
    pid = partner()
    for _ in range(sales):
        conv(pid)
    for i in range(refunds):
        conv(pid, kind="chargeback" if i == 0 else "refund")
    found = signals([pid])
    assert ((pid, "fraud.refund_rate") in found) is fires
    if fires:
        ev = found[(pid, "fraud.refund_rate")].evidence
        assert ev["rate"] == "0.3333" and ev["by_kind"] == {"chargeback": 1, "refund": 3}


def test_clean_history_gives_no_signal():
    pid = partner()
    for day in range(1, 25):
        conv(pid, ago=timedelta(days=day), customer_ref=f"c{day}", customer_email=f"c{day}@buyer.example",
             click_before=timedelta(minutes=day))
    assert signals([pid]) == {}
