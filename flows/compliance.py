"""Compliance flows: page checks (disclosure, brand rules), sanctions screening, fraud signals,
and a person's review of serious findings.

- `check_compliance(partner_id=None)`: all active partners (or one), each check a task over a batch;
  records findings without duplicates, resolves fixed ones, applies the policy's automatic actions,
  emits `compliance.finding` for partners with findings a person must review, writes a report artifact.
- `review_findings(partner_id)`: pauses with a typed form (withhold payouts, suspend, notify, dismiss).
- `rescreen_sanctions()`: re-screens every partner when the sanctions list changed (by checksum).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from sqlmodel import select

from partnerflow.models import Partner, Stage, session_scope
from partnerflow.models.audit import current_flow_run_id
from partnerflow.models.compliance import (
    ComplianceRun,
    Finding,
    FindingKind,
    FindingStatus,
    PartnerPage,
    SanctionsListVersion,
    SanctionsScreening,
)
from partnerflow.models.types import utcnow
from partnerflow.settings import get_settings
from partnerflow.tasks.compliance import findings as store
from partnerflow.tasks.compliance.brand_rules import check_brand_rules, compile_rules
from partnerflow.tasks.compliance.disclosure import check_disclosure, page_text
from partnerflow.tasks.compliance.findings import Detected, RecordOutcome
from partnerflow.tasks.compliance.fraud import fraud_signals
from partnerflow.tasks.compliance.pages import fetch_and_analyse
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.compliance.sanctions import (
    SanctionsListError,
    load_sanctions_list,
    normalize_tokens,
    screen,
)
from partnerflow.tasks.shared import events

BATCH = 500
CHECKED_STAGES = (Stage.ACTIVE, Stage.DORMANT)
PAGE_KINDS = (FindingKind.DISCLOSURE, FindingKind.BRAND_RULE, FindingKind.COULD_NOT_CHECK)


def _merge(total: RecordOutcome, part: dict) -> None:
    for name in ("opened", "updated", "suppressed", "resolved"):
        getattr(total, name).extend(part.get(name, []))


def _outcome_dict(out: RecordOutcome) -> dict:
    return {"opened": out.opened, "updated": out.updated, "suppressed": out.suppressed, "resolved": out.resolved}


# --- page checks ---------------------------------------------------------------------------------


def analyse_page(result, partner: Partner, policy: dict, rules: list[dict]) -> list[Detected]:
    """Findings for one fetched page; a page we could not read gives a could_not_check finding."""
    sev = policy.get("could_not_check", {}).get("severity", "medium")

    def cannot(reason: str, detail: str) -> Detected:
        return Detected(partner.id, FindingKind.COULD_NOT_CHECK, "could_not_check", sev,
                        f"Could not check the page: {reason}",
                        {"reason": reason, "final_url": result.final_url, "status_code": result.status_code},
                        url=result.url, detail=detail)

    if not result.ok or result.text is None:
        return [cannot(result.error or "no content", result.error or "no content")]
    try:
        page = page_text(result.text, tracking_code=partner.tracking_code, coupon_code=partner.coupon_code,
                         tracking_param=policy["disclosure"].get("tracking_param", "ref"))
    except ValueError as exc:
        return [cannot(str(exc), "unparseable")]
    found = check_disclosure(page, partner_id=partner.id, url=result.url, policy=policy)
    found += check_brand_rules(page, partner_id=partner.id, partner_type=partner.partner_type,
                               coupon_code=partner.coupon_code, url=result.url, rules=rules)
    mismatch = [n for n in (result.notes or []) if n.startswith(("charset_mismatch", "unknown_charset"))]
    if mismatch:  # read with a guessed encoding: checked, but never called compliant on a guess
        found.append(cannot(f"wrong_encoding ({', '.join(mismatch)}; read as {result.encoding})", "wrong_encoding"))
    return found


@task
def check_pages(partner_ids: list[int]) -> dict:
    """Fetch every registered page of these partners once, check disclosure and brand rules, record findings."""
    settings = get_settings()
    policy = load_policy()
    rules = compile_rules(policy)
    with session_scope() as session:
        partners = {p.id: p for p in session.exec(select(Partner).where(Partner.id.in_(partner_ids))).all()}
        pages = session.exec(select(PartnerPage).where(PartnerPage.partner_id.in_(partner_ids),
                                                       PartnerPage.active == True)).all()  # noqa: E712
    analysed = fetch_and_analyse(
        pages, lambda page, result: analyse_page(result, partners[page.partner_id], policy, rules),
        concurrency=settings.compliance.compliance_fetch_concurrency, per_domain_delay=settings.compliance.compliance_per_domain_delay,
        timeout=settings.compliance.compliance_fetch_timeout_seconds, max_bytes=settings.compliance.compliance_fetch_max_bytes,
        respect_robots=settings.compliance.compliance_respect_robots)
    out = RecordOutcome()
    stats = Counter()
    now = utcnow()
    with session_scope() as session:
        for page, result, found in analysed:
            partner = partners[page.partner_id]
            store.record(session, found, policy, out)
            readable = result.ok and not any(d.detail == "wrong_encoding" for d in found)
            seen = {d.fingerprint for d in found}
            # A page we read resolves whatever is no longer on it; an unreadable page resolves nothing
            # but an older "could not check" for another reason (same slot, updated above).
            if readable:
                store.resolve_missing(session, partner.id, kinds=PAGE_KINDS, url=page.url, seen=seen,
                                      reason=f"no longer found on the page ({now:%Y-%m-%d})", out=out)
            row = session.get(PartnerPage, page.id)
            row.last_checked_at = now
            row.last_result = "ok" if readable else f"could_not_check:{result.error or 'wrong_encoding'}"
            session.add(row)
            stats["pages"] += 1
            stats["could_not_check" if not readable else "pages_read"] += 1
    return {**_outcome_dict(out), "pages": stats["pages"], "pages_read": stats["pages_read"],
            "could_not_check": stats["could_not_check"]}


# --- fraud ---------------------------------------------------------------------------------------------


@task
def check_fraud(partner_ids: list[int]) -> dict:
    policy = load_policy()
    with session_scope() as session:
        found = fraud_signals(session, partner_ids, policy)
        out = store.record(session, found, policy)
    return _outcome_dict(out)


# --- sanctions -----------------------------------------------------------------------------------------


def _subjects(partner: Partner) -> list[str]:
    names = [partner.legal_name]
    if partner.contact_name and normalize_tokens(partner.contact_name) != normalize_tokens(partner.legal_name):
        names.append(partner.contact_name)
    return [n for n in names if n and n.strip()]


def record_list_version(sdn) -> None:
    with session_scope() as session:
        if not session.exec(select(SanctionsListVersion).where(SanctionsListVersion.checksum == sdn.checksum)).first():
            session.add(SanctionsListVersion(checksum=sdn.checksum, source=sdn.source, list_date=sdn.list_date,
                                             entries=len(sdn)))


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
            subjects = [(n, f"{' '.join(normalize_tokens(n))}|{(partner.country or '').upper()}") for n in _subjects(partner)]
            if not force and all((partner.id, key) in done for _, key in subjects):
                skipped += 1
                continue
            hits = []
            for name, key in subjects:
                matches = screen(name, partner.country or None, sdn)
                if (partner.id, key) not in done:
                    session.add(SanctionsScreening(partner_id=partner.id, subject_key=key, name=name,
                                                   country=partner.country or "", list_checksum=sdn.checksum,
                                                   list_date=sdn.list_date, result="match" if matches else "clear",
                                                   matches=[m.as_dict() for m in matches[:10]]))
                hits += [(name, m) for m in matches]
            session.commit()
            screened += 1
            found = []
            if hits:
                matched += 1
                best = max(hits, key=lambda h: h[1].score)
                found.append(Detected(
                    partner.id, FindingKind.SANCTIONS, "sanctions.match", "critical",
                    f"Possible sanctions list match: {best[1].entry.name} ({best[1].score:.0f}/100)",
                    {"list_date": sdn.list_date, "list_checksum": sdn.checksum,
                     "matches": [{"screened_name": n, **m.as_dict()} for n, m in hits[:10]],
                     "reason": f"{best[0]!r} — {best[1].reason}; program {best[1].entry.program or 'n/a'}"},
                    detail=sorted({m.entry.ent_num for _, m in hits})))
                store.record(session, found, policy, out)
            store.resolve_missing(session, partner.id, kinds=(FindingKind.SANCTIONS,), url=None,
                                  seen={d.fingerprint for d in found},
                                  reason=f"no match on the sanctions list of {sdn.list_date} ({sdn.checksum[:12]})",
                                  out=out)
    return {**_outcome_dict(out), "screened": screened, "matched": matched, "unchanged": skipped,
            "list_date": sdn.list_date, "list_checksum": sdn.checksum}


# --- actions -------------------------------------------------------------------------------------------


def notify_partner(partner_id: int, finding_ids: list[int], *, actor: str) -> int | None:
    """Mail the partner the templated notice once per set of findings; returns the Message id."""
    from partnerflow.tasks.shared.mail import deliver

    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        rows = [session.get(Finding, i) for i in sorted(finding_ids)]
        items = [{"title": f.title, "url": f.url, "reason": (f.evidence or {}).get("reason", "")} for f in rows]
    message = deliver(f"compliance-notice:{partner_id}:{'-'.join(map(str, sorted(finding_ids)))}",
                      kind="compliance_notice", to_email=partner.email, template="compliance/compliance_notice",
                      context={"name": partner.contact_name or partner.legal_name, "findings": items, "fix_days": 14},
                      partner_id=partner_id)
    with session_scope() as session:
        for i in finding_ids:
            store.mark_notified(session, session.get(Finding, i), actor=actor, message_id=message.id)
    return message.id


def apply_action(action: str, finding_ids: list[int], *, actor: str, reason: str = "") -> None:
    """withhold_payouts | suspend_partner | notify_partner | dismiss | resolve, on findings of one partner."""
    if not finding_ids:
        return
    if action == "notify_partner":
        with session_scope() as session:
            partner_id = session.get(Finding, finding_ids[0]).partner_id
        notify_partner(partner_id, finding_ids, actor=actor)
        return
    with session_scope() as session:
        for i in finding_ids:
            row = session.get(Finding, i)
            if row is None or row.status not in FindingStatus.ACTIVE:
                continue
            if action == "withhold_payouts":
                store.withhold(session, row, actor=actor, reason=reason)
            elif action == "suspend_partner":
                store.suspend_partner(session, row, actor=actor, reason=reason)
            elif action in ("dismiss", "resolve"):
                if not reason.strip():
                    raise ValueError(f"{action} needs a reason")
                store.close(session, row, FindingStatus.DISMISSED if action == "dismiss" else FindingStatus.RESOLVED,
                            reason=reason, actor=actor)
            else:
                raise ValueError(f"unknown action {action!r}")


def _auto_actions(opened: list[int], policy: dict) -> dict[str, list[int]]:
    """Apply the policy's automatic actions to newly opened findings; {action: [finding ids]}."""
    auto = policy["actions"].get("auto") or {}
    done: dict[str, list[int]] = {}
    with session_scope() as session:
        rows = [session.get(Finding, i) for i in opened]
    by_partner_action: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        for action in auto.get(row.severity, []) or []:
            by_partner_action.setdefault((row.partner_id, action), []).append(row.id)
    for (partner_id, action), ids in by_partner_action.items():
        apply_action(action, ids, actor="policy", reason=f"automatic for {action} by compliance policy")
        done.setdefault(action, []).extend(ids)
    return done


