"""Limits every worker shares (Prefect global concurrency limits): written by ensure_limits, taken in
chunks before vendor calls, one payout batch at a time, and what happens when a limit is missing."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from factories import add_conversions, after_lock, make_partner, make_payout
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select
from support import WaitingForPerson, run_deployed

from partnerflow.flows.payouts import run_payout_batch
from partnerflow.models import Message, Payout, PayoutBatch, Prospect, session_scope
from partnerflow.models.payouts import LedgerTransfer
from partnerflow.providers.email import EmailProvider, SendOutcome
from partnerflow.providers.errors import AmbiguousError, RetryableError
from partnerflow.providers.payout.base import PayoutRail, RailResult, RailState
from partnerflow.tasks.outreach.batch import send_due
from partnerflow.tasks.outreach.enrollment import enroll
from partnerflow.tasks.outreach.sequences import load_sequence_files
from partnerflow.tasks.payouts import execution
from partnerflow.tasks.payouts.commissions import compute_commissions
from partnerflow.tasks.shared import limits

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NAMES = (limits.PAYOUT_BATCH, limits.EMAIL, limits.ESIGN, limits.PAYOUT)


@pytest.fixture
def server(monkeypatch):
    """Each test starts with no limits on the session's Prefect server and leaves none behind."""
    monkeypatch.setattr(limits, "_warned", set())
    limits.forget()
    yield
    with get_client(sync_client=True) as client:
        for name in NAMES:
            try:
                client.delete_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                pass
    limits.forget()


@pytest.fixture
def permit_calls(monkeypatch) -> list[tuple[str, int]]:
    """Every permit request that goes to the Prefect server: (limit, how many permits)."""
    calls: list[tuple[str, int]] = []
    real = limits.rate_limit

    def spy(name, occupy=1, **kw):
        calls.append((name, occupy))
        return real(name, occupy=occupy, **kw)

    monkeypatch.setattr(limits, "rate_limit", spy)
    return calls


def read(name: str):
    return read_all()[name]


def read_all() -> dict:
    with get_client(sync_client=True) as client:
        return {limit.name: limit for limit in client.read_global_concurrency_limits(limit=50)}


class Vendor(EmailProvider):
    """A SaaS-like email provider (takes permits); records each request and may fail one of them."""

    name = "sendgrid"

    def __init__(self, fail_at: int | None = None, error: Exception | None = None):
        self.parts: list[int] = []
        self.fail_at, self.error = fail_at, error

    def send_batch(self, emails):
        self.parts.append(len(emails))
        if len(self.parts) == self.fail_at:
            raise self.error
        return [SendOutcome(e.message_id, provider_message_id=f"x-{e.message_id}") for e in emails]


def due_prospects(n: int) -> None:
    load_sequence_files()
    with session_scope() as session:
        session.add_all([Prospect(email=f"p{i}@example.com", name=f"P {i}") for i in range(n)])
    enroll(now=MONDAY_NOON)


def statuses() -> dict[str, int]:
    with session_scope() as session:
        return dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())


def test_ensure_limits_creates_what_the_settings_ask_once_and_follows_their_changes(server, configure):
    assert limits.ensure_limits() == dict.fromkeys(NAMES, "created")
    assert {n: (v.limit, v.slot_decay_per_second) for n, v in read_all().items()} == {
        "payout-batch": (1, 0.0), "email-provider": (1000, 1000.0), "esign-provider": (10, 0.25),
        "payout-provider": (4, 4.0)}
    assert limits.ensure_limits() == dict.fromkeys(NAMES, "unchanged")

    configure(email_rate_per_second=14, email_rate_burst=14)
    with get_client(sync_client=True) as client:  # an operator switched e-sign's limit off in the UI
        client.update_global_concurrency_limit(limits.ESIGN, GlobalConcurrencyLimitUpdate(active=False))
    assert limits.ensure_limits() == {**dict.fromkeys(NAMES, "unchanged"), limits.EMAIL: "updated"}
    now = read_all()
    assert (now[limits.EMAIL].limit, now[limits.EMAIL].slot_decay_per_second) == (14, 14.0)
    assert now[limits.ESIGN].active is False  # that choice stays
    assert limits.Permits(limits.ESIGN, "docusign").size is None  # and means: not limited


def test_a_send_run_takes_permits_in_chunks_and_the_server_paces_them(server, configure, permit_calls):
    configure(email_rate_burst=10, email_rate_per_second=20)
    limits.ensure_limits()
    due_prospects(25)  # one batch: parts of up to a burst (10), permits asked for half a burst at a time
    vendor = Vendor()
    started = time.monotonic()
    result = send_due(now=MONDAY_NOON, provider=vendor)
    assert result["sent"] == 25 and statuses() == {"sent": 25}
    assert permit_calls == [(limits.EMAIL, 5)] * 5  # not one per email
    assert vendor.parts == [10, 10, 5]  # each part handed over after its permits
    assert time.monotonic() - started >= 0.5  # 15 beyond the burst at 20 a second


