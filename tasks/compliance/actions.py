"""Acting on findings: what a person or the policy decided, the partner's notice mail, and which
partners a person must review."""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import select

from partnerflow.models import Partner, session_scope
from partnerflow.models.compliance import ACTIVE_STATUSES, Finding, FindingAction, FindingStatus
from partnerflow.models.events import OutboxEvent
from partnerflow.tasks.compliance import findings as store
from partnerflow.tasks.compliance.findings import POLICY
from partnerflow.tasks.shared import events
from partnerflow.tasks.shared.mail import deliver

FIX_DAYS = 14  # how long the notice gives the partner to fix their page


def notify_partner(partner_id: int, finding_ids: list[int], *, actor: str) -> int | None:
    """Mail the partner the templated notice once per set of findings; returns the Message id."""
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        rows = [session.get(Finding, i) for i in sorted(finding_ids)]
        items = [{"title": f.title, "url": f.url, "reason": (f.evidence or {}).get("reason", "")} for f in rows]
    message = deliver(f"compliance-notice:{partner_id}:{'-'.join(map(str, sorted(finding_ids)))}",
                      kind="compliance_notice", to_email=partner.email, template="compliance/compliance_notice",
                      context={"name": partner.contact_name or partner.legal_name, "findings": items,
                               "fix_days": FIX_DAYS},
                      partner_id=partner_id)
    with session_scope() as session:
        for i in finding_ids:
            store.mark_notified(session, session.get(Finding, i), actor=actor, message_id=message.id)
    return message.id


def apply_action(action: str, finding_ids: list[int], *, actor: str, reason: str = "") -> None:
    """A FindingAction (withhold_payouts, suspend_partner, notify_partner, dismiss, resolve) on findings of
    one partner; dismiss and resolve need a reason."""
    if not finding_ids:
        return
    if action == FindingAction.NOTIFY_PARTNER:
        with session_scope() as session:
            partner_id = session.get(Finding, finding_ids[0]).partner_id
        notify_partner(partner_id, finding_ids, actor=actor)
        return
    with session_scope() as session:
        for i in finding_ids:
            row = session.get(Finding, i)
            if row is None or row.status not in ACTIVE_STATUSES:
                continue
            if action == FindingAction.WITHHOLD_PAYOUTS:
                store.withhold(session, row, actor=actor, reason=reason)
            elif action == FindingAction.SUSPEND_PARTNER:
                store.suspend_partner(session, row, actor=actor, reason=reason)
            elif action in (FindingAction.DISMISS, FindingAction.RESOLVE):
                if not reason.strip():
                    raise ValueError(f"{action} needs a reason")
                status = FindingStatus.DISMISSED if action == FindingAction.DISMISS else FindingStatus.RESOLVED
                store.close(session, row, status, reason=reason, actor=actor)
            else:
                raise ValueError(f"unknown action {action!r}")


def auto_actions(opened: list[int], policy: dict) -> dict[str, list[int]]:
    """Apply the policy's automatic actions to newly opened findings; {action: [finding ids]}."""
    auto = policy["actions"].get("auto") or {}
    done: dict[str, list[int]] = {}
    with session_scope() as session:
        rows = [session.get(Finding, i) for i in opened]
    by_partner_action: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        for action in auto.get(row.severity, []) or []:
            by_partner_action.setdefault((row.partner_id, action), []).append(row.id)
    for (_partner_id, action), ids in by_partner_action.items():
        apply_action(action, ids, actor=POLICY, reason=f"automatic for {action} by compliance policy")
        done.setdefault(action, []).extend(ids)
    return done


def request_reviews(policy: dict, partner_id: int | None = None) -> list[int]:
    """Hand every partner (or this one) with undecided findings the policy asks a person about to a
    review, once per set of findings; returns the partners newly handed off.

    Read from the findings, not from this run's new ones: a run that died after recording its
    findings would otherwise never ask, since its re-run finds nothing new. The hand-off goes through
    the outbox in one transaction, keyed by the set, so a re-run or a second run asks nothing twice.
    """
    ask = set(policy["actions"].get("ask_person", []))
    undecided: dict[int, list[int]] = defaultdict(list)
    with session_scope() as session:
        query = select(Finding.partner_id, Finding.id).where(
            Finding.status.in_(ACTIVE_STATUSES), Finding.severity.in_(ask),
            Finding.decided_by.is_(None) | (Finding.decided_by == POLICY))
        if partner_id is not None:
            query = query.where(Finding.partner_id == partner_id)
        for pid, fid in session.exec(query.order_by(Finding.partner_id, Finding.id)).all():
            undecided[pid].append(fid)
        asked, keys = [], []
        for pid, ids in undecided.items():
            occurrence = "-".join(map(str, ids))
            key = events.outbox_key(events.COMPLIANCE_FINDING, "partner", pid, occurrence)
            if session.exec(select(OutboxEvent.id).where(OutboxEvent.key == key)).first() is None:
                keys.append(events.record(session, events.COMPLIANCE_FINDING, "partner", pid, {"partner_id": pid},
                                          occurrence=occurrence))
                asked.append(pid)
    if keys:
        events.relay_after_commit(*keys)
    return asked
