"""Partner applications: validation with field errors, duplicate detection, intake.

`submit_application` is what the web form, the JSON API and the CLI all call. A valid,
new application creates Partner(stage applied) + Application, an audit row, and the
`partner.applied` hand-off (in the same transaction), which starts the contracting flow.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from partnerflow.models import (
    Application,
    ApplicationStatus,
    Partner,
    PartnerType,
    Stage,
    audit,
    session_scope,
)
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.addresses import website_refusal
from partnerflow.tasks.shared.events import PARTNER_APPLIED, record, relay_after_commit
from partnerflow.tasks.shared.identity import normalise_domain, normalise_email

OPEN_STATUSES = (ApplicationStatus.RECEIVED, ApplicationStatus.PENDING_REVIEW, ApplicationStatus.APPROVED,
                 ApplicationStatus.CHANGES_REQUESTED)
TAX_STATUSES = ("individual", "company", "non_profit", "other")
CHANNELS = ("website", "blog", "newsletter", "youtube", "instagram", "tiktok", "podcast", "social", "events",
            "marketplace", "other")
PROMOTIONAL_METHODS = ("content", "reviews", "email", "social", "paid_search", "paid_social", "coupons",
                       "direct_sales", "referrals", "other")
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com", "icloud.com", "me.com",
    "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "zoho.com",
})
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class ApplicationInvalid(ValueError):
    """One or more fields are wrong; `errors` maps each field to a sentence."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


class DuplicateApplication(ValueError):
    """The email or domain already belongs to a partner that has no application to point to."""


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = re.split(r"[,\n]", value)
    return [str(v).strip().lower() for v in value if str(v).strip()]


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def validate(data: dict[str, Any]) -> dict[str, Any]:
    """Clean the submitted fields; raise ApplicationInvalid naming every wrong field."""
    errors: dict[str, str] = {}
    text = {k: str(data.get(k) or "").strip() for k in
            ("legal_name", "contact_name", "email", "country", "website", "partner_type", "tax_status")}
    clean: dict[str, Any] = {}
    for field, label in (("legal_name", "Legal name"), ("contact_name", "Contact name")):
        if not text[field]:
            errors[field] = f"{label} is required."
        elif len(text[field]) > 200:
            errors[field] = f"{label} is longer than 200 characters."
        clean[field] = text[field]
    email = normalise_email(text["email"])
    if not text["email"]:
        errors["email"] = "Email is required."
    elif email is None:
        errors["email"] = f"{text['email']!r} is not an email address."
    clean["email"] = email or ""
    country = text["country"].upper()
    if not _COUNTRY.match(country):
        errors["country"] = "Country is required as a two-letter ISO code, e.g. US, DE, GB."
    clean["country"] = country
    website = text["website"]
    domain = normalise_domain(website) if website else ""
    if website and "." not in domain:
        errors["website"] = f"{website!r} is not a website address."
    elif website and not get_settings().compliance.compliance_allow_private_addresses and website_refusal(website):
        # The compliance check will fetch this page: an internal address is refused before it is stored.
        errors["website"] = "The website must be a public address on the internet."
    clean["website"] = website
    partner_type = text["partner_type"].lower() or PartnerType.AFFILIATE
    if partner_type not in tuple(PartnerType):
        errors["partner_type"] = f"Partner type must be one of: {', '.join(PartnerType)}."
    clean["partner_type"] = partner_type
    channels = _as_list(data.get("channels"))
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        errors["channels"] = f"Unknown channel {bad[0]!r}; use: {', '.join(CHANNELS)}."
    if not channels and not website:
        errors["channels"] = "Give a website or at least one channel."
    clean["channels"] = channels
    methods = _as_list(data.get("promotional_methods"))
    bad = [m for m in methods if m not in PROMOTIONAL_METHODS]
    if bad:
        errors["promotional_methods"] = f"Unknown promotional method {bad[0]!r}; use: {', '.join(PROMOTIONAL_METHODS)}."
    clean["promotional_methods"] = methods
    tax_status = text["tax_status"].lower()
    if tax_status not in TAX_STATUSES:
        errors["tax_status"] = f"Tax status must be one of: {', '.join(TAX_STATUSES)}."
    clean["tax_status"] = tax_status
    if not _truthy(data.get("agreed_to_terms")):
        errors["agreed_to_terms"] = "You must agree to the program terms."
    clean["agreed_to_terms"] = True
    if errors:
        raise ApplicationInvalid(errors)
    # The domain identifies the business: the website's, else the email's unless it is a free-mail one.
    email_domain = email.rsplit("@", 1)[1]
    clean["domain"] = domain or ("" if email_domain in FREE_MAIL else email_domain)
    return clean


def find_duplicate(session: Session, email: str, domain: str, *, exclude_application: int | None = None
                   ) -> tuple[Application | None, Partner | None]:
    """An open application or a partner with the same normalised email or business domain."""
    app_match = [Application.email == email] + ([Application.domain == domain] if domain else [])
    query = select(Application).where(or_(*app_match), Application.status.in_(OPEN_STATUSES))
    if exclude_application is not None:
        query = query.where(Application.id != exclude_application)
    application = session.exec(query.order_by(Application.id)).first()
    partner_match = [Partner.email == email] + ([Partner.domain == domain] if domain else [])
    pquery = select(Partner).where(or_(*partner_match), Partner.stage != Stage.REJECTED)
    if exclude_application is not None:
        own = session.get(Application, exclude_application)
        if own is not None and own.partner_id is not None:
            pquery = pquery.where(Partner.id != own.partner_id)
    partner = session.exec(pquery.order_by(Partner.id)).first()
    if application is None and partner is not None:
        application = session.exec(select(Application).where(Application.partner_id == partner.id)
                                   .order_by(Application.id.desc())).first()
    return application, partner


def submit_application(data: dict[str, Any], *, actor: str = "applicant") -> tuple[Application, bool]:
    """Validate and record an application; (existing application, False) for a duplicate."""
    clean = validate(data)
    with session_scope() as session:
        application, partner = find_duplicate(session, clean["email"], clean["domain"])
        if application is not None:
            return application, False
        if partner is not None:
            raise DuplicateApplication(f"{clean['email']} or its domain already belongs to partner {partner.id}.")
        partner = Partner(email=clean["email"], legal_name=clean["legal_name"], contact_name=clean["contact_name"],
                          country=clean["country"], website=clean["website"], domain=clean["domain"],
                          partner_type=clean["partner_type"], stage=Stage.APPLIED)
        session.add(partner)
        try:
            session.flush()
        except IntegrityError:  # a concurrent submission with the same email won
            session.rollback()
            with session_scope() as again:
                application, _ = find_duplicate(again, clean["email"], clean["domain"])
                if application is None:
                    raise DuplicateApplication(f"{clean['email']} already belongs to a partner.") from None
                return application, False
        application = Application(partner_id=partner.id, **clean)
        session.add(application)
        session.flush()
        audit(session, actor=actor, action="application.received", subject_type="application",
              subject_id=application.id, details={"partner_id": partner.id, "partner_type": partner.partner_type})
        app_id = application.id
        # The hand-off to contracting commits with the application: a failed emit cannot lose it.
        handoff = record(session, PARTNER_APPLIED, "application", app_id, {"application_id": app_id})
    relay_after_commit(handoff)
    with session_scope() as session:
        return session.get(Application, app_id), True
