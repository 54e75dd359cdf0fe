"""The partner's tax form and payout details, sent through the onboarding form (/onboarding/{token}).

Validation names every wrong field; what is stored is encrypted (partnerflow.secrets.encrypt)
and only masked values are ever shown. Every change of payout details is audited field by field (masked)
and holds the partner's payouts: an onboarding-form change until a person confirms it, a change confirmed
in the partner portal for the cooling-off period (`payout_details_holds` says which and why).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import update
from sqlmodel import Session, select

from partnerflow.models import Partner, audit, session_scope, utcnow
from partnerflow.models.onboarding import Onboarding, TaxFormStatus
from partnerflow.models.portal import PayoutDetailsChange
from partnerflow.secrets import decrypt, encrypt, mask, token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.identity import normalise_email
from partnerflow.tasks.shared.mail import deliver

PAYOUT_METHODS = ("sepa", "paypal", "stripe")
log = logging.getLogger(__name__)


class OnboardingInvalid(ValueError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _text(data: dict[str, Any], key: str) -> str:
    return str(data.get(key) or "").strip()


def validate_tax_form(kind: str, data: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(clean tax form, errors)."""
    errors: dict[str, str] = {}
    form = {"kind": kind, "name": _text(data, "tax_name"), "address": _text(data, "tax_address")}
    if not form["name"]:
        errors["tax_name"] = "The name on the tax form is required."
    if not form["address"]:
        errors["tax_address"] = "The address on the tax form is required."
    tin = re.sub(r"[\s-]", "", _text(data, "tin"))
    if kind == "W-9":
        if not re.fullmatch(r"\d{9}", tin):
            errors["tin"] = "A W-9 needs a 9-digit SSN or EIN."
    else:
        form["citizenship"] = _text(data, "citizenship").upper()
        if not re.fullmatch(r"[A-Z]{2}", form["citizenship"]):
            errors["citizenship"] = "Country of citizenship is required as a two-letter ISO code."
        if not tin:
            errors["tin"] = "A W-8BEN needs the foreign tax identifying number."
    form["tin"] = tin
    if str(data.get("certify") or "").lower() not in ("1", "true", "on", "yes"):
        errors["certify"] = "You must certify that the tax information is correct."
    return form, errors


def validate_currency(data: dict[str, Any], method: str) -> tuple[str | None, dict[str, str]]:
    """(the ISO 4217 currency the partner asked to be paid in, or None to keep theirs; errors).
    SEPA pays euro only: a SEPA partner who names nothing is paid in EUR, another currency is refused."""
    import pycountry  # on first use: importing it is slow for every process that never validates a form

    code = _text(data, "payout_currency").upper()
    if not code:
        return ("EUR" if method == "sepa" else None), {}
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        return None, {"payout_currency": "Choose a currency by its three-letter ISO code, e.g. EUR or USD."}
    if method == "sepa" and code != "EUR":
        return None, {"payout_currency": "SEPA transfers are paid in EUR only."}
    return code, {}


def validate_payout(data: dict[str, Any]) -> tuple[dict[str, str], str, dict[str, str]]:
    """(clean payout details, masked summary, errors)."""
    errors: dict[str, str] = {}
    method = _text(data, "payout_method").lower()
    details: dict[str, str] = {"method": method}
    masked = ""
    if method == "sepa":
        holder = _text(data, "account_holder")
        if not holder:
            errors["account_holder"] = "The account holder's name is required."
        try:
            iban = IBAN(_text(data, "iban")).compact
        except SchwiftyException:
            iban = ""
            errors["iban"] = "This is not a valid IBAN."
        bic = _text(data, "bic").upper()
        if bic:
            try:
                bic = str(BIC(bic))
            except SchwiftyException:
                errors["bic"] = "This is not a valid BIC."
        details.update(account_holder=holder, iban=iban, bic=bic)
        masked = f"IBAN {mask(iban)}"
    elif method == "paypal":
        email = normalise_email(_text(data, "paypal_email"))
        if not email:
            errors["paypal_email"] = "A valid PayPal email address is required."
        details.update(paypal_email=email or "", email=email or "")
        masked = f"PayPal {mask(email or '', keep=6)}"
    elif method == "stripe":
        account = _text(data, "stripe_account_id")
        if not re.fullmatch(r"acct_[A-Za-z0-9]+", account):
            errors["stripe_account_id"] = "A Stripe connected account id starts with acct_."
        details.update(stripe_account_id=account)
        masked = f"Stripe {mask(account)}"
    else:
        errors["payout_method"] = f"Choose a payout method: {', '.join(PAYOUT_METHODS)}."
    return details, masked, errors