class FindingDecision(RunInput):
    """What to do about a partner's compliance findings."""

    action: Literal["withhold_payouts", "suspend_partner", "notify_partner", "dismiss"] = "withhold_payouts"
    reason: str = ""
    approver: str = ""


def _evidence_markdown(partner: Partner, rows: list[Finding]) -> str:
    lines = [f"## Compliance review: {partner.legal_name} (partner #{partner.id}, {partner.email}, "
             f"{partner.country or 'country unknown'}, stage {partner.stage})", ""]
    for f in rows:
        ev = f.evidence or {}
        lines += [f"### #{f.id} {f.title}", f"- **rule** `{f.rule}` · **severity** {f.severity} · **status** {f.status}"
                  + (" · **holds payouts**" if f.blocking else "")]
        if f.url:
            lines.append(f"- **page** {f.url}")
        if ev.get("reason"):
            lines.append(f"- **why** {ev['reason']}")
        for key in ("excerpt", "first_link_excerpt", "disclosure_excerpt"):
            if ev.get(key):
                lines.append(f"- **{key.replace('_', ' ')}**: > {ev[key]}")
        for m in (ev.get("matches") or [])[:3]:
            lines.append(f"- **list entry** {m.get('name')} (#{m.get('ent_num')}, {m.get('program')}), "
                         f"score {m.get('score')}: {m.get('reason')}")
        lines.append("")
    lines += ["**Choose**: `withhold_payouts` (hold payouts until resolved), `suspend_partner`, "
              "`notify_partner` (templated mail asking for a fix), or `dismiss` (give the reason). "
              "Fill in `approver` with your name."]
    return "\n".join(lines)


