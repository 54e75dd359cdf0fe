"""Scheduled sweeps over open signature requests: reminders, expiry, and voiding for withdrawn applications.

No flow waits days for a signature: requests are rows, and this sweep (hourly) looks at them.
Each sweep is one task over a batch of rows (a task run per row would cost the server more
than the work). Every effect is keyed so a re-run does nothing twice: reminders by
`sign-reminder:{request_id}:{n}`, status changes by compare-and-set UPDATEs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import update
from sqlmodel import select

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Contract,
    ContractStatus,
    Partner,
    SignatureRequest,
    audit,
    session_scope,
    utcnow,
)
from partnerflow.providers.errors import PermanentError, ProviderError, RetryableError
from partnerflow.providers.esign import get_esign_provider
from partnerflow.settings import get_settings

OPEN = ("pending", "sent")


def expires_at(row: SignatureRequest) -> datetime:
    return row.expires_at or row.created_at + timedelta(days=get_settings().contracting.signing_expiry_days)


def _close(row_id: int, status: str, actor: str, action: str, details: dict) -> bool:
    """Void at the provider first, then move our row (and contract) to `status`; False if left open.

    When the provider refuses because the request is already complete, the signed callback
    is on its way: the row stays open for it instead of being closed.
    """
    with session_scope() as session:
        row = session.get(SignatureRequest, row_id)
        if row is None or row.status not in OPEN:
            return False
    if row.provider_request_id:
        try:
            get_esign_provider(get_settings().esign, row.provider).void(row.provider_request_id, details.get("reason") or action)
        except RetryableError:
            return False  # next sweep tries again
        except PermanentError as exc:
            if "404" not in exc.reason:  # gone at the provider is as good as voided
                with session_scope() as session:
                    audit(session, actor=actor, action="signature.void_refused", subject_type="signature_request",
                          subject_id=row_id, details={**details, "provider_reason": exc.reason})
                return False
    with session_scope() as session:
        moved = session.execute(update(SignatureRequest)
                                .where(SignatureRequest.id == row_id, SignatureRequest.status.in_(OPEN))
                                .values(status=status)).rowcount == 1
        if not moved:
            return False
        session.execute(update(Contract)
                        .where(Contract.id == row.contract_id, Contract.status.in_(
                            (ContractStatus.GENERATED, ContractStatus.SENT)))
                        .values(status=ContractStatus.EXPIRED if status == "expired" else ContractStatus.VOIDED))
        audit(session, actor=actor, action=action, subject_type="signature_request", subject_id=row_id,
              details={"contract_id": row.contract_id, "provider": row.provider, **details})
    return True


def _how_to_sign(row: SignatureRequest) -> str:
    if row.provider == "builtin":  # the link is derived from the row, so the reminder can carry it again
        from partnerflow.providers.esign.builtin import signing_token, signing_url

        return f"You can sign it here: {signing_url(signing_token(row))}"
    vendor = {"dropbox_sign": "Dropbox Sign", "docusign": "DocuSign", "documenso": "Documenso"}.get(row.provider, row.provider)
    return f"Please use the link in the email you received from {vendor}."


@task(name="send-signing-reminders", retries=2, retry_delay_seconds=30)
def send_signing_reminders(now: datetime | None = None) -> int:
    """Remind signers every `signing_reminder_days` while unsigned, at most `signing_max_reminders` times."""
    from partnerflow.tasks.shared.mail import deliver

    settings = get_settings()
    now = now or utcnow()
    every = timedelta(days=settings.contracting.signing_reminder_days)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest, Contract, Partner)
                            .join(Contract, Contract.id == SignatureRequest.contract_id)
                            .join(Partner, Partner.id == Contract.partner_id)
                            .where(SignatureRequest.status.in_(OPEN),
                                   SignatureRequest.reminders_sent < settings.contracting.signing_max_reminders,
                                   SignatureRequest.created_at <= now - every)).all()
    sent = 0
    for row, _contract, partner in rows:
        n = row.reminders_sent + 1
        if row.created_at + every * n > now or expires_at(row) <= now:
            continue
        how = _how_to_sign(row)
        deliver(f"sign-reminder:{row.id}:{n}", kind="signing_reminder", to_email=row.signer_email,
                template="contracting/signing_reminder", partner_id=partner.id,
                context={"signer_name": row.signer_name, "legal_name": partner.legal_name,
                         "how_to_sign": how, "expires_on": expires_at(row).strftime("%d %B %Y")})
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
    """Expire requests unsigned after `signing_expiry_days` (or their own expires_at), voiding them at the provider."""
    settings = get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.contracting.signing_expiry_days)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest).where(SignatureRequest.status.in_(OPEN))
                            .where((SignatureRequest.expires_at <= now) |
                                   (SignatureRequest.expires_at.is_(None) & (SignatureRequest.created_at <= cutoff)))
                            ).all()
    return sum(_close(row.id, "expired", "system", "signature.expired", {"reason": "not signed in time"})
               for row in rows)


def void_for_application(application_id: int, reason: str, actor: str = "system") -> int:
    """Void every open signature request of this application's contracts (call it on withdrawal)."""
    with session_scope() as session:
        ids = session.exec(select(SignatureRequest.id)
                           .join(Contract, Contract.id == SignatureRequest.contract_id)
                           .where(Contract.application_id == application_id,
                                  SignatureRequest.status.in_(OPEN))).all()
    return sum(_close(row_id, "voided", actor, "signature.voided",
                      {"reason": reason, "application_id": application_id}) for row_id in ids)