@pytest.mark.parametrize("error, expected", [
    (RetryableError("503 from the provider"), {"sent": 10, "pending": 15}),
    # maybe accepted: that part waits for the provider's events; the part never handed over is pending
    (AmbiguousError("timeout after sending"), {"sent": 10, "sending": 10, "pending": 5}),
])
def test_a_failing_part_leaves_earlier_parts_sent_and_later_ones_for_the_next_run(server, configure, error,
                                                                                    expected):
    configure(email_rate_burst=10, email_rate_per_second=100_000)
    limits.ensure_limits()
    due_prospects(25)
    send_due(now=MONDAY_NOON, provider=Vendor(fail_at=2, error=error))
    assert statuses() == expected


def test_no_permit_in_time_stops_the_run_and_leaves_the_rest_pending(server, configure):
    configure(email_rate_burst=10, email_rate_per_second=0.01, rate_limit_wait_seconds=0.5)
    limits.ensure_limits()
    due_prospects(25)
    vendor = Vendor()
    result = send_due(now=MONDAY_NOON, provider=vendor)
    assert vendor.parts == [10] and statuses() == {"sent": 10, "pending": 15}
    assert "no permit" in result["errors"][0] and "email-provider" in result["errors"][0]


class Rail(PayoutRail):
    name = "stripe"

    def pay(self, instruction):
        return RailResult(RailState.PAID, f"tr_{instruction.payout_id}")

    def lookup(self, idempotency_key, provider_ref=None):
        return None


def test_payouts_through_a_vendor_rail_take_permits_a_few_at_a_time(server, configure, permit_calls):
    limits.ensure_limits()  # the default: 4 calls, 4 a second
    partners = [make_partner(i) for i in range(6)]
    first = make_payout(partners[0], rail="stripe", status="pending")
    with session_scope() as session:
        batch_id = session.get(Payout, first).batch_id
    for pid in partners[1:]:
        make_payout(pid, rail="stripe", status="pending", batch_id=batch_id)
    assert execution.execute_batch(batch_id, rail=Rail()) == {"paid": 6}
    assert permit_calls == [(limits.PAYOUT, 2)] * 3  # half a burst at a time


def test_embedded_providers_take_no_permits(server, permit_calls, outbox):
    limits.ensure_limits()
    due_prospects(3)
    assert send_due(now=MONDAY_NOON)["sent"] == 3  # the outbox: files on this machine
    assert permit_calls == []


def test_without_the_limits_calls_go_ahead_with_one_warning(server, permit_calls, caplog):
    """No `partnerflow up` yet (or a limit deleted): nothing waits, nothing fails, one warning a process."""
    due_prospects(30)
    with caplog.at_level(logging.WARNING, logger=limits.__name__):
        assert send_due(now=MONDAY_NOON, limit=10, provider=Vendor())["sent"] == 10
        limits.forget()  # even when the process reads the server again
        assert send_due(now=MONDAY_NOON, limit=20, provider=Vendor())["sent"] == 20
        with limits.one_payout_batch():
            pass
    assert permit_calls == []
    warnings = [r.getMessage() for r in caplog.records if "email-provider" in r.getMessage()]
    assert len(warnings) == 1 and "does not exist" in warnings[0]

    # No Prefect server configured at all (a script): no ephemeral server is started, nothing waits.
    limits.forget()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        started = time.monotonic()
        limits.take(limits.ESIGN, "docusign")
        with limits.one_payout_batch():
            pass
        assert time.monotonic() - started < 5


def _in_thread(target) -> threading.Thread:
    """Run `target` in a thread that sees this test's Prefect server (its settings context)."""
    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), daemon=True)
    thread.start()
    return thread


def _ledger_rows() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(LedgerTransfer)).scalar_one()


def test_a_second_payout_batch_waits_until_the_first_is_done(server, monkeypatch, configure):
    configure(payout_approval_above_minor=10**12)  # the team lets policy approve every batch
    limits.ensure_limits()
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 20000, "external_id": "a"}])
    compute_commissions(now=after_lock())
    holding, done, waiting = threading.Event(), threading.Event(), threading.Event()
    real_say = limits._say
    monkeypatch.setattr(limits, "_say", lambda message: (waiting.set(), real_say(message)))

    def first_batch():  # e.g. the monthly deployment, paying right now
        with limits.one_payout_batch():
            holding.set()
            done.wait(60)

    first = _in_thread(first_batch)
    assert holding.wait(30)
    result: dict = {}
    second = _in_thread(lambda: result.update(run_payout_batch(period_end=after_lock().isoformat())))
    assert waiting.wait(60), "the second batch never had to wait"
    with session_scope() as session:  # waiting before it even builds: nothing built, nothing paid
        assert session.execute(select(func.count()).select_from(PayoutBatch)).scalar_one() == 0
    assert _ledger_rows() == 0
    done.set()
    first.join(30)
    second.join(120)
    assert result["status"] == "paid" and _ledger_rows() == 1
    assert read(limits.PAYOUT_BATCH).active_slots == 0


def test_a_batch_waiting_for_its_approval_holds_no_slot(server):
    limits.ensure_limits()
    partner = make_partner(1)
    add_conversions([{"partner_id": partner, "amount_minor": 20000, "external_id": "a"}])
    compute_commissions(now=after_lock())
    waiting = run_deployed(run_payout_batch, {"period_end": after_lock().isoformat()})
    assert isinstance(waiting, WaitingForPerson)
    assert read(limits.PAYOUT_BATCH).active_slots == 0
    with limits.one_payout_batch():  # another batch may build and pay meanwhile
        assert read(limits.PAYOUT_BATCH).active_slots == 1