@flow(name="review-compliance-findings")
def review_findings(partner_id: int) -> dict:
    """Ask a person what to do about this partner's undecided findings of the policy's ask severities."""
    from partnerflow.tasks.shared.approvals import ask_person

    policy = load_policy()
    ask = policy["actions"].get("ask_person", ["high", "critical"])
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        rows = session.exec(select(Finding).where(
            Finding.partner_id == partner_id, Finding.status.in_(FindingStatus.ACTIVE),
            Finding.severity.in_(ask), Finding.decided_by.is_(None) | (Finding.decided_by == "policy"))
            .order_by(Finding.id)).all()
    if partner is None or not rows:
        return {"partner_id": partner_id, "asked": False}
    ids = [r.id for r in rows]
    answer = ask_person(FindingDecision, _evidence_markdown(partner, rows),
                        timeout_seconds=get_settings().compliance.compliance_approval_timeout_seconds,
                        key=f"compliance-{partner_id}-{'-'.join(map(str, ids))}")
    if answer is None:
        action = policy["actions"].get("on_timeout", "withhold_payouts")
        if action != "nothing":
            apply_action(action, ids, actor="policy", reason="nobody answered in time: safe default")
        return {"partner_id": partner_id, "asked": True, "action": action, "by": "timeout", "findings": ids}
    if answer.action == "dismiss" and not answer.reason.strip():
        # A dismissal without a reason is not accepted: hold instead, and say so.
        get_run_logger().warning("Dismissal without a reason for partner %s: withholding payouts instead.", partner_id)
        apply_action("withhold_payouts", ids, actor=answer.approver, reason="dismissal refused: no reason given")
        return {"partner_id": partner_id, "asked": True, "action": "withhold_payouts", "by": answer.approver,
                "findings": ids}
    apply_action(answer.action, ids, actor=answer.approver, reason=answer.reason)
    return {"partner_id": partner_id, "asked": True, "action": answer.action, "by": answer.approver, "findings": ids}


