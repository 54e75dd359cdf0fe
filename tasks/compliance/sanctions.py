"""Screening partners and applicants against the configured sanctions list.

`screen_name()` is the one way to screen a name: the application screening before approval and the
compliance checks over every partner both call it. `screen_partners` screens each (partner, name,
list version) once, keeps every screening, and turns possible matches into findings that a person
reviews. The list format is in sanctions_list, the matcher in sanctions_match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger, task
from sqlmodel import select

from partnerflow.models import Partner, session_scope
from partnerflow.models.compliance import (
    FindingKind,
    SanctionsListVersion,
    SanctionsScreening,
    ScreeningResult,
    Severity,
)
from partnerflow.settings import get_settings
from partnerflow.tasks.compliance import findings as store
from partnerflow.tasks.compliance.findings import Detected, RecordOutcome
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.compliance.sanctions_list import SanctionsListError, load_sanctions_list
from partnerflow.tasks.compliance.sanctions_match import SanctionsMatch, SdnList, normalize_tokens, screen


@dataclass
class NameScreening:
    """One name screened: MATCH or CLEAR against a list version, or NOT_CONFIGURED / UNAVAILABLE
    (the list could not be read: treat as not screened, never as clear)."""

    name: str
    result: ScreeningResult
    matches: list[SanctionsMatch] = field(default_factory=list)  # best first
    list_date: str | None = None
    list_checksum: str = ""
    error: str = ""


def configured_list() -> SdnList | None:
    """The configured list, or None when none is configured; raises SanctionsListError when it cannot be read."""
    if not get_settings().compliance.sanctions_list:
        return None
    return load_sanctions_list()


def screen_name(name: str, country: str | None, sdn: SdnList | None = None) -> NameScreening:
    """Screen `name` (in `country`, an ISO code or a name) against `sdn`, by default the configured list."""
    if sdn is None:
        try:
            sdn = configured_list()
        except SanctionsListError as exc:
            return NameScreening(name, ScreeningResult.UNAVAILABLE, error=str(exc))
        if sdn is None:
            return NameScreening(name, ScreeningResult.NOT_CONFIGURED)
    matches = screen(name, country, sdn)
    return NameScreening(name, ScreeningResult.MATCH if matches else ScreeningResult.CLEAR, matches,
                         list_date=sdn.list_date, list_checksum=sdn.checksum)


def record_list_version(sdn: SdnList) -> None:
    with session_scope() as session:
        if not session.exec(select(SanctionsListVersion).where(SanctionsListVersion.checksum == sdn.checksum)).first():
            session.add(SanctionsListVersion(checksum=sdn.checksum, source=sdn.source, list_date=sdn.list_date,
                                             entries=len(sdn)))


def list_for_run() -> tuple[SdnList | None, str]:
    """The configured list (its version recorded) and a line for the report; None: skip the screening."""
    try:
        sdn = configured_list()
    except SanctionsListError as exc:
        get_run_logger().error("Sanctions screening skipped: %s", exc)
        return None, f"could not load the list: {exc}"
    if sdn is None:
        return None, "not configured"
    record_list_version(sdn)
    return sdn, f"list of {sdn.list_date} ({sdn.checksum[:12]}, {len(sdn)} entries)"


def _subjects(partner: Partner) -> list[tuple[str, str]]:
    """(name, subject key) for the partner's legal name and a different contact name."""
    names = [partner.legal_name]
    if partner.contact_name and normalize_tokens(partner.contact_name) != normalize_tokens(partner.legal_name):
        names.append(partner.contact_name)
    country = (partner.country or "").upper()
    return [(n, f"{' '.join(normalize_tokens(n))}|{country}") for n in names if n and n.strip()]


def _finding(partner_id: int, sdn: SdnList, hits: list[tuple[str, SanctionsMatch]]) -> Detected:
    name, best = max(hits, key=lambda h: h[1].score)
    return Detected(
        partner_id, FindingKind.SANCTIONS, "sanctions.match", Severity.CRITICAL,
        f"Possible sanctions list match: {best.entry.name} ({best.score:.0f}/100)",
        {"list_date": sdn.list_date, "list_checksum": sdn.checksum,
         "matches": [{"screened_name": n, **m.as_dict()} for n, m in hits[:10]],
         "reason": f"{name!r} — {best.reason}; program {best.entry.program or 'n/a'}"},
        detail=sorted({m.entry.ent_num for _, m in hits}))


@task
def screen_partners(partner_ids: list[int], force: bool = False) -> dict:
    """Screen these partners against the configured list; each (partner, name, list) is screened once."""
    policy = load_policy()
    sdn = load_sanctions_list()
    out = RecordOutcome()
    screened = matched = skipped = 0
    with session_scope() as session:
        partners = session.exec(select(Partner).where(Partner.id.in_(partner_ids))).all()
        done = {(s.partner_id, s.subject_key) for s in session.exec(
            select(SanctionsScreening).where(SanctionsScreening.partner_id.in_(partner_ids),
                                             SanctionsScreening.list_checksum == sdn.checksum)).all()}
        for partner in partners:
            subjects = _subjects(partner)
            if not force and all((partner.id, key) in done for _, key in subjects):
                skipped += 1
                continue
            hits = []
            for name, key in subjects:
                screening = screen_name(name, partner.country or None, sdn)
                if (partner.id, key) not in done:
                    session.add(SanctionsScreening(partner_id=partner.id, subject_key=key, name=name,
                                                   country=partner.country or "", list_checksum=sdn.checksum,
                                                   list_date=sdn.list_date, result=screening.result,
                                                   matches=[m.as_dict() for m in screening.matches[:10]]))
                hits += [(name, m) for m in screening.matches]
            session.commit()
            screened += 1
            found = [_finding(partner.id, sdn, hits)] if hits else []
            if found:
                matched += 1
                store.record(session, found, policy, out)
            store.resolve_missing(session, partner.id, kinds=(FindingKind.SANCTIONS,), url=None,
                                  seen={d.fingerprint for d in found},
                                  reason=f"no match on the sanctions list of {sdn.list_date} ({sdn.checksum[:12]})",
                                  out=out)
    return {**out.as_dict(), "screened": screened, "matched": matched, "unchanged": skipped,
            "list_date": sdn.list_date, "list_checksum": sdn.checksum}
