"""A person's review of a partner's serious findings: which findings, the form, and its description."""

from __future__ import annotations

from typing import Any, Literal

from prefect.input import RunInput
from pydantic import Field
from sqlmodel import select

from partnerflow.models import Partner, session_scope
from partnerflow.models.compliance import ACTIVE_STATUSES, Finding, FindingAction, Severity
from partnerflow.tasks.compliance.actions import apply_action
from partnerflow.tasks.compliance.findings import POLICY
from partnerflow.tasks.compliance.policy import NO_ACTION, load_policy
from partnerflow.tasks.shared.markdown import md_text


class FindingDecision(RunInput):
    """What to do about a partner's compliance findings."""

    action: Literal["withhold_payouts", "suspend_partner", "notify_partner", "dismiss"]
    reason: str = Field("", description="Required to dismiss: why these findings do not matter.")
    approver: str = Field(min_length=1, description="Your name: who decided.")


def apply_timeout_default(partner_id: Any, details: dict[str, Any]) -> str:
    """Nobody answered in time: the policy's `on_timeout` action (by default, withhold payouts)."""
    action = load_policy()["actions"].get("on_timeout", FindingAction.WITHHOLD_PAYOUTS)
    if action != NO_ACTION:
        apply_action(action, details["finding_ids"], actor=POLICY, reason="nobody answered in time: safe default")
    return action


def findings_to_review(partner_id: int, policy: dict) -> tuple[Partner | None, list[Finding]]:
    """The partner and its active findings of the severities the policy asks about that no person decided."""
    ask = policy["actions"].get("ask_person", [Severity.HIGH, Severity.CRITICAL])
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        rows = session.exec(select(Finding).where(
            Finding.partner_id == partner_id, Finding.status.in_(ACTIVE_STATUSES),
            Finding.severity.in_(ask), Finding.decided_by.is_(None) | (Finding.decided_by == POLICY))
            .order_by(Finding.id)).all()
    return partner, list(rows)


def review_description(partner: Partner, rows: list[Finding]) -> str:
    """The Markdown above the form: the partner, then each finding with its evidence.

    Names, addresses and excerpts come from the partner and their pages, so they are escaped.
    """
    lines = [f"## Compliance review: {md_text(partner.legal_name)} (partner #{partner.id}, {md_text(partner.email)}, "
             f"{md_text(partner.country or 'country unknown')}, stage {partner.stage})", ""]
    for f in rows:
        ev = f.evidence or {}
        lines += [f"### #{f.id} {md_text(f.title)}",
                  f"- **rule** `{f.rule}` · **severity** {f.severity} · **status** {f.status}"
                  + (" · **holds payouts**" if f.blocking else "")]
        if f.url:
            lines.append(f"- **page** {md_text(f.url)}")
        if ev.get("reason"):
            lines.append(f"- **why** {md_text(ev['reason'])}")
        for key in ("excerpt", "first_link_excerpt", "disclosure_excerpt"):
            if ev.get(key):
                lines.append(f"- **{key.replace('_', ' ')}**: {md_text(ev[key])}")
        for m in (ev.get("matches") or [])[:3]:
            lines.append(f"- **list entry** {md_text(m.get('name'))} (#{md_text(m.get('ent_num'))}, "
                         f"{md_text(m.get('program'))}), score {md_text(m.get('score'))}: {md_text(m.get('reason'))}")
        lines.append("")
    lines += ["**Choose**: `withhold_payouts` (hold payouts until resolved), `suspend_partner`, "
              "`notify_partner` (templated mail asking for a fix), or `dismiss` (give the reason). "
              "Fill in `approver` with your name."]
    return "\n".join(lines)