# --- the flows -----------------------------------------------------------------------------------------


def _partner_ids(partner_id: int | None) -> list[int]:
    with session_scope() as session:
        if partner_id is not None:
            return [p for p in session.exec(select(Partner.id).where(Partner.id == partner_id)).all()]
        return list(session.exec(select(Partner.id).where(Partner.stage.in_(CHECKED_STAGES)).order_by(Partner.id)).all())


def _needs_review(finding_ids: list[int], policy: dict) -> list[int]:
    ask = set(policy["actions"].get("ask_person", []))
    with session_scope() as session:
        rows = [session.get(Finding, i) for i in finding_ids]
    return sorted({r.partner_id for r in rows if r and r.severity in ask and r.status in FindingStatus.ACTIVE})


def _report(run: ComplianceRun, totals: dict, previous: ComplianceRun | None) -> str:
    with session_scope() as session:
        active = session.exec(select(Finding).where(Finding.status.in_(FindingStatus.ACTIVE))).all()
    by_kind = Counter((f.kind, f.severity) for f in active)
    opened = set(totals["opened"])
    new_by_kind = Counter((f.kind, f.severity) for f in active if f.id in opened)
    lines = [f"# Compliance report — run {run.id} ({run.scope})", "",
             f"- partners checked: **{totals['partners']}**",
             f"- pages: {totals['pages']} ({totals['pages_read']} read, {totals['could_not_check']} could not be checked)",
             f"- sanctions: {totals['sanctions']}",
             f"- new findings: **{len(totals['opened'])}**, still open: {len(set(totals['updated']))}, "
             f"resolved: {len(totals['resolved'])}, seen again but dismissed: {len(set(totals['suppressed']))}",
             f"- automatic actions: {totals['auto'] or 'none'}; sent for review: partners {totals['review'] or 'none'}", "",
             "## Open findings by kind and severity", "", "| kind | severity | open | new this run |", "|---|---|---|---|"]
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


