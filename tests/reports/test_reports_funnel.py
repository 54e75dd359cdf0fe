"""The recruitment funnel by source and sequence: counts, stage conversion rates and median times, checked
against a hand-built set of prospects; its CSV export."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    Conversion,
    Message,
    Partner,
    Prospect,
    Stage,
    session_scope,
)
from partnerflow.models.outreach import Enrollment, EnrollmentStatus, Sequence, StopReason
from partnerflow.tasks.reports.exports import funnel_table, write_csv
from partnerflow.tasks.reports.funnel import ALL, NO_SEQUENCE, STAGES, recruitment_funnel

T = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def build() -> None:
    """A: contacted 1h, opened 3h, replied 5h, applied 10h, approved 20h, signed 30h, first conversion 50h.
    B: contacted 2h, never opened, stopped by sign-up, applied 12h, rejected. C: contacted 1h, opened 2h.
    D: in the same file, never enrolled. E: another source, enrolled, nothing sent yet."""
    with session_scope() as s:
        seq = Sequence(name="intro", version=1, definition_hash="x")
        s.add(seq)
        s.flush()

        def prospect(name: str, source: str, stop: str | None = None, stopped_at: float | None = None,
                     sent: float | None = None, opened: float | None = None, enrolled: bool = True) -> int:
            p = Prospect(email=f"{name}@example.com", name=name, source=source, created_at=T)
            s.add(p)
            s.flush()
            if enrolled:
                e = Enrollment(prospect_id=p.id, sequence_id=seq.id, sequence_name="intro", email=p.email,
                               status=EnrollmentStatus.STOPPED if stop else EnrollmentStatus.ACTIVE,
                               stop_reason=stop, updated_at=h(stopped_at) if stopped_at is not None else T)
                s.add(e)
                s.flush()
                s.add(Message(idempotency_key=f"outreach:{e.id}:0", kind="outreach", to_email=p.email,
                              prospect_id=p.id, enrollment_id=e.id, step=0, status="sent" if sent else "pending",
                              sent_at=h(sent) if sent is not None else None,
                              opened_at=h(opened) if opened is not None else None))
            return p.id

        def partner(prospect_id: int, name: str, applied: float, approved: float | None) -> int:
            p = Partner(email=f"{name}@partner.example", legal_name=name, stage=Stage.ACTIVE, prospect_id=prospect_id)
            s.add(p)
            s.flush()
            s.add(Application(partner_id=p.id, email=p.email, legal_name=name, created_at=h(applied),
                              status=ApplicationStatus.APPROVED if approved else ApplicationStatus.REJECTED,
                              decided_at=h(approved if approved else applied + 1)))
            return p.id

        a = prospect("a", "fair.csv", StopReason.REPLY, 5, sent=1, opened=3)
        pa = partner(a, "a", 10, 20)
        s.add(Contract(partner_id=pa, template_name="t", template_sha256="x", document_path="d", document_sha256="y",
                       status=ContractStatus.SIGNED, signed_at=h(30)))
        s.add(Conversion(source="t", external_id="first", partner_id=pa, amount_minor=100, occurred_at=h(50)))
        s.add(Conversion(source="t", external_id="later", partner_id=pa, amount_minor=100, occurred_at=h(90)))
        b = prospect("b", "fair.csv", StopReason.SIGNUP, 12, sent=2)
        partner(b, "b", 12, None)
        prospect("c", "fair.csv", sent=1, opened=2)
        prospect("d", "fair.csv", enrolled=False)
        prospect("e", "web")


def test_funnel_counts_rates_and_medians():
    build()
    with session_scope() as s:
        rows = {(r.source, r.sequence): r for r in recruitment_funnel(s)}
    assert set(rows) == {("fair.csv", "intro"), ("fair.csv", NO_SEQUENCE), ("web", "intro"), (ALL, ALL)}
    fair = rows[("fair.csv", "intro")]
    # B reached "opened" and "replied" by applying: a prospect counts at every stage up to its furthest.
    assert dict(zip(STAGES, fair.counts, strict=True)) == {
        "prospects": 3, "contacted": 3, "opened": 3, "replied": 2, "applied": 2, "approved": 1, "signed": 1,
        "first_conversion": 1}
    assert rows[("fair.csv", NO_SEQUENCE)].counts == [1, 0, 0, 0, 0, 0, 0, 0]
    assert rows[("web", "intro")].counts == [1, 0, 0, 0, 0, 0, 0, 0]
    total = rows[(ALL, ALL)]
    assert total.counts == [5, 3, 3, 2, 2, 1, 1, 1]
    assert [total.rate(k) for k in range(1, 8)] == [Decimal("0.6"), Decimal(1), Decimal("0.6667"), Decimal(1),
                                                    Decimal("0.5"), Decimal(1), Decimal(1)]
    # Median time from the stage before, among prospects with both times: contacted 1h, 2h, 1h -> 1h;
    # opened 2h and 1h -> 1.5h; replied (A) 2h; applied (A; B never replied) 5h; approved 10h; signed 10h;
    # first conversion 20h (the earliest conversion).
    expected = [None, timedelta(hours=1), timedelta(minutes=90), timedelta(hours=2), timedelta(hours=5),
                timedelta(hours=10), timedelta(hours=10), timedelta(hours=20)]
    assert [fair.median(k) for k in range(8)] == expected
    assert [total.median(k) for k in range(8)] == expected


def test_funnel_export_neutralises_sources(tmp_path):
    with session_scope() as s:
        s.add(Prospect(email="x@example.com", source="=cmd|'/c calc'!A1", created_at=T))
    with session_scope() as s:
        header, body = funnel_table(recruitment_funnel(s))
    path = write_csv(tmp_path / "funnel.csv", header, body)
    with path.open(newline="") as f:
        first = next(csv.DictReader(f))
    assert first["source"] == "'=cmd|'/c calc'!A1" and first["prospects"] == "1"


def test_no_prospects_no_funnel():
    with session_scope() as s:
        assert recruitment_funnel(s) == []