@task(name="void-withdrawn", retries=2, retry_delay_seconds=30)
def void_withdrawn() -> int:
    """Void open signature requests whose application was withdrawn (catches what a withdrawal left open)."""
    with session_scope() as session:
        ids = session.exec(select(Application.id).distinct()
                           .join(Contract, Contract.application_id == Application.id)
                           .join(SignatureRequest, SignatureRequest.contract_id == Contract.id)
                           .where(Application.status == ApplicationStatus.WITHDRAWN,
                                  SignatureRequest.status.in_(OPEN))).all()
    return sum(void_for_application(app_id, "application withdrawn") for app_id in ids)


@task(name="finish-stored-completions", retries=2, retry_delay_seconds=30)
def finish_stored_completions(now: datetime | None = None) -> int:
    """Complete requests whose verified 'signed' callback was stored but not acted on (e.g. the PDF
    download failed and the provider stopped retrying), so a signature is never lost."""
    from partnerflow.models import WebhookEvent
    from partnerflow.providers.esign import documenso, docusign, dropbox_sign
    from partnerflow.providers.esign.saas import complete_from_provider

    completion_of = {"dropbox_sign": dropbox_sign.completion, "docusign": docusign.completion,
                     "documenso": documenso.completion}
    # Leave fresh events to the request that is handling them right now.
    settled = (now or utcnow()) - timedelta(minutes=10)
    with session_scope() as session:
        events = session.exec(select(WebhookEvent).where(WebhookEvent.provider.in_(tuple(completion_of)),
                                                         WebhookEvent.processed_at.is_(None),
                                                         WebhookEvent.received_at <= settled)).all()
    done = 0
    for event in events:
        target = completion_of[event.provider](event.payload)
        if target is None:
            continue
        try:
            outcome = complete_from_provider(get_esign_provider(get_settings().esign, event.provider), event.id, *target)
        except ProviderError as exc:
            get_run_logger().warning("stored %s event %s not completed yet: %s", event.provider, event.id, exc.reason)
            continue
        done += outcome == "completed"
    return done


@task(name="poll-unsigned", retries=2, retry_delay_seconds=30)
def poll_unsigned(now: datetime | None = None, limit: int = 200) -> int:
    """Ask the SaaS provider about requests unsigned `esign_poll_after_hours` after sending, in case
    every callback was lost (wrong URL, provider gave up); a signed one is completed as if called back."""
    from partnerflow.providers.esign.saas import complete_from_provider

    cutoff = (now or utcnow()) - timedelta(hours=get_settings().esign.esign_poll_after_hours)
    with session_scope() as session:
        rows = session.exec(select(SignatureRequest)
                            .where(SignatureRequest.status == "sent",
                                   SignatureRequest.provider.in_(("dropbox_sign", "docusign", "documenso")),
                                   SignatureRequest.provider_request_id.is_not(None),
                                   SignatureRequest.created_at <= cutoff)
                            .order_by(SignatureRequest.id).limit(limit)).all()
    completed = 0
    for row in rows:
        try:
            provider = get_esign_provider(get_settings().esign, row.provider)
            if provider.is_signed(row.provider_request_id):
                outcome = complete_from_provider(provider, None, row.provider_request_id, None, {"source": "poll"})
                completed += outcome == "completed"
        except ProviderError as exc:
            get_run_logger().warning("polling %s request %s: %s", row.provider, row.id, exc.reason)
    return completed


@flow(name="signature-sweeps")
def signature_sweeps() -> dict[str, int]:
    """Hourly: finish stored signed callbacks and poll quiet SaaS requests, void for withdrawn
    applications, expire overdue requests, remind the rest."""
    try:
        completed = finish_stored_completions() + poll_unsigned()
        voided = void_withdrawn()
        expired = expire_signature_requests()
        reminded = send_signing_reminders()
    except ProviderError as exc:
        get_run_logger().warning("signature sweep stopped: %s", exc.reason)
        raise
    summary = {"completed": completed, "voided": voided, "expired": expired, "reminded": reminded}
    get_run_logger().info("signature sweeps: %s", summary)
    settings = get_settings()
    create_markdown_artifact(
        key="signature-sweeps",
        description="What the last signature sweep did",
        markdown="\n".join([
            "# Signature sweep",
            "| what | count |", "|---|---|",
            f"| completed from stored callbacks or polling | {completed} |",
            f"| voided (application withdrawn) | {voided} |",
            f"| expired after {settings.contracting.signing_expiry_days} days | {expired} |",
            f"| reminders sent (every {settings.contracting.signing_reminder_days} days, at most "
            f"{settings.contracting.signing_max_reminders}) | {reminded} |",
        ]))
    return summary