@flow(name="check-compliance")
def check_compliance(partner_id: int | None = None) -> dict:
    """Run every check over active partners (or one partner) and report."""
    logger = get_run_logger()
    policy = load_policy()
    scope = "all" if partner_id is None else f"partner:{partner_id}"
    with session_scope() as session:
        previous = session.exec(select(ComplianceRun).where(ComplianceRun.finished_at.is_not(None))
                                .order_by(ComplianceRun.id.desc())).first()
        run = ComplianceRun(scope=scope, flow_run_id=current_flow_run_id())
        session.add(run)
        session.flush()
        session.refresh(run)
    ids = _partner_ids(partner_id)
    totals: dict = {"partners": len(ids), "pages": 0, "pages_read": 0, "could_not_check": 0,
                    "opened": [], "updated": [], "suppressed": [], "resolved": [], "sanctions": "not configured"}
    sanctions_ok = bool(get_settings().compliance.sanctions_list)
    if sanctions_ok:
        try:
            sdn = load_sanctions_list()
            record_list_version(sdn)
            totals["sanctions"] = f"list of {sdn.list_date} ({sdn.checksum[:12]}, {len(sdn)} entries)"
        except SanctionsListError as exc:
            sanctions_ok = False
            totals["sanctions"] = f"could not load the list: {exc}"
            logger.error("Sanctions screening skipped: %s", exc)
    screened = matched = 0
    for start in range(0, len(ids), BATCH):
        batch = ids[start:start + BATCH]
        futures = [check_pages.submit(batch), check_fraud.submit(batch)]
        if sanctions_ok:
            futures.append(screen_partners.submit(batch))
        for fut in futures:
            part = fut.result()
            for name in ("opened", "updated", "suppressed", "resolved"):
                totals[name] += part[name]
            for name in ("pages", "pages_read", "could_not_check"):
                totals[name] += part.get(name, 0)
            screened += part.get("screened", 0)
            matched += part.get("matched", 0)
    if sanctions_ok:
        totals["sanctions"] += f"; screened {screened} partner(s), {matched} possible match(es)"
    totals["auto"] = _auto_actions(totals["opened"], policy)
    totals["review"] = _needs_review(totals["opened"], policy)
    for pid in totals["review"]:
        events.emit(events.COMPLIANCE_FINDING, "partner", pid, {"partner_id": pid})
    with session_scope() as session:
        open_total = len(session.exec(select(Finding.id).where(Finding.status.in_(FindingStatus.ACTIVE))).all())
        row = session.get(ComplianceRun, run.id)
        row.finished_at = utcnow()
        row.summary = {k: v for k, v in totals.items()} | {"open_total": open_total}
        session.add(row)
        run = row
    create_markdown_artifact(_report(run, totals, previous), key="compliance-report",
                             description=f"Compliance report ({scope})")
    result = {k: totals[k] for k in ("partners", "pages", "pages_read", "could_not_check", "opened", "resolved",
                                     "auto", "review", "sanctions")}
    result["run_id"] = run.id
    return result


@flow(name="rescreen-sanctions")
def rescreen_sanctions(force: bool = False) -> dict:
    """Screen every partner (except rejected ones) against the list when it changed since they were screened."""
    sdn = load_sanctions_list()
    record_list_version(sdn)
    with session_scope() as session:
        ids = list(session.exec(select(Partner.id).where(Partner.stage != Stage.REJECTED).order_by(Partner.id)).all())
    totals = {"screened": 0, "matched": 0, "unchanged": 0, "opened": [], "resolved": []}
    for start in range(0, len(ids), BATCH):
        part = screen_partners(ids[start:start + BATCH], force=force)
        for k in ("screened", "matched", "unchanged"):
            totals[k] += part[k]
        totals["opened"] += part["opened"]
        totals["resolved"] += part["resolved"]
    policy = load_policy()
    totals["auto"] = _auto_actions(totals["opened"], policy)
    totals["review"] = _needs_review(totals["opened"], policy)
    for pid in totals["review"]:
        events.emit(events.COMPLIANCE_FINDING, "partner", pid, {"partner_id": pid})
    create_markdown_artifact(
        f"# Sanctions re-screening\n\nList of {sdn.list_date} (`{sdn.checksum[:12]}`, {len(sdn)} entries): "
        f"{totals['screened']} screened, {totals['unchanged']} already screened against this list, "
        f"{totals['matched']} possible match(es), {len(totals['opened'])} new finding(s), "
        f"{len(totals['resolved'])} resolved.", key="sanctions-rescreen")
    return {**totals, "list_date": sdn.list_date, "list_checksum": sdn.checksum}
