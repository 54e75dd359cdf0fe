"""Shared helpers for the contracting/onboarding tests."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path

GOOD = {
    "legal_name": "Northwind Media LLC", "contact_name": "Nora Wind", "email": "nora@northwind.example",
    "country": "US", "website": "https://www.northwind.example/blog", "channels": ["blog", "newsletter"],
    "partner_type": "affiliate", "promotional_methods": ["content", "email"], "tax_status": "company",
    "agreed_to_terms": True,
}


def application(**overrides) -> dict:
    return {**GOOD, **overrides}


def mails(outbox: Path) -> list[email.message.EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def mail_text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link(outbox: Path, path_prefix: str) -> str:
    """The one link starting with `path_prefix` (e.g. "/sign/") in the outbox; its path part."""
    found = set()
    for message in mails(outbox):
        pattern = r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[A-Za-z0-9_\-]+)"
        found |= set(re.findall(pattern, mail_text(message)))
    assert len(found) == 1, found
    return found.pop()


def approved_partner(**overrides) -> int:
    """A partner that applied (no flow run): returns the partner id."""
    from partnerflow.tasks.contracting.applications import submit_application

    app, created = submit_application(application(**overrides))
    assert created
    return app.partner_id
