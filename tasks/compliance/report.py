"""The Markdown artifacts of the compliance flows: a run's report and the sanctions re-screening note."""

from __future__ import annotations

from collections import Counter

from sqlmodel import select

from partnerflow.models import session_scope
from partnerflow.models.compliance import ACTIVE_STATUSES, ComplianceRun, Finding
from partnerflow.tasks.compliance.sanctions_match import SdnList


def screening_line(screened: dict) -> str:
    """What the screening of a run did, appended to the report's sanctions line."""
    return f"; screened {screened['screened']} partner(s), {screened['matched']} possible match(es)"


def compliance_report(run: ComplianceRun, totals: dict, previous: ComplianceRun | None) -> str:
    """The run's totals, the open findings by kind and severity, and the change since the previous run."""
    with session_scope() as session:
        active = session.exec(select(Finding).where(Finding.status.in_(ACTIVE_STATUSES))).all()
    by_kind = Counter((f.kind, f.severity) for f in active)
    opened = set(totals["opened"])
    new_by_kind = Counter((f.kind, f.severity) for f in active if f.id in opened)
    lines = [f"# Compliance report — run {run.id} ({run.scope})", "",
             f"- partners checked: **{totals['partners']}**",
             f"- pages: {totals['pages']} ({totals['pages_read']} read, "
             f"{totals['could_not_check']} could not be checked)",
             f"- sanctions: {totals['sanctions']}",
             f"- new findings: **{len(totals['opened'])}**, still open: {len(set(totals['updated']))}, "
             f"resolved: {len(totals['resolved'])}, seen again but dismissed: {len(set(totals['suppressed']))}",
             f"- automatic actions: {totals['auto'] or 'none'}; "
             f"sent for review: partners {totals['review'] or 'none'}", "",
             "## Open findings by kind and severity", "",
             "| kind | severity | open | new this run |", "|---|---|---|---|"]
    lines += [f"| {k} | {s} | {n} | {new_by_kind.get((k, s), 0)} |" for (k, s), n in sorted(by_kind.items())] \
        or ["| – | – | 0 | 0 |"]
    lines += ["", "## Changes since the last run"]
    if previous is None:
        lines.append("First run.")
    else:
        prev_open = previous.summary.get("open_total", 0)
        lines.append(f"Previous run {previous.id} at {previous.started_at:%Y-%m-%d %H:%M} UTC had {prev_open} open "
                     f"finding(s); now {len(active)} ({len(active) - prev_open:+d}).")
    return "\n".join(lines)


def rescreen_report(sdn: SdnList, totals: dict) -> str:
    return (f"# Sanctions re-screening\n\nList of {sdn.list_date} (`{sdn.checksum[:12]}`, {len(sdn)} entries): "
            f"{totals['screened']} screened, {totals['unchanged']} already screened against this list, "
            f"{totals['matched']} possible match(es), {len(totals['opened'])} new finding(s), "
            f"{len(totals['resolved'])} resolved.")
