"""Onboarding after signature: activation, tracking link + coupon, tax form and payout details, welcome mail.

Codes are claimed with a compare-and-set UPDATE (`... WHERE tracking_code IS NULL`) on columns
with unique constraints, so two workers onboarding the same or different partners at once never
hand out one code twice: a collision raises IntegrityError and we try the next candidate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from unidecode import unidecode

from partnerflow.models import Partner, Stage, audit, session_scope, utcnow
from partnerflow.models.onboarding import Onboarding
from partnerflow.secrets import encrypt, mask, master_key, token_hash
from partnerflow.settings import get_settings

# No 0/O, 1/I/L: codes get read aloud and typed from videos.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_STOP = {"ltd", "llc", "inc", "gmbh", "ag", "sa", "sas", "bv", "plc", "co", "corp", "the", "limited", "and"}
PAYOUT_METHODS = ("sepa", "paypal", "stripe")


class OnboardingInvalid(ValueError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def tax_form_kind(country: str) -> str:
    """US persons give a W-9; everyone else a W-8BEN."""
    return "W-9" if (country or "").upper() in ("US", "PR", "GU", "VI", "AS", "MP") else "W-8BEN"


def _stem(name: str, length: int) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", unidecode(name or "").lower()) if w and w not in _STOP]
    return "".join(words)[:length] or "partner"


def _suffix(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def tracking_candidate(name: str) -> str:
    return f"{_stem(name, 12)}-{_suffix(4)}"


def coupon_candidate(name: str) -> str:
    return f"{_stem(name, 8).upper()}{_suffix(3).upper()}"


def _claim_code(partner_id: int, column: str, make, attempts: int = 50) -> str:
    for _ in range(attempts):
        with session_scope() as session:
            current = getattr(session.get(Partner, partner_id), column)
            if current:
                return current
            name = session.get(Partner, partner_id).legal_name
        candidate = make(name)
        try:
            with session_scope() as session:
                column_attr = getattr(Partner, column)
                session.execute(update(Partner).where(Partner.id == partner_id, column_attr.is_(None))
                                .values({column: candidate}))
        except IntegrityError:
            continue  # taken by another partner: draw again
    raise RuntimeError(f"could not find a free {column} for partner {partner_id} in {attempts} attempts")


def provision_codes(partner_id: int) -> tuple[str, str]:
    """The partner's tracking code and coupon code, created once (unique, human-friendly)."""
    return (_claim_code(partner_id, "tracking_code", tracking_candidate),
            _claim_code(partner_id, "coupon_code", coupon_candidate))


