"""One run of the compliance checks: which partners it covers, its ComplianceRun row and its totals."""

from __future__ import annotations

from collections.abc import Iterator

from sqlmodel import select

from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.audit import current_flow_run_id
from partnerflow.models.compliance import ACTIVE_STATUSES, ComplianceRun, Finding
from partnerflow.models.types import utcnow

BATCH = 500  # partners per task: keeps IN lists and task results small
CHECKED_STAGES = (Stage.ACTIVE, Stage.DORMANT)
OUTCOMES = ("opened", "updated", "suppressed", "resolved")  # lists of finding ids, from every check
PAGE_COUNTS = ("pages", "pages_read", "could_not_check")
SCREEN_COUNTS = ("screened", "matched", "unchanged")


def partners_to_check(partner_id: int | None) -> list[int]:
    """Every active or dormant partner, or just this one (whatever its stage) when it exists."""
    with session_scope() as session:
        if partner_id is not None:
            return list(session.exec(select(Partner.id).where(Partner.id == partner_id)).all())
        query = select(Partner.id).where(Partner.stage.in_(CHECKED_STAGES)).order_by(Partner.id)
        return list(session.exec(query).all())


def partners_to_screen() -> list[int]:
    """Every partner but the rejected ones."""
    with session_scope() as session:
        return list(session.exec(select(Partner.id).where(Partner.stage != Stage.REJECTED).order_by(Partner.id)).all())


def batches(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]


def start_run(partner_id: int | None) -> tuple[ComplianceRun, ComplianceRun | None]:
    """(this run's new row, the last finished run or None)."""
    scope = "all" if partner_id is None else f"partner:{partner_id}"
    with session_scope() as session:
        previous = session.exec(select(ComplianceRun).where(ComplianceRun.finished_at.is_not(None))
                                .order_by(ComplianceRun.id.desc())).first()
        run = ComplianceRun(scope=scope, flow_run_id=current_flow_run_id())
        session.add(run)
        session.flush()
        session.refresh(run)
    return run, previous


def check_totals(partners: int) -> dict:
    """The totals of a run of every check (kept as the run's summary)."""
    return {"partners": partners, **dict.fromkeys(PAGE_COUNTS, 0), **{name: [] for name in OUTCOMES},
            "sanctions": "not configured"}


def screening_totals() -> dict:
    return {**dict.fromkeys(SCREEN_COUNTS, 0), "opened": [], "resolved": []}


def add(totals: dict, part: dict) -> None:
    """Add one check's result (finding ids, page or screening counts) to those totals that count it."""
    for name in totals.keys() & part.keys():
        totals[name] += part[name]


def finish_run(run_id: int, totals: dict) -> ComplianceRun:
    """Close the run's row with its totals and the number of findings open now."""
    with session_scope() as session:
        open_total = len(session.exec(select(Finding.id).where(Finding.status.in_(ACTIVE_STATUSES))).all())
        row = session.get(ComplianceRun, run_id)
        row.finished_at = utcnow()
        row.summary = {**totals, "open_total": open_total}
        session.add(row)
    return row
