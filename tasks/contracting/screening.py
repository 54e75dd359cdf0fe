"""Screening before approval: duplicates, email domain checks, sanctions list.

Each finding is {"code", "severity" (info | warning | block), "detail"}; the approval policy
and the reviewer's form description read them. MX lookups need the network, so domain
checks here are about syntax and well-known free-mail / disposable domains.
"""

from __future__ import annotations

import re
from typing import Any

from partnerflow.models import Application, session_scope
from partnerflow.models.compliance import ScreeningResult
from partnerflow.tasks.compliance.sanctions import screen_name
from partnerflow.tasks.contracting.applications import FREE_MAIL, find_duplicate

DISPOSABLE = frozenset({
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "tempmail.com", "temp-mail.org", "yopmail.com",
    "trashmail.com", "sharklasers.com", "getnada.com", "dispostable.com", "throwawaymail.com", "maildrop.cc",
    "fakeinbox.com", "mailnesia.com", "mintemail.com", "spamgourmet.com",
})
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
SEVERITY_ORDER = {"info": 0, "warning": 1, "block": 2}


def finding(code: str, severity: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "severity": severity, "detail": detail, **extra}


def email_domain_findings(email: str, website_domain: str) -> list[dict[str, Any]]:
    domain = email.rsplit("@", 1)[-1].lower()
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return [finding("email_domain_invalid", "block", f"The email domain {domain!r} is not a valid domain name.")]
    if domain in DISPOSABLE or any(domain.endswith("." + d) for d in DISPOSABLE):
        return [finding("disposable_email", "block", f"{domain} is a disposable email service.")]
    out = []
    if domain in FREE_MAIL:
        out.append(finding("free_mail", "info", f"{domain} is a free-mail provider, not a business domain."))
    elif website_domain and domain != website_domain and not domain.endswith("." + website_domain):
        out.append(finding("domain_mismatch", "info",
                           f"The email domain {domain} differs from the website's {website_domain}."))
    return out


def sanctions_findings(name: str, country: str) -> list[dict[str, Any]]:
    """Matches on the configured SDN-format list; an unconfigured or unreadable list is itself a finding."""
    screened = screen_name(name, country or None)
    if screened.result == ScreeningResult.NOT_CONFIGURED:
        return [finding("sanctions_not_checked", "info",
                        "No sanctions list is configured (PARTNERFLOW_SANCTIONS_LIST).")]
    if screened.result == ScreeningResult.UNAVAILABLE:
        return [finding("sanctions_not_checked", "warning", f"The sanctions list could not be read: {screened.error}")]
    return [finding("sanctions_match", "block",
                    f"{name!r} resembles {match.matched_name or match.entry.name!r} "
                    f"(SDN #{match.entry.ent_num}, {match.entry.program}; {match.reason}, score {match.score:.0f}).",
                    ent_num=match.entry.ent_num)
            for match in screened.matches]


def screen_application(application_id: int) -> list[dict[str, Any]]:
    """Run every check for one application and store the findings on it."""
    with session_scope() as session:
        app = session.get(Application, application_id)
        dup_app, dup_partner = find_duplicate(session, app.email, app.domain, exclude_application=application_id)
        findings: list[dict[str, Any]] = []
        if dup_app is not None:
            findings.append(finding("duplicate", "warning",
                                    f"Application {dup_app.id} ({dup_app.email}) has the same email or domain."))
        elif dup_partner is not None:
            findings.append(finding("duplicate", "warning",
                                    f"Partner {dup_partner.id} ({dup_partner.email}) has the same email or domain."))
        findings += email_domain_findings(app.email, app.domain)
        names = [app.legal_name]
        if app.contact_name and app.contact_name != app.legal_name:
            names.append(app.contact_name)
        for name in names:
            findings += [f for f in sanctions_findings(name, app.country)
                         if f["code"] != "sanctions_not_checked" or name == names[0]]
        app.screening = {"findings": findings}
        session.add(app)
    return findings


def worst(findings: list[dict[str, Any]]) -> str:
    return max((f["severity"] for f in findings), key=SEVERITY_ORDER.get, default="none")
