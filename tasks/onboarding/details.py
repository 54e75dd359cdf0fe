"""The partner's tax form and payout details, sent through the onboarding form (/onboarding/{token}).

Validation names every wrong field; what is stored is encrypted (partnerflow.secrets.encrypt)
and only masked values are ever shown.
"""

from __future__ import annotations

import json
import re
from typing import Any

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sqlmodel import select

from partnerflow.models import Partner, audit, session_scope, utcnow
from partnerflow.models.onboarding import Onboarding, TaxFormStatus
from partnerflow.secrets import encrypt, mask, token_hash
from partnerflow.tasks.shared.identity import normalise_email

PAYOUT_METHODS = ("sepa", "paypal", "stripe")


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
        partner.tax_form_status = TaxFormStatus.RECEIVED
        partner.payout_method = details["method"]
        partner.payout_details_encrypted = encrypt(json.dumps(details))
        partner.payout_details_masked = masked
        partner.updated_at = now
        session.add(row)
        session.add(partner)
        audit(session, actor=f"partner:{partner.id}", action="onboarding.details_received", subject_type="partner",
              subject_id=partner.id, details={"tax_form": row.tax_form_masked, "payout": masked, "ip": ip})
        return row


def payout_summary(partner_id: int) -> str:
    """The masked payout details the partner gave, for the thank-you page."""
    with session_scope() as session:
        return session.get(Partner, partner_id).payout_details_masked or ""