def find_onboarding(token: str) -> Onboarding | None:
    with session_scope() as session:
        return session.exec(select(Onboarding).where(Onboarding.token_hash.in_(token_hashes(token)))).first()


class LinkUsed(PermissionError):
    """The onboarding link was already used; the team reopens it when the partner needs to change details."""


def submit_onboarding(token: str, data: dict[str, Any], *, ip: str | None = None) -> Onboarding:
    """Store the tax form and payout details encrypted; raise OnboardingInvalid naming every wrong field.

    The link works once (LinkUsed afterwards). Details that replace ones we had hold the partner's payouts
    until a person confirms (`confirm_payout_details`); the partner's address on file and the team are told.
    """
    row = find_onboarding(token)
    if row is None:
        raise LookupError("unknown onboarding link")
    if row.expires_at <= utcnow():
        raise PermissionError("this onboarding link has expired")
    if row.completed_at is not None:
        raise LinkUsed("this onboarding link was already used")
    form, errors = validate_tax_form(row.tax_form_kind, data)
    details, masked, payout_errors = validate_payout(data)
    errors.update(payout_errors)
    currency, currency_errors = validate_currency(data, details["method"])
    errors.update(currency_errors)
    if errors:
        raise OnboardingInvalid(errors)
    now = utcnow()
    with session_scope() as session:
        # Claim the link: of two submissions racing on it, exactly one gets the row.
        claimed = session.execute(update(Onboarding).where(Onboarding.id == row.id, Onboarding.completed_at.is_(None))
                                  .values(completed_at=now)).rowcount
        if claimed != 1:
            raise LinkUsed("this onboarding link was already used")
        row = session.get(Onboarding, row.id)
        row.tax_form_encrypted = encrypt(json.dumps({**form, "submitted_at": now.isoformat(), "ip": ip}))
        row.tax_form_masked = f"{row.tax_form_kind}, TIN {mask(form['tin'])}"
        partner = session.get(Partner, row.partner_id)
        previous = partner.payout_details_masked if partner.payout_details_encrypted else None
        changes = field_changes(partner, details, currency or partner.payout_currency)
        partner.tax_form_status = TaxFormStatus.RECEIVED
        partner.payout_method = details["method"]
        previous_currency = partner.payout_currency
        partner.payout_currency = currency or partner.payout_currency
        partner.payout_details_encrypted = encrypt(json.dumps(details))
        partner.payout_details_masked = masked
        partner.updated_at = now
        if previous is not None:
            row.payout_hold_since, row.payout_confirmed_by, row.payout_confirmed_at = now, None, None
        session.add(row)
        session.add(partner)
        entry = audit(session, actor=f"partner:{partner.id}", action="onboarding.details_received",
                      subject_type="partner", subject_id=partner.id,
                      details={"tax_form": row.tax_form_masked, "payout": masked, "ip": ip,
                               "payout_currency": partner.payout_currency})
        if previous is not None:
            audit(session, actor=f"partner:{partner.id}", action="onboarding.payout_details_changed",
                  subject_type="partner", subject_id=partner.id,
                  details={"from": previous, "to": masked, "ip": ip, "payouts_held": True,
                           "currency_from": previous_currency, "currency_to": partner.payout_currency,
                           "fields": changes})
        session.flush()
        notice = {"key": f"payout-details:{partner.id}:{entry.id}", "partner_id": partner.id,
                  "to_email": partner.email, "name": partner.contact_name or partner.legal_name,
                  "legal_name": partner.legal_name, "previous": previous, "masked": masked, "ip": ip or "unknown",
                  "at": f"{now:%Y-%m-%d %H:%M} UTC", "team_email": get_settings().team_email}
    _tell_about_details(notice)
    with session_scope() as session:
        return session.get(Onboarding, row.id)


