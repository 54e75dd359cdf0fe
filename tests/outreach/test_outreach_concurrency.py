"""Two send runs at once (two workers on the same deployment) never send the same step twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from partnerflow.models import Message, Prospect, session_scope
from partnerflow.models.outreach import Enrollment
from partnerflow.providers.email import SendOutcome
from partnerflow.tasks.outreach import batch, claims, pacing
from partnerflow.tasks.outreach.batch import process_batch, send_due
from partnerflow.tasks.outreach.claims import SendRun
from partnerflow.tasks.outreach.enrollment import enroll
from partnerflow.tasks.outreach.sequences import load_sequence_files

MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class CountingProvider:
    """Not idempotent, slow enough that the two runs overlap; counts every delivery per key."""

    name = "counting"
    idempotent = False

    def __init__(self):
        self.sent: Counter = Counter()
        self.by_thread: Counter = Counter()
        self.lock = threading.Lock()

    def send_batch(self, emails):
        time.sleep(0.05)
        with self.lock:
            for item in emails:
                self.sent[item.idempotency_key] += 1
                self.by_thread[threading.current_thread().name] += 1
        return [SendOutcome(item.message_id, provider_message_id=f"x-{item.message_id}") for item in emails]


def test_two_concurrent_runs_send_each_step_once(configure, on_postgres):
    configure(outreach_batch_size=7)
    load_sequence_files()
    with session_scope() as session:
        session.add_all([Prospect(email=f"p{i}@example.com", name=f"P {i}") for i in range(120)])
    enroll(now=MONDAY_NOON)
    provider = CountingProvider()
    results, errors = [], []
    start = threading.Barrier(2)

    def worker():
        try:
            start.wait()
            results.append(send_due(now=MONDAY_NOON, provider=provider))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(provider.sent) == 120 and set(provider.sent.values()) == {1}
    assert sum(r["sent"] for r in results) == 120
    if on_postgres:  # SKIP LOCKED lets both workers share the work instead of queueing
        assert all(provider.by_thread[f"worker-{i}"] > 0 for i in range(2))
    with session_scope() as session:
        rows = session.exec(select(Message)).all()
        assert len(rows) == 120 and {m.status for m in rows} == {"sent"}


class RecordingProvider:
    """Counts every delivery per key, instantly; `idempotent` as asked (an idempotent provider may be handed
    a message left `sending` again, so only the claim keeps a stale run from sending it a second time)."""

    name = "recording"

    def __init__(self, idempotent: bool):
        self.idempotent = idempotent
        self.sent: Counter = Counter()

    def send_batch(self, emails):
        self.sent.update(item.idempotency_key for item in emails)
        return [SendOutcome(item.message_id, provider_message_id=f"x-{item.message_id}") for item in emails]


@pytest.fixture
def wall_clock(monkeypatch):
    """The wall clock leases are measured in, moved by the test instead of by waiting."""
    now = [MONDAY_NOON]
    monkeypatch.setattr(claims, "utcnow", lambda: now[0])
    return now


def _enrolled(n: int) -> None:
    load_sequence_files()
    with session_scope() as session:
        session.add_all([Prospect(email=f"p{i}@example.com", name=f"P {i}") for i in range(n)])
    enroll(now=MONDAY_NOON)


def test_a_run_longer_than_the_lease_still_holds_what_it_claims_late(configure, wall_clock):
    configure(outreach_batch_size=5, outreach_claim_lease_seconds=600)
    _enrolled(10)
    provider = RecordingProvider(idempotent=False)
    long_run = SendRun(100, MONDAY_NOON)
    long_run.add(process_batch(long_run.claim(), long_run.token, long_run.now, provider))
    wall_clock[0] += timedelta(hours=2)  # the run is slow: two hours later it claims its second batch
    late = long_run.claim()
    assert len(late) == 5
    other = SendRun(100, wall_clock[0])  # another worker starts now: the late batch is not free
    assert other.claim() == []
    long_run.add(process_batch(late, long_run.token, long_run.now, provider))
    assert len(provider.sent) == 10 and set(provider.sent.values()) == {1}


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_stale_run_whose_lease_ran_out_sends_nothing_and_the_new_owner_sends_once(
        configure, wall_clock, monkeypatch, on_postgres, idempotent):
    configure(outreach_batch_size=10, outreach_claim_lease_seconds=600)
    _enrolled(3)
    provider = RecordingProvider(idempotent)
    stale, fresh = SendRun(100, MONDAY_NOON), {}
    record_intents = batch._record_intents

    def stall_then_lose_the_claim(session, b, existing):
        ids = record_intents(session, b, existing)
        if b.token == stale.token:  # the stale run stops here, its messages `sending`, for longer than the lease
            wall_clock[0] += timedelta(minutes=11)
            run = fresh["run"] = SendRun(100, wall_clock[0])
            taken = run.claim()
            assert len(taken) == 3  # the lease ran out: the rows are free for a new run
            run.add(process_batch(taken, run.token, run.now, provider))
        return ids

    monkeypatch.setattr(batch, "_record_intents", stall_then_lose_the_claim)
    result = process_batch(stale.claim(), stale.token, stale.now, provider)
    assert result.get("sent", 0) == 0 and result["claim_lost"] == 3  # the stale run handed nothing over
    monkeypatch.setattr(batch, "_record_intents", record_intents)
    # A later run: a message the stale run gave back is sent now (the new owner of a non-idempotent
    # provider's message left `sending` waited for a confirmation instead of sending it blindly).
    wall_clock[0] += timedelta(hours=2)
    send_due(now=wall_clock[0], provider=provider)
    assert sorted(provider.sent.values()) == [1, 1, 1]  # each step exactly once, none lost
    with session_scope() as session:
        assert {m.status for m in session.exec(select(Message)).all()} == {"sent"}
        assert {e.current_step for e in session.exec(select(Enrollment)).all()} == {1}


def test_two_workers_deciding_at_once_never_send_past_the_daily_cap(configure, monkeypatch, on_postgres):
    configure(outreach_batch_size=10, daily_send_cap=5)
    _enrolled(20)
    provider = RecordingProvider(idempotent=False)
    both_counted = threading.Barrier(2)
    count = pacing._sent_today

    def count_then_let_the_other_count_too(*args):
        counted = count(*args)
        try:  # without the cap held, both workers count 0 sent today here and each spends the whole cap
            both_counted.wait(timeout=5)
        except threading.BrokenBarrierError:  # the other worker waits for the cap this one holds
            pass
        return counted

    monkeypatch.setattr(pacing, "_sent_today", count_then_let_the_other_count_too)
    results, errors = [], []

    def worker():
        try:
            run = SendRun(10, MONDAY_NOON)
            results.append(process_batch(run.claim(), run.token, run.now, provider))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(provider.sent.values()) == 5
    assert sum(r.get("deferred_daily_cap", 0) for r in results) == 15
