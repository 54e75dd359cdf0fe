"""The commission engine: every kind of rule, the rounding rule, and property tests against an
independent calculation (integer/Fraction arithmetic, written separately from the engine)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from factories import T0, add_conversions, after_lock, make_partner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from partnerflow.models import Commission, Payout, session_scope
from partnerflow.tasks.payouts import batches as engine
from partnerflow.tasks.payouts.commission_rules import Row, compute_period
from partnerflow.tasks.payouts.commissions import compute_commissions, dry_run
from partnerflow.tasks.shared.terms import CommissionTerms, default_for


def rows(*amounts, kind="sale", **kw) -> list[Row]:
    return [Row(id=i + 1, partner_id=1, kind=kind, amount_minor=a, currency="USD",
                occurred_at=T0 + timedelta(minutes=i), **kw) for i, a in enumerate(amounts)]


def amounts(terms: dict, conv: list[Row], first=None) -> list[int]:
    return [r.amount_minor for r in compute_period(CommissionTerms.model_validate(terms), conv,
                                                   first_purchase=first or {})]


def half_even(x: Fraction) -> int:
    """Independent rounding: nearest integer, ties to even."""
    q, r = divmod(x.numerator, x.denominator)
    if 2 * r > x.denominator or (2 * r == x.denominator and q % 2 == 1):
        q += 1
    return q


def test_percentage_rounds_half_to_even():
    assert amounts({"kind": "percentage", "rate": "0.1"}, rows(12345, 7655, 5, 15)) == [1234, 766, 0, 2]


def test_flat_pays_each_conversion_and_leads_earn_only_under_flat_terms():
    conv = rows(0, 0, kind="lead")
    assert amounts({"kind": "flat", "flat_minor": 500}, conv) == [500, 500]
    assert amounts({"kind": "percentage", "rate": "0.2"}, conv) == [0, 0]


def test_tier_applied_to_the_whole_month_or_to_the_marginal_part():
    tiers = [{"from_volume_minor": 0, "rate": "0.10"}, {"from_volume_minor": 100000, "rate": "0.20"}]
    conv = rows(80000, 40000)
    assert amounts({"kind": "tiered", "tiers": tiers, "tier_mode": "whole"}, conv) == [16000, 8000]
    # marginal: 80000*10% ; then 20000*10% + 20000*20%
    assert amounts({"kind": "tiered", "tiers": tiers, "tier_mode": "marginal"}, conv) == [8000, 6000]
    # an exact tie stays a tie: 10*0.1 + 5*0.3 = 2.5 -> 2 (found by hypothesis: dividing blurred it to 3)
    tie = [{"from_volume_minor": 0, "rate": "0.1"}, {"from_volume_minor": 10, "rate": "0.3"}]
    assert amounts({"kind": "tiered", "tiers": tie, "tier_mode": "marginal"}, rows(15)) == [2]


def test_product_and_category_overrides():
    terms = {"kind": "percentage", "rate": "0.1", "overrides": [
        {"product": "Pro", "kind": "flat", "flat_minor": 999}, {"category": "books", "rate": "0.5"}]}
    conv = rows(10000, 10000, 10000)
    conv[0].product, conv[1].category = "Pro", "books"
    assert amounts(terms, conv) == [999, 5000, 1000]


def test_recurring_for_n_months_and_first_purchase_only():
    first = {"c1": (T0, 1)}
    conv = rows(10000, 10000, 10000)
    conv[0].customer_ref = conv[1].customer_ref = conv[2].customer_ref = "c1"
    conv[1].kind = conv[2].kind = "recurring"
    conv[1].occurred_at = T0 + timedelta(days=40)   # inside 2 months
    conv[2].occurred_at = T0 + timedelta(days=70)   # after 2 months
    assert amounts({"kind": "percentage", "rate": "0.1", "recurring_months": 2}, conv, first) == [1000, 1000, 0]
    assert amounts({"kind": "percentage", "rate": "0.1", "recurring_months": 0}, conv, first) == [1000, 0, 0]
    assert amounts({"kind": "percentage", "rate": "0.1"}, conv, first) == [1000, 1000, 1000]
    # first purchase only: a second sale to the same customer earns nothing
    again = rows(10000, 10000)
    again[0].customer_ref = again[1].customer_ref = "c1"
    assert amounts({"kind": "percentage", "rate": "0.1", "first_purchase_only": True}, again, first) == [1000, 0]


def test_caps_per_conversion_and_per_month_count_already_frozen_commissions():
    terms = {"kind": "percentage", "rate": "0.5", "cap_per_conversion_minor": 3000, "cap_per_period_minor": 7000}
    conv = rows(10000, 4000, 4000, 4000)
    assert amounts(terms, conv) == [3000, 2000, 2000, 0]
    conv[0].commission_minor, conv[0].commission_status, conv[0].commission_id = 6500, "paid", 9
    # the frozen 65.00 is kept (not returned) and leaves 5.00 of room in the month
    assert amounts(terms, conv) == [500, 0, 0]


def test_terms_describe_the_numbers_the_engine_uses():
    terms = default_for("affiliate")
    assert "10% of the net amount" in terms.describe() and "30 days" in terms.describe()
    with pytest.raises(ValueError):
        CommissionTerms(kind="percentage", rate=0.1)  # a float rate is refused


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30),
       st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False))
def test_percentage_total_matches_independent_calculation(values, rate):
    got = amounts({"kind": "percentage", "rate": str(rate)}, rows(*values))
    rate_f = Fraction(str(rate))
    assert got == [half_even(v * rate_f) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=30),
       st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=3, unique=True),
       st.lists(st.decimals(min_value=0, max_value=1, places=3), min_size=4, max_size=4))
def test_marginal_tiers_never_drift_from_the_tier_table(values, bounds, rates):
    starts = [0] + sorted(bounds)
    tiers = [{"from_volume_minor": s, "rate": str(r)} for s, r in zip(starts, rates, strict=False)]
    got = amounts({"kind": "tiered", "tier_mode": "marginal", "tiers": tiers}, rows(*values))

    def earned(volume: int) -> Fraction:  # commission on the first `volume` units of the month
        total = Fraction(0)
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            part = max(0, (volume if end is None else min(volume, end)) - s)
            total += part * Fraction(str(rates[i]))
        return total

    running, expected = 0, []
    for v in values:
        expected.append(half_even(earned(running + v) - earned(running)))
        running += v
    assert got == expected
    # and the month's total is within half a unit per conversion of the exact total
    assert abs(sum(got) - earned(running)) <= Fraction(len(values), 2)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
       st.integers(min_value=0, max_value=10**6))
def test_monthly_cap_total_is_exactly_min_of_cap_and_uncapped(values, cap):
    uncapped = amounts({"kind": "percentage", "rate": "0.15"}, rows(*values))
    capped = amounts({"kind": "percentage", "rate": "0.15", "cap_per_period_minor": cap}, rows(*values))
    assert sum(capped) == min(cap, sum(uncapped))
    assert all(0 <= c <= u for c, u in zip(capped, uncapped, strict=True))


def test_database_totals_balance_to_the_cent_across_partners_and_payout():
    rnd = random.Random(5)
    rates = {}
    partners = []
    for n in range(1, 16):
        rate = Decimal(rnd.randint(1, 300)) / 1000
        pid = make_partner(n, terms={"kind": "percentage", "rate": str(rate), "lock_days": 14})
        rates[pid] = rate
        partners.append(pid)
    conv = [{"partner_id": rnd.choice(partners), "amount_minor": rnd.randint(1, 500000), "external_id": f"e{i}",
             "occurred_at": T0 + timedelta(hours=rnd.randint(0, 24 * 20))} for i in range(400)]
    add_conversions(conv)
    compute_commissions(now=after_lock(45))
    batch_id = engine.build_batch(after_lock(45))
    expected: dict[int, int] = {}
    for c in conv:
        expected[c["partner_id"]] = expected.get(c["partner_id"], 0) + half_even(
            c["amount_minor"] * Fraction(str(rates[c["partner_id"]])))
    with session_scope() as s:
        payouts = dict(s.execute(select(Payout.partner_id, Payout.amount_minor)
                                 .where(Payout.batch_id == batch_id)).all())
        commission_total = s.execute(select(func.sum(Commission.amount_minor))).scalar()
    assert payouts == expected
    assert commission_total == sum(expected.values())


def test_pending_commissions_follow_the_whole_month_tier_until_they_are_payable():
    tiers = [{"from_volume_minor": 0, "rate": "0.10"}, {"from_volume_minor": 100000, "rate": "0.20"}]
    p = make_partner(1, terms={"kind": "tiered", "tiers": tiers, "tier_mode": "whole", "lock_days": 30})
    add_conversions([{"partner_id": p, "amount_minor": 60000, "external_id": "a"}])
    compute_commissions(now=T0)
    add_conversions([{"partner_id": p, "amount_minor": 60000, "external_id": "b",
                      "occurred_at": T0 + timedelta(days=5)}])
    compute_commissions(now=T0 + timedelta(days=6))
    with session_scope() as s:
        assert sorted(s.execute(select(Commission.amount_minor)).scalars()) == [12000, 12000]


def test_dry_run_shows_both_sides_and_changes_nothing():
    p = make_partner(1)
    add_conversions([{"partner_id": p, "amount_minor": 10000, "external_id": "a"},
                     {"partner_id": p, "amount_minor": 30000, "external_id": "b"}])
    compute_commissions(now=after_lock())
    from partnerflow.flows.payouts_commissions import dry_run_rules

    def snapshot():
        with session_scope() as s:
            return [tuple(r) for r in s.execute(select(Commission.id, Commission.amount_minor, Commission.status,
                                                         Commission.rule, Commission.payout_id)).all()]

    before = snapshot()
    rows_ = dry_run_rules('{"kind": "percentage", "rate": "0.15"}', "2026-01-01", "2026-02-01")
    assert rows_ == [{"partner_id": p, "partner": "Partner 1", "currency": "USD", "current_minor": 4000,
                      "proposed_minor": 6000, "difference_minor": 2000, "note": ""}]
    assert snapshot() == before
    assert dry_run({"partners": {str(p): {"kind": "flat", "flat_minor": 100}}},
                   T0 - timedelta(days=9), T0 + timedelta(days=1))[0]["proposed_minor"] == 200


def test_partial_refund_deducts_its_share_and_unattributed_refunds_are_ignored():
    p = make_partner(1)
    sale, orphan = add_conversions([{"partner_id": p, "amount_minor": 10001, "external_id": "s"},
                                    {"partner_id": None, "amount_minor": 5000, "external_id": "o"}])
    add_conversions([{"partner_id": p, "kind": "refund", "reverses_id": sale, "amount_minor": 2500,
                      "external_id": "r1"},
                     {"kind": "refund", "reverses_id": orphan, "amount_minor": 5000, "external_id": "r2"}])
    compute_commissions(now=after_lock())
    compute_commissions(now=after_lock())  # a second run changes nothing
    with session_scope() as s:
        got = sorted(s.execute(select(Commission.amount_minor, Commission.status)).all())
    # 100.01 * 10% = 10.001 -> 1000; refund of 25.00/100.01 of it = 249.98 -> -250
    assert got == [(-250, "payable"), (1000, "payable")]


def test_combined_terms_pay_a_flat_fee_plus_a_percentage_rounded_once():
    terms = {"kind": "flat_plus_percentage", "flat_minor": 250, "rate": "0.05"}
    # 2.50 + 5% of 123.45 = 8.6725 -> 867; 2.50 + 5% of 0.10 = 2.505 -> 250 (half-even on the sum, not the parts)
    assert amounts(terms, rows(12345, 10)) == [867, 250]
    # a lead has no sale amount: it earns the flat fee alone
    assert amounts(terms, rows(0, kind="lead")) == [250]
    capped = {**terms, "cap_per_conversion_minor": 700}
    assert amounts(capped, rows(12345)) == [700]
    described = CommissionTerms.model_validate(terms).describe()
    assert "2.50 USD plus 5% of the net amount of each qualifying sale" in described
    with pytest.raises(ValueError, match="both flat_minor and rate"):
        CommissionTerms.model_validate({"kind": "flat_plus_percentage", "rate": "0.05"})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30),
       st.integers(min_value=0, max_value=10**6),
       st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False))
def test_combined_terms_match_independent_calculation(values, flat, rate):
    got = amounts({"kind": "flat_plus_percentage", "flat_minor": flat, "rate": str(rate)}, rows(*values))
    assert got == [half_even(flat + v * Fraction(str(rate))) for v in values]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=10),
       st.integers(min_value=0, max_value=10**5),
       st.decimals(min_value=0, max_value=1, places=3, allow_nan=False, allow_infinity=False),
       st.decimals(min_value=Decimal("0.001"), max_value=1000, places=4, allow_nan=False, allow_infinity=False))
def test_combined_terms_convert_the_flat_fee_into_the_sale_currency(values, flat, rate, usd_jpy):
    # Terms in USD (2 decimals), sales in JPY (no decimals): the flat fee is converted exactly, then the sum rounded.
    terms = CommissionTerms.model_validate({"kind": "flat_plus_percentage", "flat_minor": flat, "rate": str(rate)})
    conv = rows(*values)
    for r in conv:
        r.currency = "JPY"
    got = [r.amount_minor for r in compute_period(terms, conv, first_purchase={},
                                                  fx=lambda base, quote, at: usd_jpy)]
    flat_in_yen = Fraction(flat) * Fraction(str(usd_jpy)) / 100
    assert got == [half_even(flat_in_yen + v * Fraction(str(rate))) for v in values]


def test_combined_terms_flow_through_the_database_engine_to_the_payout():
    p = make_partner(1, terms={"kind": "flat_plus_percentage", "flat_minor": 300, "rate": "0.1", "lock_days": 14})
    add_conversions([{"partner_id": p, "amount_minor": 10005, "external_id": "a"},
                     {"partner_id": p, "amount_minor": 20000, "external_id": "b"}])
    compute_commissions(now=after_lock(45))
    batch_id = engine.build_batch(after_lock(45))
    with session_scope() as s:
        lines = sorted(s.execute(select(Commission.amount_minor)).scalars())
        paid = s.execute(select(Payout.amount_minor).where(Payout.batch_id == batch_id)).scalar_one()
    # 3.00 + 10.005 = 13.005 -> 1300 (even); 3.00 + 20.00 = 2300
    assert lines == [1300, 2300] and paid == 3600
