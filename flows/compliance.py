"""Compliance flows: page checks (disclosure, brand rules), sanctions screening, fraud signals,
and a person's review of serious findings.

- `check_compliance(partner_id=None)`: all active partners (or one), each check a task over a batch;
  records findings without duplicates, resolves fixed ones, applies the policy's automatic actions,
  hands off `compliance.finding` (outbox) for partners with undecided findings a person must review,
  writes a report artifact.
- `review_findings(partner_id)`: pauses with a typed form (withhold payouts, suspend, notify, dismiss).
- `rescreen_sanctions()`: re-screens every partner when the sanctions list changed (by checksum).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from partnerflow.models.compliance import FindingAction
from partnerflow.settings import get_settings
from partnerflow.tasks.compliance import runs
from partnerflow.tasks.compliance.actions import apply_action, auto_actions, request_reviews
from partnerflow.tasks.compliance.fraud import check_fraud
from partnerflow.tasks.compliance.pages import check_pages
from partnerflow.tasks.compliance.policy import load_policy
from partnerflow.tasks.compliance.report import compliance_report, rescreen_report, screening_line
from partnerflow.tasks.compliance.review import (
    FindingDecision,
    apply_timeout_default,
    findings_to_review,
    review_description,
)
from partnerflow.tasks.compliance.sanctions import list_for_run, record_list_version, screen_partners
from partnerflow.tasks.compliance.sanctions_list import load_sanctions_list
from partnerflow.tasks.shared.approvals import ask_person
from partnerflow.tasks.shared.customers import hash_clear_customer_emails


def act_on_new_findings(opened: list[int], policy: dict, partner_id: int | None = None
                        ) -> tuple[dict[str, list[int]], list[int]]:
    """The policy's automatic actions on new findings; partners with serious undecided ones go to a
    person's review (through the outbox, once per set of findings)."""
    return auto_actions(opened, policy), request_reviews(policy, partner_id)


@flow(name="check-compliance")
def check_compliance(partner_id: int | None = None) -> dict:
    """Run every check over active partners (or one partner) and report."""
    policy = load_policy()
    hash_clear_customer_emails()  # older rows kept the buyer's email in clear; the fraud check reads hashes
    run, previous = runs.start_run(partner_id)
    ids = runs.partners_to_check(partner_id)
    totals = runs.check_totals(len(ids))
    screened = runs.screening_totals()
    sdn, totals["sanctions"] = list_for_run()
    for batch in runs.batches(ids):
        futures = [check_pages.submit(batch), check_fraud.submit(batch)]
        if sdn is not None:
            futures.append(screen_partners.submit(batch))
        for future in futures:
            part = future.result()
            runs.add(totals, part)
            runs.add(screened, part)
    if sdn is not None:
        totals["sanctions"] += screening_line(screened)
    totals["auto"], totals["review"] = act_on_new_findings(totals["opened"], policy, partner_id)
    run = runs.finish_run(run.id, totals)
    create_markdown_artifact(compliance_report(run, totals, previous), key="compliance-report",
                             description=f"Compliance report ({run.scope})")
    result = {k: totals[k] for k in ("partners", "pages", "pages_read", "could_not_check", "opened", "resolved",
                                     "auto", "review", "sanctions")}
    return {**result, "run_id": run.id}


@flow(name="review-compliance-findings", persist_result=True)
def review_findings(partner_id: int) -> dict:
    """Ask a person what to do about this partner's undecided findings of the policy's ask severities."""
    policy = load_policy()
    partner, rows = findings_to_review(partner_id, policy)
    if partner is None or not rows:
        return {"partner_id": partner_id, "asked": False}
    ids = [r.id for r in rows]
    answer = ask_person(FindingDecision, review_description(partner, rows),
                        timeout_seconds=get_settings().compliance.compliance_approval_timeout_seconds,
                        key=f"compliance-{partner_id}-{'-'.join(map(str, ids))}",
                        subject=("partner_findings", partner_id), details={"finding_ids": ids})
    if answer is None:
        action = apply_timeout_default(partner_id, {"finding_ids": ids})
        return {"partner_id": partner_id, "asked": True, "action": action, "by": "timeout", "findings": ids}
    action, reason = answer.action, answer.reason
    if action == FindingAction.DISMISS and not reason.strip():
        # A dismissal without a reason is not accepted: hold instead, and say so.
        get_run_logger().warning("Dismissal without a reason for partner %s: withholding payouts instead.", partner_id)
        action, reason = FindingAction.WITHHOLD_PAYOUTS, "dismissal refused: no reason given"
    apply_action(action, ids, actor=answer.approver, reason=reason)
    return {"partner_id": partner_id, "asked": True, "action": action, "by": answer.approver, "findings": ids}


@flow(name="rescreen-sanctions")
def rescreen_sanctions(force: bool = False) -> dict:
    """Screen every partner (except rejected ones) against the list when it changed since they were screened."""
    sdn = load_sanctions_list()
    record_list_version(sdn)
    totals = runs.screening_totals()
    for batch in runs.batches(runs.partners_to_screen()):
        runs.add(totals, screen_partners(batch, force=force))
    totals["auto"], totals["review"] = act_on_new_findings(totals["opened"], load_policy())
    create_markdown_artifact(rescreen_report(sdn, totals), key="sanctions-rescreen")
    return {**totals, "list_date": sdn.list_date, "list_checksum": sdn.checksum}