def _tell_about_details(notice: dict[str, Any]) -> None:
    """The partner's address on file hears of every save; the team hears of a change. A mail that cannot
    go now does not undo the save: the hold already protects the money."""
    mails = [(notice["key"], notice["to_email"], "onboarding/payout_details_saved")]
    if notice["previous"] is not None:
        mails.append((notice["key"] + ":team", get_settings().team_email, "onboarding/payout_details_changed_team"))
    for key, to_email, template in mails:
        try:
            deliver(key, kind="payout_details_notice", to_email=to_email, template=template, context=notice,
                    partner_id=notice["partner_id"])
        except Exception:  # recorded as pending/failed by deliver; the sweep and the audit trail keep it
            log.exception("payout details notice %s could not be sent now", key)


def confirm_payout_details(partner_id: int, *, actor: str, note: str = "") -> bool:
    """A person confirms changed payout details: the hold is lifted. False when nothing was held."""
    if not actor.strip():
        raise ValueError("say who confirms the payout details")
    now = utcnow()
    with session_scope() as session:
        lifted = session.execute(update(Onboarding).where(Onboarding.partner_id == partner_id,
                                                          Onboarding.payout_hold_since.is_not(None))
                                 .values(payout_hold_since=None, payout_confirmed_by=actor,
                                         payout_confirmed_at=now)).rowcount == 1
        if lifted:
            partner = session.get(Partner, partner_id)
            audit(session, actor=actor, action="onboarding.payout_details_confirmed", subject_type="partner",
                  subject_id=partner_id, details={"payout": partner.payout_details_masked, "note": note})
        return lifted


def reopen_onboarding(partner_id: int, *, actor: str) -> None:
    """Let the partner use their link once more (e.g. to change bank account), for the usual lifetime."""
    with session_scope() as session:
        row = session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).one()
        row.completed_at = None
        row.expires_at = utcnow() + timedelta(days=get_settings().onboarding.onboarding_link_days)
        session.add(row)
        audit(session, actor=actor, action="onboarding.link_reopened", subject_type="partner", subject_id=partner_id,
              details={"expires_at": row.expires_at.isoformat()})


def payout_summary(partner_id: int) -> str:
    """The masked payout details the partner gave, for the thank-you page."""
    with session_scope() as session:
        return session.get(Partner, partner_id).payout_details_masked or ""


# --- which fields changed (masked), and what holds payouts after a change ---------------------------

# The payout details' fields, as the audit log names them; method and currency are not secret and shown whole.
DETAIL_FIELDS = {"account_holder": 4, "iban": 4, "bic": 4, "paypal_email": 6, "stripe_account_id": 4}


def stored_details(partner: Partner) -> dict[str, str]:
    """The partner's payout details on file, decrypted ({} when none, or written under a retired key)."""
    if not partner.payout_details_encrypted:
        return {}
    try:
        return json.loads(decrypt(partner.payout_details_encrypted)) or {}
    except (InvalidToken, ValueError):
        log.warning("payout details of partner %s cannot be decrypted any more", partner.id)
        return {}


