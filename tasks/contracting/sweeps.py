"""Sweeps over open signature requests: completions whose callback was lost, withdrawals, expiry, reminders.

Each sweep is one task over a batch of rows (a task run per row would cost the server more
than the work). Every effect is keyed so a re-run does nothing twice: reminders by
`sign-reminder:{request_id}:{n}`, status changes by compare-and-set UPDATEs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import get_run_logger, task
from sqlalchemy import update
from sqlmodel import select

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    Partner,
    SignatureRequest,
    WebhookEvent,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.models.contracting import OPEN_SIGNATURE_STATUSES, SignatureStatus
from partnerflow.providers.errors import PermanentError, ProviderError, RetryableError
from partnerflow.providers.esign import registry
from partnerflow.providers.esign.base import Target
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import esign_provider, reference_for
from partnerflow.tasks.contracting.webhooks import complete_from_provider
from partnerflow.tasks.shared import limits
from partnerflow.tasks.shared.mail import deliver

CLOSED_CONTRACT = {SignatureStatus.EXPIRED: ContractStatus.EXPIRED, SignatureStatus.VOIDED: ContractStatus.VOIDED}


def expires_at(row: SignatureRequest) -> datetime:
    return row.expires_at or row.created_at + timedelta(days=get_settings().contracting.signing_expiry_days)


def close_request(row_id: int, status: SignatureStatus, actor: str, action: str, details: dict) -> bool:
    """Void at the vendor first, then move our row (and contract) to `status`; False if left open.

    When the vendor refuses because the request is already complete, the signed callback
    is on its way: the row stays open for it instead of being closed.
    """
    with session_scope() as session:
        row = session.get(SignatureRequest, row_id)
        if row is None or row.status not in OPEN_SIGNATURE_STATUSES:
            return False
    if row.provider_request_id:
        try:
            limits.take(limits.ESIGN, row.provider)
            esign_provider(row.provider).void(row.provider_request_id, details.get("reason") or action)
        except RetryableError:
            return False  # next sweep tries again
        except PermanentError as exc:
            if "404" not in exc.reason:  # gone at the vendor is as good as voided
                with session_scope() as session:
                    audit(session, actor=actor, action="signature.void_refused", subject_type="signature_request",
                          subject_id=row_id, details={**details, "provider_reason": exc.reason})
                return False
    with session_scope() as session:
        moved = session.execute(update(SignatureRequest)
                                .where(SignatureRequest.id == row_id,
                                       SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))
                                .values(status=status)).rowcount == 1
        if not moved:
            return False
        session.execute(update(Contract)
                        .where(Contract.id == row.contract_id,
                               Contract.status.in_((ContractStatus.GENERATED, ContractStatus.SENT)))
                        .values(status=CLOSED_CONTRACT[status]))
        audit(session, actor=actor, action=action, subject_type="signature_request", subject_id=row_id,
              details={"contract_id": row.contract_id, "provider": row.provider, **details})
    return True


def how_to_sign(row: SignatureRequest) -> str:
    """The reminder's line: where the vendor's mail came from, or our own link (newest key; older links still work)."""
    vendor = registry.PROVIDERS.get(row.provider)
    if vendor is None or vendor.remote:
        return f"Please use the link in the email you received from {registry.title(row.provider)}."
    return f"You can sign it here: {esign_provider(row.provider).signing_link(reference_for(row)).url}"


@task(name="send-signing-reminders", retries=2, retry_delay_seconds=30)
def send_signing_reminders(now: datetime | None = None) -> int:
    """Remind signers every `signing_reminder_days` while unsigned, at most `signing_max_reminders` times."""
    settings = get_settings().contracting
    now = now or utcnow()
    every = timedelta(days=settings.signing_reminder_days)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest, Partner)
                            .join(Contract, Contract.id == SignatureRequest.contract_id)
                            .join(Partner, Partner.id == Contract.partner_id)
                            .where(SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES),
                                   SignatureRequest.reminders_sent < settings.signing_max_reminders,
                                   SignatureRequest.created_at <= now - every)).all()
    sent = 0
    for row, partner in rows:
        n = row.reminders_sent + 1
        if row.created_at + every * n > now or expires_at(row) <= now:
            continue
        deliver(f"sign-reminder:{row.id}:{n}", kind="signing_reminder", to_email=row.signer_email,
                template="contracting/signing_reminder", partner_id=partner.id,
                context={"signer_name": row.signer_name, "legal_name": partner.legal_name,
                         "how_to_sign": how_to_sign(row), "expires_on": expires_at(row).strftime("%d %B %Y")})
        with session_scope() as session:
            counted = session.execute(update(SignatureRequest)
                                      .where(SignatureRequest.id == row.id, SignatureRequest.reminders_sent == n - 1)
                                      .values(reminders_sent=n)).rowcount == 1
            if counted:
                audit(session, actor="system", action="signature.reminded", subject_type="signature_request",
                      subject_id=row.id, details={"reminder": n})
                sent += 1
    return sent


@task(name="expire-signature-requests", retries=2, retry_delay_seconds=30)
def expire_signature_requests(now: datetime | None = None) -> int:
    """Expire requests unsigned after `signing_expiry_days` (or their own expires_at), voiding them at the vendor."""
    now = now or utcnow()
    cutoff = now - timedelta(days=get_settings().contracting.signing_expiry_days)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest).where(SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))
                            .where((SignatureRequest.expires_at <= now) |
                                   (SignatureRequest.expires_at.is_(None) & (SignatureRequest.created_at <= cutoff)))
                            ).all()
    return sum(close_request(row.id, SignatureStatus.EXPIRED, "system", "signature.expired",
                             {"reason": "not signed in time"}) for row in rows)


def void_for_application(application_id: int, reason: str, actor: str = "system") -> int:
    """Void every open signature request of this application's contracts (call it on withdrawal)."""
    with session_scope() as session:
        ids = session.exec(select(SignatureRequest.id)
                           .join(Contract, Contract.id == SignatureRequest.contract_id)
                           .where(Contract.application_id == application_id,
                                  SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))).all()
    return sum(close_request(row_id, SignatureStatus.VOIDED, actor, "signature.voided",
                             {"reason": reason, "application_id": application_id}) for row_id in ids)


