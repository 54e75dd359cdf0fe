"""The portal's statements: a partner's monthly figures, balance by status and next payout, from a small
hand-built data set (exact figures), and only ever that partner's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import add_conversions, make_partner
from sqlalchemy import insert

from partnerflow.models import Commission, Payout, PayoutBatch, session_scope
from partnerflow.models.compliance import Finding
from partnerflow.models.payouts import CommissionStatus, FxRate, PayoutBatchStatus, PayoutStatus
from partnerflow.models.tracking import Click
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.portal import chart, statements, statements_links, statements_payouts

JAN = datetime(2026, 1, 10, 12, tzinfo=UTC)
FEB = datetime(2026, 2, 12, 12, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, 0, tzinfo=UTC)


def clicks(partner_id: int, code: str, at: datetime, n: int, *, bot: bool = False, target: str = "https://acme.example/"):
    sep = "&" if "?" in target else "?"
    with session_scope() as session:
        for i in range(n):
            click_id = f"{code}{at:%m%d}{i}{'b' if bot else 'h'}{target[-3:]}".ljust(16, "x")[:16]
            session.execute(insert(Click).values(
                click_id=click_id, partner_id=partner_id, tracking_code=code, clicked_at=at + timedelta(minutes=i),
                landing_url=f"{target}{sep}ref={code}&pf_click={click_id}", is_bot=bot))


def commission(partner_id: int, conversion_id: int, amount: int, status: str, *, currency: str = "USD",
               period: str = "2026-01", payable_at: datetime | None = None, payout_id: int | None = None,
               rule: str = "10% of sale") -> int:
    with session_scope() as session:
        return session.execute(insert(Commission).values(
            conversion_id=conversion_id, partner_id=partner_id, amount_minor=amount, currency=currency, rule=rule,
            period=period, status=status, payable_at=payable_at or JAN + timedelta(days=30),
            payout_id=payout_id).returning(Commission.id)).scalar_one()


def paid_payout(partner_id: int, amount: int, paid_at: datetime, currency: str = "USD") -> int:
    with session_scope() as session:
        batch = PayoutBatch(status=PayoutBatchStatus.PAID, period_end=paid_at)
        session.add(batch)
        session.flush()
        payout = Payout(batch_id=batch.id, partner_id=partner_id, amount_minor=amount, currency=currency,
                        rail="ledger", idempotency_key=f"payout:t:{batch.id}:{partner_id}", status=PayoutStatus.PAID,
                        paid_at=paid_at)
        session.add(payout)
        session.flush()
        return payout.id


@pytest.fixture
def data():
    """Partner 1: clicks and sales in January and February, a refund, a paid, a pending, a payable commission.
    Partner 2 (another partner) has sales in the same months that must never count for partner 1."""
    one, other = make_partner(1), make_partner(2)
    clicks(one, "P1", JAN, 3)
    clicks(one, "P1", JAN, 1, bot=True)
    clicks(one, "P1", FEB, 2, target="https://acme.example/pricing?plan=pro")
    clicks(other, "P2", JAN, 7)
    sale_a, sale_b, lead, sale_c = add_conversions([
        {"partner_id": one, "amount_minor": 10000, "occurred_at": JAN, "external_id": "a"},
        {"partner_id": one, "amount_minor": 5000, "occurred_at": JAN, "external_id": "b"},
        {"partner_id": one, "amount_minor": 0, "kind": "lead", "occurred_at": JAN, "external_id": "lead"},
        {"partner_id": one, "amount_minor": 20000, "occurred_at": FEB, "external_id": "c"},
    ])
    (refund,) = add_conversions([{"partner_id": one, "amount_minor": 5000, "kind": "refund", "reverses_id": sale_b,
                                  "occurred_at": FEB, "external_id": "b-refund"}])
    (other_sale,) = add_conversions([{"partner_id": other, "amount_minor": 99900, "occurred_at": JAN,
                                      "external_id": "other"}])
    payout = paid_payout(one, 1000, datetime(2026, 2, 15, 9, tzinfo=UTC))
    commission(one, sale_a, 1000, CommissionStatus.PAID, payout_id=payout)
    commission(one, sale_b, 500, CommissionStatus.CANCELLED, rule="10% of sale (cancelled by refund #5)")
    commission(one, refund, 0, CommissionStatus.CANCELLED, period="2026-01", rule="refund: cancels")
    commission(one, lead, 300, CommissionStatus.PAYABLE, rule="flat fee per lead")
    commission(one, sale_c, 2000, CommissionStatus.PENDING, period="2026-02", payable_at=FEB + timedelta(days=30))
    commission(other, other_sale, 9990, CommissionStatus.PAYABLE)
    return {"one": one, "other": other}


def test_month_figures_are_exact_and_only_the_partners_own(data):
    jan, feb = statements.month_figures(data["one"], ["2026-02", "2026-01"])
    assert (jan.period, jan.clicks, jan.bot_clicks, jan.conversions) == ("2026-01", 3, 1, 3)
    assert jan.revenue == {"USD": 15000} and jan.refunded == {}
    assert jan.commission == {"USD": 1300}  # 1000 paid + 300 lead; the refunded 500 earns nothing
    assert (feb.clicks, feb.bot_clicks, feb.conversions) == (2, 0, 1)
    assert feb.revenue == {"USD": 20000} and feb.refunded == {"USD": 5000} and feb.commission == {"USD": 2000}
    (march,) = statements.month_figures(data["one"], ["2026-03"])
    assert (march.clicks, march.conversions, march.revenue, march.commission) == (0, 0, {}, {})


def test_months_that_are_not_neighbours_are_each_counted():
    one = make_partner(1)
    clicks(one, "P1", JAN, 2)
    clicks(one, "P1", datetime(2026, 3, 3, tzinfo=UTC), 4)
    jan, mar = statements.month_figures(one, ["2026-01", "2026-03"])
    assert (jan.clicks, mar.clicks) == (2, 4)


def test_balance_by_status_with_dates_and_reasons(data):
    lines = {line.status: line for line in statements.balance_lines(data["one"])}
    assert set(lines) == {"pending", "payable", "paid", "reversed"}
    assert (lines["pending"].amount_minor, lines["pending"].first_at.date()) == (2000, (FEB + timedelta(30)).date())
    assert lines["payable"].amount_minor == 300
    assert (lines["paid"].amount_minor, lines["paid"].first_at.date().isoformat()) == (1000, "2026-02-15")
    assert (lines["reversed"].amount_minor, lines["reversed"].reason) == (500, "refunded")
    assert all(line.currency == "USD" for line in lines.values())


def test_a_partner_with_no_clicks_and_no_sales_sees_zeros():
    quiet = make_partner(3)
    clicks(make_partner(4), "P4", JAN, 5)
    (jan,) = statements.month_figures(quiet, ["2026-01"])
    assert (jan.clicks, jan.bot_clicks, jan.conversions, jan.revenue, jan.commission) == (0, 0, 0, {}, {})
    assert statements.balance_lines(quiet) == []
    assert statements_links.clicks_by_landing(quiet) == []
    series = chart.weekly_series(quiet, now=FEB)
    assert sum(series.clicks) == sum(series.conversions) == 0 and series.commission == {}
    assert chart.chart_png(series).startswith(b"\x89PNG")


def test_a_partner_whose_every_sale_was_refunded_earns_nothing_and_sees_why():
    """Through the real commission engine: two sales, both refunded in full before the lock ran out."""
    refunded = make_partner(5)
    sale_1, sale_2 = add_conversions([
        {"partner_id": refunded, "amount_minor": 4000, "occurred_at": JAN, "external_id": "r1"},
        {"partner_id": refunded, "amount_minor": 6000, "occurred_at": JAN, "external_id": "r2"}])
    compute_commissions(now=JAN + timedelta(days=1))
    add_conversions([
        {"partner_id": refunded, "amount_minor": 4000, "kind": "refund", "reverses_id": sale_1,
         "occurred_at": JAN + timedelta(days=2), "external_id": "r1-refund"},
        {"partner_id": refunded, "amount_minor": 6000, "kind": "chargeback", "reverses_id": sale_2,
         "occurred_at": JAN + timedelta(days=3), "external_id": "r2-chargeback"}])
    compute_commissions(now=JAN + timedelta(days=4))
    (jan,) = statements.month_figures(refunded, ["2026-01"])
    assert jan.conversions == 2 and jan.revenue == {"USD": 10000} and jan.refunded == {"USD": 10000}
    assert jan.commission == {}
    lines = statements.balance_lines(refunded)
    assert [(line.status, line.amount_minor, line.reason) for line in lines] == [
        ("reversed", 600, "charged back"), ("reversed", 400, "refunded")]
    upcoming = statements_payouts.upcoming_payout(refunded, now=JAN + timedelta(days=40))
    assert upcoming.amount_minor == 0 and upcoming.below_threshold


def test_two_currencies_are_shown_apart_and_the_next_payout_converts_them():
    both = make_partner(6, currency="EUR", threshold=1000)
    eur, usd = add_conversions([
        {"partner_id": both, "amount_minor": 12000, "currency": "EUR", "occurred_at": JAN, "external_id": "e"},
        {"partner_id": both, "amount_minor": 8000, "currency": "USD", "occurred_at": JAN, "external_id": "u"}])
    commission(both, eur, 1200, CommissionStatus.PAYABLE, currency="EUR")
    commission(both, usd, 800, CommissionStatus.PAYABLE, currency="USD")
    (jan,) = statements.month_figures(both, ["2026-01"])
    assert jan.revenue == {"EUR": 12000, "USD": 8000} and jan.commission == {"EUR": 1200, "USD": 800}
    lines = statements.balance_lines(both)
    assert [(line.status, line.currency, line.amount_minor) for line in lines] == [
        ("payable", "EUR", 1200), ("payable", "USD", 800)]
    with session_scope() as session:
        session.add(FxRate(day=JAN.date(), base="USD", quote="EUR", rate="0.9000"))
    upcoming = statements_payouts.upcoming_payout(both, now=FEB)
    assert upcoming.by_currency == {"EUR": 1200, "USD": 800}
    assert (upcoming.amount_minor, upcoming.currency, upcoming.held) == (1200 + 720, "EUR", [])


def test_a_missing_fx_rate_holds_the_payout_with_the_batchs_sentence():
    both = make_partner(6, currency="EUR")
    (usd,) = add_conversions([{"partner_id": both, "amount_minor": 8000, "occurred_at": JAN, "external_id": "u"}])
    commission(both, usd, 800, CommissionStatus.PAYABLE)
    held = statements_payouts.upcoming_payout(both, now=FEB).held
    assert len(held) == 1 and held[0].startswith("no exchange rate USD/EUR on or before")


def test_the_next_payout_is_held_for_the_same_reasons_the_batch_gives_the_team():
    not_ready = make_partner(7, ready=False)
    (sale,) = add_conversions([{"partner_id": not_ready, "amount_minor": 90000, "external_id": "n"}])
    commission(not_ready, sale, 9000, CommissionStatus.PAYABLE)
    with session_scope() as session:
        session.add(Finding(partner_id=not_ready, kind="sanctions", rule="sanctions.match", severity="high",
                            title="Possible sanctions match", fingerprint="f", blocking=True))
    lines, upcoming = statements_payouts.balance_with_holds(not_ready, now=FEB)
    assert upcoming.held[:2] == ["unsigned contract", "missing tax form"]
    assert [(line.status, line.amount_minor, line.reason) for line in lines] == [
        ("held", 9000, "; ".join(upcoming.held))]
    assert any(r.startswith("compliance finding #") and "Possible sanctions match" in r for r in upcoming.held)
    from partnerflow.tasks.payouts.batches import build_batch  # the batch itself, for the same sentences

    batch_id = build_batch(FEB)
    with session_scope() as session:
        (row,) = session.get(PayoutBatch, batch_id).summary["held"]
    assert row["held"] == upcoming.held


def test_below_the_threshold_the_payout_waits_and_says_so():
    small = make_partner(8, threshold=5000)
    (sale,) = add_conversions([{"partner_id": small, "amount_minor": 10000, "external_id": "s"}])
    commission(small, sale, 1000, CommissionStatus.PAYABLE)
    lines, upcoming = statements_payouts.balance_with_holds(small, now=FEB)
    assert upcoming.held == [] and upcoming.below_threshold and upcoming.threshold_minor == 5000
    assert [(line.status, line.reason) for line in lines] == [
        ("held", "payout threshold not reached: the next payout would be 10.00 USD of the 50.00 USD needed")]
    (sale,) = add_conversions([{"partner_id": small, "amount_minor": 40000, "external_id": "big"}])
    commission(small, sale, 4000, CommissionStatus.PAYABLE)
    lines, upcoming = statements_payouts.balance_with_holds(small, now=FEB)
    assert [(line.status, line.amount_minor) for line in lines] == [("payable", 5000)] and not upcoming.below_threshold


def test_commissions_that_unlock_before_the_batch_count_for_it():
    soon = make_partner(9)
    late, early = add_conversions([{"partner_id": soon, "amount_minor": 30000, "external_id": "late"},
                                   {"partner_id": soon, "amount_minor": 20000, "external_id": "early"}])
    commission(soon, early, 2000, CommissionStatus.PENDING, payable_at=datetime(2026, 2, 27, tzinfo=UTC))
    commission(soon, late, 3000, CommissionStatus.PENDING, payable_at=datetime(2026, 3, 2, tzinfo=UTC))
    upcoming = statements_payouts.upcoming_payout(soon, now=FEB)
    assert upcoming.batch_at == datetime(2026, 3, 1, 6, tzinfo=UTC)
    assert upcoming.by_currency == {"USD": 2000}


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2026, 2, 12, 12, tzinfo=UTC), datetime(2026, 3, 1, 6, tzinfo=UTC)),
    (datetime(2026, 3, 1, 5, 59, tzinfo=UTC), datetime(2026, 3, 1, 6, tzinfo=UTC)),
    (datetime(2026, 3, 1, 6, 0, tzinfo=UTC), datetime(2026, 4, 1, 6, tzinfo=UTC)),
    (datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, 6, tzinfo=UTC)),
])
def test_next_batch_date(now, expected):
    assert statements_payouts.next_batch_at(now) == expected


def test_the_next_batch_date_follows_the_payout_batch_schedule():
    from partnerflow.deployments.table import DEPLOYMENTS

    (monthly,) = [d for d in DEPLOYMENTS if d.name == "payout-batch-monthly"]
    assert monthly.cron == f"0 {statements_payouts.BATCH_HOUR} {statements_payouts.BATCH_DAY} * *"


def test_commission_list_filters_and_pages(data):
    rows, total = statements.commission_page(data["one"])
    assert total == 5 and rows[0].reference == "c"  # newest first, the other partner's never
    rows, total = statements.commission_page(data["one"], status="pending")
    assert total == 1 and rows[0].amount_minor == 2000 and rows[0].payable_at is not None
    rows, total = statements.commission_page(data["one"], period="2026-01", size=2, page=2)
    assert total == 4 and len(rows) == 2
    assert [r.id for r in statements.iter_commissions(data["one"], chunk=2)] == sorted(
        r.id for r in statements.commission_page(data["one"])[0])


@pytest.mark.parametrize(("status", "period", "message"), [
    ("open", None, "Status must be one of"), (None, "2026-13", "Month must look like"),
    (None, "2026-1", "Month must look like"), (None, "'; drop table commission;--", "Month must look like")])
def test_bad_filters_are_refused_with_a_sentence(status, period, message):
    with pytest.raises(ValueError, match=message):
        statements.check_filters(status, period)


def test_clicks_per_landing_page_group_by_target(data):
    by_target = {row.target: row for row in statements_links.clicks_by_landing(data["one"])}
    assert set(by_target) == {"https://acme.example/", "https://acme.example/pricing?plan=pro"}
    assert (by_target["https://acme.example/"].clicks, by_target["https://acme.example/"].bot_clicks) == (3, 1)
    assert by_target["https://acme.example/pricing?plan=pro"].clicks == 2


def test_weekly_series_counts_only_the_partners_own(data):
    series = chart.weekly_series(data["one"], now=FEB)
    assert len(series.week_starts) == chart.WEEKS and series.week_starts[-1].weekday() == 0
    assert sum(series.clicks) == 5 and sum(series.conversions) == 4
    assert series.commission == {"USD": [0] * 6 + [1300] + [0] * 4 + [2000]}
    assert chart.chart_png(series).startswith(b"\x89PNG")


def test_a_bonus_line_is_listed_with_its_reason(data):
    with session_scope() as session:
        session.execute(insert(Commission).values(
            conversion_id=None, kind="bonus", reason="Top partner of January", partner_id=data["one"],
            amount_minor=2500, currency="USD", period="2026-01", status=CommissionStatus.PAYABLE,
            payable_at=JAN, created_at=datetime(2026, 1, 31, tzinfo=UTC)))
    rows, total = statements.commission_page(data["one"], period="2026-01")
    bonus = next(r for r in rows if r.kind == "bonus")
    assert total == 5 and (bonus.rule, bonus.amount_minor, bonus.reference) == ("Top partner of January", 2500, "")
    (jan,) = statements.month_figures(data["one"], ["2026-01"])
    assert jan.commission == {"USD": 1300 + 2500}
