"""The weekly performance email: each partner's own figures against a hand-built data set, once per week,
and only to active partners who did not turn it off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import add_conversions, make_partner
from sqlmodel import select
from support import mail_text, mails

from partnerflow.flows.news import send_weekly_performance
from partnerflow.models import Commission, Message, Partner, Stage, session_scope
from partnerflow.models.tracking import Click
from partnerflow.tasks.news import weekly
from partnerflow.tasks.news.preferences import read_token, set_choice

WEEK = "2026-W02"  # Monday 5 January 2026 to Monday 12 January, UTC
START = datetime(2026, 1, 5, tzinfo=UTC)
END = START + timedelta(days=7)


def _clicks(partner_id: int, times: list[datetime], bot: bool = False) -> None:
    with session_scope() as session:
        for n, at in enumerate(times):
            session.add(Click(click_id=f"c{partner_id}-{bot}-{n}", partner_id=partner_id,
                              tracking_code=f"P{partner_id}", clicked_at=at, landing_url="https://acme.example/",
                              is_bot=bot))


def _commissions(rows: list[tuple[int, int, int, str, str]]) -> None:
    """(conversion id, partner id, amount minor, currency, status)."""
    with session_scope() as session:
        for conversion_id, partner_id, amount, currency, status in rows:
            session.add(Commission(conversion_id=conversion_id, partner_id=partner_id, amount_minor=amount,
                                   currency=currency, status=status))


@pytest.fixture
def program():
    """Partner a with activity in both weeks (and around them), b with none, c turned the email off, d dormant."""
    a, b, c, d = (make_partner(n) for n in range(1, 5))
    set_choice(c, "weekly", False, source="portal")
    with session_scope() as session:
        dormant = session.get(Partner, d)
        dormant.stage = Stage.DORMANT
        session.add(dormant)
    _clicks(a, [START, START + timedelta(days=2), END - timedelta(seconds=1),  # this week: 3
                START - timedelta(days=3),  # the week before: 1
                END, START - timedelta(days=8)])  # next week, and two weeks ago: not counted
    _clicks(a, [START + timedelta(days=1)], bot=True)  # a crawler: never counted
    _clicks(c, [START + timedelta(days=1)])
    s1, s2, s3, s4, refund, before, old = add_conversions([
        {"partner_id": a, "amount_minor": 10000, "occurred_at": START + timedelta(days=1), "external_id": "s1"},
        {"partner_id": a, "amount_minor": 5000, "occurred_at": START + timedelta(days=2), "external_id": "s2"},
        {"partner_id": a, "amount_minor": 2000, "currency": "EUR", "occurred_at": START + timedelta(days=3),
         "external_id": "s3"},
        {"partner_id": a, "amount_minor": 999, "occurred_at": START + timedelta(days=4), "external_id": "s4"},
        {"partner_id": a, "kind": "refund", "amount_minor": 3000, "occurred_at": START + timedelta(days=5),
         "external_id": "r1"},
        {"partner_id": a, "amount_minor": 7000, "occurred_at": START - timedelta(days=2), "external_id": "s5"},
        {"partner_id": a, "amount_minor": 4000, "occurred_at": START - timedelta(days=9), "external_id": "s6"},
    ])
    _commissions([(s1, a, 1000, "USD", "payable"), (s2, a, 500, "USD", "pending"), (s3, a, 200, "EUR", "payable"),
                  (s4, a, 99, "USD", "cancelled"), (refund, a, -300, "USD", "payable"),
                  (before, a, 700, "USD", "paid"), (old, a, 400, "USD", "paid")])
    return a, b, c, d


def test_figures_are_each_partners_own_for_the_week_and_the_week_before(program):
    a, b, c, _ = program
    with session_scope() as session:
        found = weekly.figures(session, [a, b], WEEK)
    assert found[a] == {"clicks": (3, 1), "conversions": (4, 1),  # the refund is not a conversion
                        "commission": {"USD": (1000 + 500 - 300, 700), "EUR": (200, 0)}}  # cancelled left out
    assert found[b] == {"clicks": (0, 0), "conversions": (0, 0), "commission": {}}
    assert c not in found


def test_the_weekly_run_mails_each_active_partner_their_figures_once(program, outbox):
    a, b, c, d = program
    result = send_weekly_performance(week=WEEK)
    assert result["week"] == WEEK and result["sent"] == 2
    sent = {m["To"]: m for m in mails(outbox)}
    assert sorted(sent) == ["p1@example.com", "p2@example.com"]  # c turned it off, d is dormant
    text = mail_text(sent["p1@example.com"])
    assert "05 Jan 2026 to 11 Jan 2026" in text
    assert "Clicks:       3 (week before: 1, up 2)" in text
    assert "Conversions:  4 (week before: 1, up 3)" in text
    assert "Commission:   2.00 EUR (week before: 0.00 EUR, up 2.00 EUR)" in text
    assert "Commission:   12.00 USD (week before: 7.00 USD, up 5.00 USD)" in text
    assert sent["p1@example.com"]["Subject"] == "Your week with Acme Analytics Ltd: 3 clicks, 4 conversions"
    quiet = mail_text(sent["p2@example.com"])
    assert "Clicks:       0 (week before: 0, no change)" in quiet and "Commission:   none yet" in quiet
    header = str(sent["p2@example.com"]["List-Unsubscribe"]).strip()
    assert read_token(header.strip("<>").rsplit("/", 1)[1]) == ("weekly", b)
    assert sent["p2@example.com"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    again = send_weekly_performance(week=WEEK)  # the same week again: nobody gets a second one
    assert again == {"week": WEEK}
    assert len(mails(outbox)) == 2
    with session_scope() as session:
        keys = sorted(session.exec(select(Message.idempotency_key).where(Message.kind == "news_weekly")).all())
    assert keys == [f"news:weekly:{WEEK}:partner:{a}", f"news:weekly:{WEEK}:partner:{b}"]


def test_a_partner_who_turns_it_off_before_their_batch_is_sent_gets_nothing(program, outbox):
    a, b, _, _ = program
    batches = weekly.weekly_batches(WEEK)
    assert batches == [[a, b]]
    set_choice(a, "weekly", False, source="one-click")
    assert weekly.send_weekly_batch(WEEK, batches[0]) == {"sent": 1, "turned_off": 1}
    assert [m["To"] for m in mails(outbox)] == ["p2@example.com"]


def test_the_program_can_switch_the_weekly_email_off(program, configure, outbox):
    configure(news_weekly_email="false")
    assert weekly.weekly_batches(WEEK) == []


def test_the_week_is_the_last_one_that_ended_unless_named():
    assert weekly.week_of(None, datetime(2026, 1, 12, 8, 0, tzinfo=UTC)) == WEEK  # Monday's scheduled run
    assert weekly.week_of(None, datetime(2026, 1, 18, 23, 0, tzinfo=UTC)) == WEEK
    assert weekly.week_of(" 2026-W02 ") == WEEK
    assert weekly.bounds(WEEK) == (START - timedelta(days=7), START, END)
    for wrong in ("2025-W53", "2026-02", "last week", "2026-W2"):
        with pytest.raises(weekly.WeekError, match="is not an ISO week such as 2026-W48"):
            weekly.week_of(wrong)
