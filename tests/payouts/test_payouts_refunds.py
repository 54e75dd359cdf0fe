"""Refunds: booked in the sale's currency, never lost when they race the batch build, never deducted twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from factories import T0, add_conversions, after_lock, make_partner
from fastapi.testclient import TestClient
from sqlalchemy import select

from partnerflow.models import Commission, Conversion, session_scope
from partnerflow.models.payouts import CommissionStatus, FxRate
from partnerflow.tasks.payouts import batches
from partnerflow.tasks.payouts.balances import fx_lookup
from partnerflow.tasks.payouts.commissions import apply_reversal, compute_commissions, unapplied_reversals
from partnerflow.tasks.payouts.conversions import add_source
from partnerflow.web.app import create_app


def _commission_of(external_id: str) -> tuple[int, str, str] | None:
    with session_scope() as s:
        row = s.execute(select(Commission.amount_minor, Commission.currency, Commission.status)
                        .join(Conversion, Conversion.id == Commission.conversion_id)
                        .where(Conversion.external_id == external_id)).first()
    return tuple(row) if row else None


def test_refund_in_another_currency_than_its_sale_or_of_a_refund_is_refused_at_intake():
    make_partner(1)
    key = add_source("shop")
    client = TestClient(create_app())
    body = {"conversions": [
        {"external_id": "s1", "amount": "100.00", "currency": "USD", "occurred_at": "2026-01-10",
         "tracking_code": "P1"},
        {"external_id": "r1", "kind": "refund", "amount": "92.00", "currency": "EUR", "occurred_at": "2026-01-12",
         "reverses": "s1"},
        {"external_id": "r2", "kind": "refund", "amount": "10.00", "currency": "USD", "occurred_at": "2026-01-12",
         "reverses": "s1"},
        {"external_id": "r3", "kind": "reversal", "amount": "10.00", "currency": "USD", "occurred_at": "2026-01-13",
         "reverses": "r2"},  # a refund of the refund would turn its deduction into earnings
    ]}
    report = client.post("/api/conversions", json=body, headers={"X-API-Key": key}).json()
    assert report["created"] == 2
    assert report["errors"] == [
        {"index": 1, "error": "a refund must be in the currency of the conversion it reverses (USD), not EUR"},
        {"index": 3, "error": "a reversal must reverse what earned, not the refund 'r2'"}]
    with session_scope() as s:
        assert sorted(s.execute(select(Conversion.external_id)).scalars()) == ["r2", "s1"]


def test_a_stored_refund_in_another_currency_is_converted_at_its_days_rate_and_booked_in_the_sales_currency():
    p = make_partner(1)  # 10 %
    sale, = add_conversions([{"partner_id": p, "amount_minor": 10000, "currency": "USD", "external_id": "s"}])
    refund_day = after_lock(2)
    add_conversions([{"partner_id": p, "kind": "refund", "reverses_id": sale, "amount_minor": 4600,
                      "currency": "EUR", "external_id": "r", "occurred_at": refund_day}])
    stats = compute_commissions(now=after_lock())
    assert _commission_of("r") is None  # no EUR/USD rate yet: it waits, and says why
    assert stats["waiting"] == 1 and "no exchange rate EUR/USD" in stats["problems"][0]
    with session_scope() as s:
        s.add(FxRate(day=date(2026, 1, 1), base="EUR", quote="USD", rate="1.0870"))
        s.add(FxRate(day=date(2099, 1, 1), base="EUR", quote="USD", rate="9"))  # after the refund: not used
    compute_commissions(now=after_lock())
    # EUR 46.00 * 1.087 = USD 50.002 of a USD 100.00 sale: 50.002 % of the USD 10.00 commission = 5.0002 -> 5.00
    assert _commission_of("s") == (1000, "USD", "payable")
    assert _commission_of("r") == (-500, "USD", "payable")


def test_a_full_refund_racing_the_batch_build_becomes_a_deduction():
    p = make_partner(1)
    sale, = add_conversions([{"partner_id": p, "amount_minor": 20000, "external_id": "s"}])
    compute_commissions(now=after_lock())
    add_conversions([{"partner_id": p, "kind": "refund", "reverses_id": sale, "amount_minor": 20000,
                      "external_id": "r", "occurred_at": after_lock(1)}])
    # The refund run reads the commission while no payout holds it ...
    with session_scope() as s:
        pending, = unapplied_reversals(s)
    assert pending.payout_id is None and pending.commission_status == CommissionStatus.PAYABLE
    # ... then the batch build attaches it to a payout ...
    batch_id = batches.build_batch(after_lock())
    assert batches.total_minor_by_currency(batch_id) == {"USD": 2000}
    # ... and only then does the refund run cancel: the cancel finds nothing to cancel.
    stats: dict = defaultdict(int)
    with session_scope() as s:
        apply_reversal(s, pending, after_lock(2), stats, fx_lookup(s))
    assert _commission_of("s") == (2000, "USD", "payable")  # stays in its payout
    assert _commission_of("r") == (-2000, "USD", "payable")  # and the next batch starts 20.00 below zero
    assert stats["deducted"] == 1 and not stats["cancelled"]


def test_two_full_refunds_of_one_sale_take_its_commission_back_once():
    a, b = make_partner(1), make_partner(2)
    sale_a, sale_b = add_conversions([{"partner_id": a, "amount_minor": 20000, "external_id": "sa"},
                                      {"partner_id": b, "amount_minor": 20000, "external_id": "sb"}])
    compute_commissions(now=after_lock())
    batches.build_batch(after_lock())  # a's and b's commissions are now in payouts
    add_conversions([{"partner_id": a, "kind": "refund", "reverses_id": sale_a, "amount_minor": 20000,
                      "external_id": "ra1", "occurred_at": after_lock(1)},
                     {"partner_id": a, "kind": "chargeback", "reverses_id": sale_a, "amount_minor": 20000,
                      "external_id": "ra2", "occurred_at": after_lock(1)},
                     {"partner_id": b, "kind": "refund", "reverses_id": sale_b, "amount_minor": 15000,
                      "external_id": "rb1", "occurred_at": after_lock(1)},
                     {"partner_id": b, "kind": "refund", "reverses_id": sale_b, "amount_minor": 15000,
                      "external_id": "rb2", "occurred_at": after_lock(1)}])
    compute_commissions(now=after_lock(2))
    assert [_commission_of(x)[0] for x in ("ra1", "ra2", "rb1", "rb2")] == [-2000, 0, -1500, -500]
    # Two full refunds before any payout: the first cancels, the second finds nothing left.
    c, = add_conversions([{"partner_id": a, "amount_minor": 30000, "external_id": "sc", "occurred_at": T0}])
    add_conversions([{"partner_id": a, "kind": "refund", "reverses_id": c, "amount_minor": 30000,
                      "external_id": f"rc{i}", "occurred_at": T0} for i in (1, 2)])
    compute_commissions(now=after_lock(3))
    assert _commission_of("sc")[2] == "cancelled"
    assert [_commission_of(x)[:1] + _commission_of(x)[2:] for x in ("rc1", "rc2")] == [(0, "cancelled")] * 2


def test_a_stored_reversal_of_a_refund_does_not_undo_its_deduction():
    p = make_partner(1)
    sale, = add_conversions([{"partner_id": p, "amount_minor": 20000, "external_id": "s"}])
    refund, = add_conversions([{"partner_id": p, "kind": "refund", "reverses_id": sale, "amount_minor": 5000,
                                "external_id": "r"}])
    compute_commissions(now=after_lock())
    assert _commission_of("r") == (-500, "USD", "payable")
    add_conversions([{"partner_id": p, "kind": "reversal", "reverses_id": refund, "amount_minor": 5000,
                      "external_id": "rr"}])
    compute_commissions(now=after_lock())
    assert _commission_of("r") == (-500, "USD", "payable")
    assert _commission_of("rr") == (0, "USD", "cancelled")