def field_changes(partner: Partner, new: dict[str, str], new_currency: str) -> dict[str, dict[str, str]]:
    """{field: {"from": masked old, "to": masked new}} for every payout-detail field that differs."""
    old = stored_details(partner)
    changes: dict[str, dict[str, str]] = {}
    if (partner.payout_method or "") != (new.get("method") or ""):
        changes["method"] = {"from": partner.payout_method or "", "to": new.get("method") or ""}
    if partner.payout_currency != new_currency:
        changes["currency"] = {"from": partner.payout_currency, "to": new_currency}
    for name, keep in DETAIL_FIELDS.items():
        before, after = old.get(name) or "", new.get(name) or ""
        if before != after:
            changes[name] = {"from": mask(before, keep=keep), "to": mask(after, keep=keep)}
    return changes


def apply_payout_details(session: Session, partner: Partner, details: dict[str, str], masked: str, currency: str,
                         *, actor: str, via: str, hold_since: datetime | None,
                         extra: dict[str, Any] | None = None) -> dict[str, dict[str, str]]:
    """Replace the partner's payout details (encrypted) in the caller's transaction; the audit log gets each
    changed field, masked. `hold_since` holds the partner's payouts (tasks/compliance/blockers.py) from then,
    unless a hold a person must lift is already in place. Returns the masked field changes."""
    changes = field_changes(partner, details, currency)
    previous = partner.payout_details_masked
    partner.payout_method = details["method"]
    partner.payout_currency = currency
    partner.payout_details_encrypted = encrypt(json.dumps(details))
    partner.payout_details_masked = masked
    partner.updated_at = utcnow()
    session.add(partner)
    if hold_since is not None:
        onboarding = session.exec(select(Onboarding).where(Onboarding.partner_id == partner.id)).one()
        if onboarding.payout_hold_since is None or _timed_hold_of(session, partner.id, onboarding.payout_hold_since):
            onboarding.payout_hold_since, onboarding.payout_confirmed_by = hold_since, None
            onboarding.payout_confirmed_at = None
            session.add(onboarding)
    audit(session, actor=actor, action="onboarding.payout_details_changed", subject_type="partner",
          subject_id=partner.id, details={"via": via, "from": previous, "to": masked, "fields": changes,
                                          "payouts_held": hold_since is not None, **(extra or {})})
    return changes


def _timed_hold_of(session: Session, partner_id: int, since: datetime) -> PayoutDetailsChange | None:
    """The portal change whose cooling-off started the hold `since`, if that is what the hold is."""
    rows = session.exec(select(PayoutDetailsChange).where(PayoutDetailsChange.partner_id == partner_id,
                                                          PayoutDetailsChange.confirmed_at.is_not(None))).all()
    return next((row for row in rows if row.confirmed_at == since), None)


def payout_details_holds(session: Session, partner_ids: list[int], now: datetime | None = None
                         ) -> dict[int, list[str]]:
    """{partner_id: [reason]} for partners whose payouts wait because their payout details changed: until
    a person confirms an onboarding-form change, until the cooling-off ends for a change made and confirmed
    in the portal (or a person confirms it sooner)."""
    now = now or utcnow()
    ids = sorted({int(p) for p in partner_ids})
    holds: dict[int, list[str]] = {}
    for start in range(0, len(ids), 500):  # keep IN lists small on every backend
        chunk = ids[start:start + 500]
        held = dict(session.exec(select(Onboarding.partner_id, Onboarding.payout_hold_since)
                                 .where(Onboarding.partner_id.in_(chunk), Onboarding.payout_hold_since.is_not(None))
                                 ).all())
        timed = {(row.partner_id, row.confirmed_at): row.hold_until for row in session.exec(
            select(PayoutDetailsChange).where(PayoutDetailsChange.partner_id.in_(list(held)),
                                              PayoutDetailsChange.confirmed_at.is_not(None)))}
        for pid, since in held.items():
            if (pid, since) not in timed:
                holds[pid] = [f"payout details changed on {since:%Y-%m-%d}: held until a person confirms them"]
            elif timed[(pid, since)] > now:
                holds[pid] = [f"payout details changed in the portal on {since:%Y-%m-%d}: held until "
                              f"{timed[(pid, since)]:%Y-%m-%d %H:%M} UTC (cooling-off)"]
    return holds