def tracking_url(code: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/r/{code}"


def onboarding_token(partner_id: int) -> str:
    """Derived from the installation secret: a re-sent welcome mail carries the same link; the DB keeps its hash."""
    mac = hmac.new(master_key(), f"onboarding-form:{partner_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def onboarding_url(partner_id: int) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/onboarding/{onboarding_token(partner_id)}"


def ensure_onboarding(partner_id: int) -> Onboarding:
    """The partner's onboarding row (form link, tax form kind); the tax form is marked requested."""
    with session_scope() as session:
        row = session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).first()
        if row:
            return row
        partner = session.get(Partner, partner_id)
        kind = tax_form_kind(partner.country)
        row = Onboarding(partner_id=partner_id, token_hash=token_hash(onboarding_token(partner_id)),
                         tax_form_kind=kind,
                         expires_at=utcnow() + timedelta(days=get_settings().onboarding.onboarding_link_days))
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return session.exec(select(Onboarding).where(Onboarding.partner_id == partner_id)).one()
        partner.tax_form_kind = kind
        if partner.tax_form_status == "missing":
            partner.tax_form_status = "requested"
        session.add(partner)
        return row


def activate(partner_id: int, contract_id: int) -> bool:
    """Partner becomes active (from approved/contracting); False if it already was or cannot be."""
    now = utcnow()
    with session_scope() as session:
        changed = session.execute(
            update(Partner).where(Partner.id == partner_id,
                                  Partner.stage.in_((Stage.APPLIED, Stage.APPROVED, Stage.CONTRACTING)))
            .values(stage=Stage.ACTIVE, activated_at=now, updated_at=now)).rowcount == 1
        if changed:
            audit(session, actor="system", action="partner.activated", subject_type="partner", subject_id=partner_id,
                  details={"contract_id": contract_id})
        return changed


def checklist(partner_id: int) -> list[tuple[str, bool, str]]:
    """(item, done, note) for the partner's onboarding; notes never carry secrets in clear."""
    from partnerflow.models import Contract, ContractStatus, Message

    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        signed = session.exec(select(Contract).where(Contract.partner_id == partner_id,
                                                     Contract.status == ContractStatus.SIGNED)).first()
        welcome = session.exec(select(Message).where(Message.idempotency_key == f"welcome:{partner_id}")).first()
        return [
            ("Contract signed", signed is not None, f"contract {signed.id} v{signed.version}" if signed else ""),
            ("Partner active", partner.stage == Stage.ACTIVE, partner.stage),
            ("Tracking link", bool(partner.tracking_code), tracking_url(partner.tracking_code) if partner.tracking_code else ""),
            ("Coupon code", bool(partner.coupon_code), partner.coupon_code or ""),
            ("Tax form", partner.tax_form_status == "received", f"{partner.tax_form_kind or '?'}: {partner.tax_form_status}"),
            ("Payout details", bool(partner.payout_details_encrypted),
             f"{partner.payout_method}: {partner.payout_details_masked}" if partner.payout_details_encrypted else "requested"),
            ("Welcome mail", welcome is not None and welcome.status == "sent", welcome.status if welcome else "not sent"),
        ]


def checklist_markdown(partner_id: int) -> str:
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        title = f"# Onboarding: {partner.legal_name} (partner {partner_id})\n\n"
    rows = "\n".join(f"| {'✅' if done else '⬜'} | {item} | {note} |" for item, done, note in checklist(partner_id))
    return title + "| | Item | Status |\n|---|---|---|\n" + rows + "\n"


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


def validate_payout(data: dict[str, Any]) -> tuple[dict[str, str], str, dict[str, str]]:
    """(clean payout details, masked summary, errors)."""
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException

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
        from partnerflow.tasks.shared.identity import normalise_email

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
        return session.exec(select(Onboarding).where(Onboarding.token_hash == token_hash(token))).first()


def submit_onboarding(token: str, data: dict[str, Any], *, ip: str | None = None) -> Onboarding:
    """Store the tax form and payout details encrypted; raise OnboardingInvalid naming every wrong field."""
    row = find_onboarding(token)
    if row is None:
        raise LookupError("unknown onboarding link")
    if row.expires_at <= utcnow():
        raise PermissionError("this onboarding link has expired")
    form, errors = validate_tax_form(row.tax_form_kind, data)
    details, masked, payout_errors = validate_payout(data)
    errors.update(payout_errors)
    if errors:
        raise OnboardingInvalid(errors)
    now = utcnow()
    with session_scope() as session:
        row = session.get(Onboarding, row.id)
        row.tax_form_encrypted = encrypt(json.dumps({**form, "submitted_at": now.isoformat(), "ip": ip}))
        row.tax_form_masked = f"{row.tax_form_kind}, TIN {mask(form['tin'])}"
        row.completed_at = now
        partner = session.get(Partner, row.partner_id)
        partner.tax_form_status = "received"
        partner.payout_method = details["method"]
        partner.payout_details_encrypted = encrypt(json.dumps(details))
        partner.payout_details_masked = masked
        partner.updated_at = now
        session.add(row)
        session.add(partner)
        audit(session, actor=f"partner:{partner.id}", action="onboarding.details_received", subject_type="partner",
              subject_id=partner.id, details={"tax_form": row.tax_form_masked, "payout": masked, "ip": ip})
        return row
