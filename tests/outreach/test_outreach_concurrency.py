"""Two send runs at once (two workers on the same deployment) never send the same step twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from sqlmodel import select

from partnerflow.models import Message, Prospect, session_scope
from partnerflow.providers.email import SendOutcome
from partnerflow.tasks.outreach.batch import send_due
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