@task(name="void-withdrawn", retries=2, retry_delay_seconds=30)
def void_withdrawn() -> int:
    """Void open signature requests whose application was withdrawn (catches what a withdrawal left open)."""
    with session_scope() as session:
        ids = session.exec(select(Application.id).distinct()
                           .join(Contract, Contract.application_id == Application.id)
                           .join(SignatureRequest, SignatureRequest.contract_id == Contract.id)
                           .where(Application.status == ApplicationStatus.WITHDRAWN,
                                  SignatureRequest.status.in_(OPEN_SIGNATURE_STATUSES))).all()
    return sum(void_for_application(app_id, "application withdrawn") for app_id in ids)


@task(name="finish-stored-completions", retries=2, retry_delay_seconds=30)
def finish_stored_completions(now: datetime | None = None) -> int:
    """Complete requests whose verified 'signed' callback was stored but not acted on (e.g. the PDF
    download failed and the vendor stopped retrying), so a signature is never lost."""
    # Leave fresh events to the request that is handling them right now.
    settled = (now or utcnow()) - timedelta(minutes=10)
    with session_scope() as session:
        events = session.exec(select(WebhookEvent).where(WebhookEvent.provider.in_(registry.REMOTE),
                                                         WebhookEvent.processed_at.is_(None),
                                                         WebhookEvent.received_at <= settled)).all()
    done = 0
    for event in events:
        try:
            provider = esign_provider(event.provider)
            target = provider.completion(event.payload)
            if target is not None:
                done += complete_from_provider(provider, event.id, target) == "completed"
        except ProviderError as exc:
            get_run_logger().warning("stored %s event %s not completed yet: %s", event.provider, event.id, exc.reason)
    return done


@task(name="poll-unsigned", retries=2, retry_delay_seconds=30)
def poll_unsigned(now: datetime | None = None, limit: int = 200) -> int:
    """Ask the vendors about requests unsigned `esign_poll_after_hours` after sending, in case every
    callback was lost (wrong URL, vendor gave up); a signed one is completed as if called back."""
    cutoff = (now or utcnow()) - timedelta(hours=get_settings().esign.esign_poll_after_hours)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest)
                            .where(SignatureRequest.status == SignatureStatus.SENT,
                                   SignatureRequest.provider.in_(registry.REMOTE),
                                   SignatureRequest.provider_request_id.is_not(None),
                                   SignatureRequest.created_at <= cutoff)
                            .order_by(SignatureRequest.id).limit(limit)).all()
    completed = 0
    for row in rows:
        try:
            provider = esign_provider(row.provider)
            limits.take(limits.ESIGN, provider.name)
            if provider.is_signed(row.provider_request_id):
                target = Target(row.provider_request_id, None, {"source": "poll"})
                completed += complete_from_provider(provider, None, target) == "completed"
        except ProviderError as exc:
            get_run_logger().warning("polling %s request %s: %s", row.provider, row.id, exc.reason)
    return completed


def sweep_report(summary: dict[str, int]) -> str:
    """The Markdown artifact of one sweep."""
    settings = get_settings().contracting
    return "\n".join([
        "# Signature sweep",
        "| what | count |", "|---|---|",
        f"| completed from stored callbacks or polling | {summary['completed']} |",
        f"| voided (application withdrawn) | {summary['voided']} |",
        f"| expired after {settings.signing_expiry_days} days | {summary['expired']} |",
        f"| reminders sent (every {settings.signing_reminder_days} days, at most "
        f"{settings.signing_max_reminders}) | {summary['reminded']} |",
    ])
