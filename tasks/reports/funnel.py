"""The recruitment funnel by source and sequence: prospects -> contacted -> opened -> replied -> applied ->
approved -> signed -> first conversion, with each stage's conversion rate and median time from the stage
before. A prospect counts at every stage up to the furthest it reached (a partner who applied without
opening a tracked mail was still contacted and opened: the funnel never widens). Partners are linked to
their prospect by Partner.prospect_id. Counts and medians are SQL aggregates (window functions for the
medians), one row per (source, sequence) and per stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import Session

from partnerflow.models.contracting import ApplicationStatus, ContractStatus
from partnerflow.models.outreach import StopReason
from partnerflow.tasks.payouts.commission_rules import PAYING_KINDS

STAGES = ("prospects", "contacted", "opened", "replied", "applied", "approved", "signed", "first_conversion")
ALL = "(all)"
NO_SEQUENCE = "(none)"

_BASE = """
WITH sent AS (
    SELECT enrollment_id, MIN(sent_at) AS contacted_at, MIN(opened_at) AS opened_at
    FROM message WHERE enrollment_id IS NOT NULL AND sent_at IS NOT NULL GROUP BY enrollment_id
), linked AS (
    SELECT id AS partner_id, prospect_id FROM partner WHERE prospect_id IS NOT NULL
), apps AS (
    SELECT a.partner_id, MIN(a.created_at) AS applied_at,
           MIN(CASE WHEN a.status = :approved THEN a.decided_at END) AS approved_at
    FROM application a JOIN linked l ON l.partner_id = a.partner_id GROUP BY a.partner_id
), signed AS (
    SELECT c.partner_id, MIN(c.signed_at) AS signed_at
    FROM contract c JOIN linked l ON l.partner_id = c.partner_id WHERE c.status = :signed GROUP BY c.partner_id
), firsts AS (
    SELECT v.partner_id, MIN(v.occurred_at) AS first_at
    FROM conversion v JOIN linked l ON l.partner_id = v.partner_id WHERE v.kind IN ({paying}) GROUP BY v.partner_id
), won AS (
    SELECT l.prospect_id, MIN(apps.applied_at) AS t4, MIN(apps.approved_at) AS t5, MIN(signed.signed_at) AS t6,
           MIN(firsts.first_at) AS t7
    FROM linked l LEFT JOIN apps ON apps.partner_id = l.partner_id
    LEFT JOIN signed ON signed.partner_id = l.partner_id LEFT JOIN firsts ON firsts.partner_id = l.partner_id
    GROUP BY l.prospect_id
), base AS (
    SELECT p.source AS source, COALESCE(e.sequence_name, :none) AS sequence, p.created_at AS t0,
           s.contacted_at AS t1, s.opened_at AS t2,
           CASE WHEN e.stop_reason = :reply THEN e.updated_at END AS t3, w.t4, w.t5, w.t6, w.t7
    FROM prospect p LEFT JOIN enrollment e ON e.prospect_id = p.id
    LEFT JOIN sent s ON s.enrollment_id = e.id LEFT JOIN won w ON w.prospect_id = p.id
)
"""


def _reached(stage: int) -> str:
    later = ", ".join(f"t{k}" for k in range(stage, len(STAGES)))
    return f"COUNT(COALESCE({later}, NULL))"


def _seconds(dialect: str, earlier: str, later: str) -> str:
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"(julianday({later}) - julianday({earlier})) * 86400"


def params() -> dict[str, str]:
    """The bound values of the funnel's SQL."""
    return {"approved": str(ApplicationStatus.APPROVED), "signed": str(ContractStatus.SIGNED),
            "reply": str(StopReason.REPLY), "none": NO_SEQUENCE}


def _base() -> str:
    return _BASE.format(paying=", ".join(f"'{k}'" for k in PAYING_KINDS))  # our own constants, not input


@dataclass
class FunnelRow:
    source: str
    sequence: str
    counts: list[int]
    median_seconds: list[Decimal | None] = field(default_factory=lambda: [None] * len(STAGES))

    def rate(self, stage: int) -> Decimal | None:
        """Share of the stage before that reached this stage."""
        if stage == 0 or not self.counts[stage - 1]:
            return None
        return (Decimal(self.counts[stage]) / self.counts[stage - 1]).quantize(Decimal("0.0001"))

    def median(self, stage: int) -> timedelta | None:
        value = self.median_seconds[stage]
        # SQLite's julianday arithmetic is off by microseconds: whole seconds are what is meant.
        return None if value is None else timedelta(seconds=int(value.quantize(Decimal(1))))


def medians_sql(dialect: str, grouped: bool) -> str:
    """Median seconds from the stage before, per (source, sequence, stage) or for the whole program."""
    keys = "source, sequence" if grouped else f"'{ALL}' AS source, '{ALL}' AS sequence"
    parts = " UNION ALL ".join(
        f"SELECT {keys}, {k} AS stage, {_seconds(dialect, f't{k - 1}', f't{k}')} AS took FROM base "
        f"WHERE t{k - 1} IS NOT NULL AND t{k} IS NOT NULL" for k in range(1, len(STAGES)))
    return _base() + f""", took AS ({parts}), ranked AS (
        SELECT source, sequence, stage, took,
               ROW_NUMBER() OVER (PARTITION BY source, sequence, stage ORDER BY took) AS n,
               COUNT(*) OVER (PARTITION BY source, sequence, stage) AS total
        FROM took)
    SELECT source, sequence, stage, AVG(took) FROM ranked
    WHERE n IN ((total + 1) / 2, (total + 2) / 2) GROUP BY source, sequence, stage"""


def counts_sql() -> str:
    """How many prospects reached each stage, per (source, sequence)."""
    counts = ", ".join(_reached(k) for k in range(len(STAGES)))
    return _base() + f"SELECT source, sequence, {counts} FROM base GROUP BY source, sequence ORDER BY source, sequence"


def _medians(session: Session, grouped: bool) -> dict[tuple[str, str], dict[int, Decimal]]:
    sql = medians_sql(session.get_bind().dialect.name, grouped)
    found: dict[tuple[str, str], dict[int, Decimal]] = {}
    for source, sequence, stage, took in session.execute(text(sql), params()).all():
        found.setdefault((source, sequence), {})[int(stage)] = Decimal(str(took))
    return found


def recruitment_funnel(session: Session) -> list[FunnelRow]:
    """One row per (source, sequence), then the whole program as (all, all)."""
    rows = [FunnelRow(source or "", sequence, [int(n) for n in rest])
            for source, sequence, *rest in session.execute(text(counts_sql()), params()).all()]
    total = FunnelRow(ALL, ALL, [sum(r.counts[k] for r in rows) for k in range(len(STAGES))])
    medians = {**_medians(session, grouped=True), **_medians(session, grouped=False)}
    for row in [*rows, total]:
        for stage, value in medians.get((row.source, row.sequence), {}).items():
            row.median_seconds[stage] = value
    return [*rows, total] if rows else []
