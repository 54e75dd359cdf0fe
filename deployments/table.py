"""Every deployment, as data: which flow, when it runs (schedule or event), its parameters and limits.

`partnerflow up` serves this table (deployments/__init__.py builds the deployments from it);
a team deploying to a work pool deploys the same table. Entrypoints are module paths, so a run
imports the installed package rather than a file relative to wherever the process started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from partnerflow.tasks.shared import events


@dataclass(frozen=True)
class OnEvent:
    """Run when an event arrives; `parameters` are Jinja templates over the event."""

    event: str
    resource: str  # a prefect.resource.id pattern
    parameters: dict[str, str]


@dataclass(frozen=True)
class Deployment:
    name: str
    stage: str
    flow: str  # "module:function" under partnerflow.flows
    description: str
    cron: str | None = None
    on_event: OnEvent | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Scheduled sweeps never overlap themselves: a slow run makes the next one wait, not double up.
    concurrency_limit: int | None = None
    # Safe to run again from the start after its process died (every effect is keyed, nothing is done
    # twice): a crashed run is rescheduled by itself, a bounded number of times (partnerflow/automations.py).
    # Left False where a person should look first (money leaving through a rail).
    retry_on_crash: bool = False


APPLICATION = OnEvent(events.PARTNER_APPLIED, "partnerflow.application.*",
                      {"application_id": "{{ event.payload.application_id }}"})
CONTRACT = OnEvent(events.CONTRACT_SIGNED, "partnerflow.contract.*", {"contract_id": "{{ event.payload.contract_id }}"})
FINDING = OnEvent(events.COMPLIANCE_FINDING, "partnerflow.partner.*", {"partner_id": "{{ event.payload.partner_id }}"})

DEPLOYMENTS: tuple[Deployment, ...] = (
    # every stage's approval forms: the safe default when nobody answers in time
    Deployment("expire-unanswered-approvals", "approvals", "approvals:expire_unanswered_approvals",
               "Apply the safe default to approval forms nobody answered in time (never an approval).",
               cron="*/10 * * * *", concurrency_limit=1, retry_on_crash=True),
    # discovery
    Deployment("import-prospects", "discovery", "discovery:import_prospects",
               "Import candidate partners from a CSV file on the server (csv_path); bad rows are reported by line, "
               "a re-import updates.", retry_on_crash=True),
    Deployment("enrich-prospects", "discovery", "discovery:enrich_prospects",
               "Fetch each new prospect's own page (politely), extract contacts and signals, and score the fit "
               "with reasons.", retry_on_crash=True),
    Deployment("rescore-prospects", "discovery", "discovery:rescore_prospects",
               "Score prospects again after editing the scoring policy (no page is fetched).", retry_on_crash=True),
    # outreach; business hours are checked per recipient at send time
    Deployment("send-due-outreach", "outreach", "outreach:send_due_outreach",
               "Send due outreach sequence steps (suppression, stop rules, daily cap, business hours).",
               cron="5 * * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("load-sequences", "outreach", "outreach:load_sequences",
               "Load templates/outreach/sequences/*; a changed file becomes a new version.", retry_on_crash=True),
    Deployment("enroll-prospects", "outreach", "outreach:enroll_prospects",
               "Enroll prospects into a sequence (optionally by ids or a minimum score).", retry_on_crash=True),
    # contracting
    Deployment("contract-application", "contracting", "contracting:contract_application",
               "Screen, decide (policy or a person), generate the contract and send it for signature.",
               on_event=APPLICATION, retry_on_crash=True),
    Deployment("signature-sweeps", "contracting", "contracting_sweeps:signature_sweeps",
               "Remind unsigned signers, expire overdue requests, void withdrawn applications.",
               cron="17 * * * *", concurrency_limit=1, retry_on_crash=True),
    # onboarding
    Deployment("onboard-partner", "onboarding", "onboarding:onboard_partner",
               "Activate the partner, provision tracking link and coupon, request tax and payout details, welcome.",
               on_event=CONTRACT, retry_on_crash=True),
    Deployment("monitor-activation", "onboarding", "onboarding:monitor_activation",
               "Nudge quiet partners, mark dormant ones, reactivate on activity; funnel artifact.",
               cron="30 6 * * *", concurrency_limit=1, retry_on_crash=True),
    # compliance; the sanctions re-screen is cheap when the list did not change
    Deployment("compliance-daily", "compliance", "compliance:check_compliance",
               "Disclosure, brand rules, sanctions and fraud checks over all active partners.",
               cron="30 3 * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("compliance-one-partner", "compliance", "compliance:check_compliance",
               "Run every compliance check for one partner (set partner_id).", parameters={"partner_id": None},
               retry_on_crash=True),
    Deployment("sanctions-rescreen", "compliance", "compliance:rescreen_sanctions",
               "Re-screen every partner when the sanctions list changed (by checksum).",
               cron="0 */6 * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("compliance-review", "compliance", "compliance:review_findings",
               "A person decides on a partner's serious compliance findings.", on_event=FINDING, retry_on_crash=True),
    # payouts; the monthly batch at 06:00 UTC on the 1st pays what was payable by then
    Deployment("payout-batch-monthly", "payouts", "payouts:run_payout_batch",
               "Monthly payout batch: build, approve (above the limit), pay through the rail, remit.",
               cron="0 6 1 * *", concurrency_limit=1),
    Deployment("payout-batch", "payouts", "payouts:run_payout_batch",
               "Manual payout batch (optionally for a given period_end).", concurrency_limit=1),
    Deployment("compute-commissions-daily", "payouts", "payouts_commissions:compute_commissions",
               "Compute commissions for new conversions, apply reversals, release locked commissions.",
               cron="30 5 * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("compute-commissions", "payouts", "payouts_commissions:compute_commissions", "Compute commissions now.",
               retry_on_crash=True),
    Deployment("import-conversions", "payouts", "payouts_commissions:import_conversions",
               "Import a CSV of conversions (bad rows reported by line).", retry_on_crash=True),
    Deployment("dry-run-rules", "payouts", "payouts_commissions:dry_run_rules",
               "Proposed commission rules vs computed, per partner; changes nothing.", retry_on_crash=True),
    Deployment("reconcile-payout-rails-hourly", "payouts", "payouts_reconcile:reconcile_payout_rails",
               "Poll PayPal for payouts still processing and mark them paid or failed.",
               cron="15 * * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("recover-payout-batches-hourly", "payouts", "payouts_recovery:recover_payout_batches",
               "Resume every approved payout batch with payouts still open (by id), remit those that finish, "
               "and mail the team about payouts whose outcome stays unclear.",
               cron="45 * * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("reconcile-payout-rails", "payouts", "payouts_reconcile:reconcile_payout_rails",
               "Reconcile now; pass bank_report=<path> to apply a SEPA pain.002/camt.053/camt.054 file.",
               retry_on_crash=True),
    # compliance page checks shared by the workers of a pool: one chunk run per 100 partners; a fan-out
    # run again finds its chunk runs (keyed by its flow run id) instead of starting more
    Deployment("check-pages-fanout", "compliance", "compliance_chunks:check_pages_fanout",
               "Check every active partner's pages, one check-pages-chunk run per chunk of partners "
               "(workers share them; the fan-out itself needs a slot too).", retry_on_crash=True),
    Deployment("check-pages-chunk", "compliance", "compliance_chunks:check_pages_chunk",
               "Check these partners' pages (partner_ids): disclosure and brand rules; started by check-pages-fanout.",
               retry_on_crash=True),
    # hand-offs and mail every stage shares
    Deployment("relay-events", "shared", "handoffs:relay_events",
               "Send hand-off events (partner.applied, contract.signed, ...) recorded but not yet relayed to Prefect.",
               cron="*/5 * * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("settle-unconfirmed-mail", "shared", "mail_sweeps:sweep_unconfirmed_mail",
               "Settle one-off mail whose send was never confirmed, or mark it failed and tell the team (never "
               "re-sent).", cron="*/15 * * * *", concurrency_limit=1, retry_on_crash=True),
    # reports
    Deployment("weekly-program-report", "reports", "reports:weekly_program_report",
               "Last week per partner (clicks, conversions, revenue, refunds, commission, EPC, AOV) against the week "
               "before, top and bottom performers, newly dormant partners, the recruitment funnel and charts; "
               "CSV/XLSX in the reports folder. period_end=<a day of another week> reports that week.",
               cron="0 7 * * 1", concurrency_limit=1, retry_on_crash=True),
    # growth: tier promotion and bonuses
    Deployment("grant-bonuses-daily", "growth", "growth:grant_bonuses",
               "Grant signing bonuses of signed contracts and performance bonuses of complete months (once each); "
               "they are paid as commission lines after the lock period.",
               cron="45 5 * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("grant-bonus", "growth", "growth:grant_bonus",
               "Grant one partner a one-off bonus (contest prize, goodwill) with the reason they see; the same key "
               "again grants nothing.", retry_on_crash=True),
    Deployment("review-tiers-monthly", "growth", "growth:review_tiers",
               "Evaluate the tier rules for the last month and ask a person about the proposed promotions and "
               "demotions (evidence in the form); approved ones get an amendment sent for signature.",
               cron="0 7 1 * *", concurrency_limit=1),
    Deployment("apply-tier-changes-daily", "growth", "growth:apply_tier_changes",
               "Send amendments of approved tier changes; apply signed promotions and demotions whose notice "
               "period is over.", cron="0 6 * * *", concurrency_limit=1, retry_on_crash=True),
    Deployment("apply-tier-changes-on-signature", "growth", "growth:apply_tier_changes",
               "A signed contract may be a tier amendment: apply the promotions signed (from the signature).",
               on_event=CONTRACT, concurrency_limit=1, retry_on_crash=True),
    # news to partners
    Deployment("send-broadcast", "news", "news:send_broadcast",
               "Send a templated announcement (new offer, coupon, policy change) to a segment of partners, after a "
               "person approves the audience and the preview; running it again with the same key mails nobody twice.",
               retry_on_crash=True),
    Deployment("weekly-performance-email", "news", "news:send_weekly_performance",
               "Each active partner's clicks, conversions and commission for the week that ended, against the week "
               "before (partners turn it off in the portal).", cron="0 8 * * 1", concurrency_limit=1,
               retry_on_crash=True),
)
