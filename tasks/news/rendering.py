"""Rendering program news: broadcast templates (templates/news/broadcast/<name>/) and the weekly
performance email (templates/news/performance_weekly/), and the preview a person approves.

The subject and the offer fields are typed by a person in the Prefect UI: they are values in the
template's context, never compiled as templates themselves, and autoescaped in the HTML part.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.activation import tracking_url
from partnerflow.tasks.shared.mail import RenderedEmail, TemplateError, render_folder
from partnerflow.tasks.shared.markdown import md_text

BROADCASTS = "news/broadcast"
WEEKLY = "news/performance_weekly"
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,59}$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FIELD_CHARS = 2000
MAX_SUBJECT_CHARS = 200


def broadcast_templates() -> list[str]:
    root = resources.files("partnerflow.templates").joinpath(BROADCASTS)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.joinpath("body.txt").is_file())


def check_request(template: str, subject: str, fields: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """The broadcast's template, subject and offer fields as typed in the UI, checked; TemplateError naming
    the first mistake."""
    known = broadcast_templates()
    if not isinstance(template, str) or not _TEMPLATE_NAME.match(template) or template not in known:
        raise TemplateError(f"template {str(template)[:60]!r} is not a broadcast template; choose one of: "
                            f"{', '.join(known)}")
    subject = " ".join(str(subject or "").split())
    if not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise TemplateError(f"the subject must be 1 to {MAX_SUBJECT_CHARS} characters")
    if not isinstance(fields, dict):
        raise TemplateError("offer fields must be pairs of a name and a text")
    checked: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise TemplateError(f"offer field name {str(name)[:40]!r} must be lowercase letters, digits and _")
        if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > MAX_FIELD_CHARS:
            raise TemplateError(f"offer field {name!r} must be a text of at most {MAX_FIELD_CHARS} characters")
        checked[name] = str(value).strip()
    return template, subject, checked


def partner_context(partner: Any) -> dict[str, Any]:
    """What every news mail may say about its partner (a Partner row or a row of its columns)."""
    return {"partner_name": partner.contact_name or partner.legal_name, "legal_name": partner.legal_name,
            "tier": partner.tier, "country": partner.country, "coupon_code": partner.coupon_code or "",
            "tracking_url": tracking_url(partner.tracking_code) if partner.tracking_code else ""}


def _render(folder: str, context: dict[str, Any], subject: str | None = None) -> RenderedEmail:
    base = get_settings().public_base_url.rstrip("/")
    return render_folder(folder, {"preferences_url": f"{base}/portal/preferences", **context}, subject)


def render_broadcast(template: str, subject: str, fields: dict[str, str], partner: Any,
                     opt_out_url: str) -> RenderedEmail:
    context = {**partner_context(partner), "offer": fields, "opt_out_url": opt_out_url}
    return _render(f"{BROADCASTS}/{template}", context, subject=subject)


def render_weekly(context: dict[str, Any]) -> RenderedEmail:
    return _render(WEEKLY, context)


_BLOCK_START = re.compile(r"^([#=+-])")
_ORDERED = re.compile(r"^(\d+)\.")


def md_block(text: str, limit_lines: int = 60) -> str:
    """A multi-line text (a mail body) as a Markdown quote whose every line is literal text: inline
    specials escaped by md_text, and whatever could start a heading, list or rule escaped too."""
    lines = text.splitlines()
    shown = []
    for line in lines[:limit_lines]:
        escaped = md_text(line.strip(), limit=500)
        escaped = _ORDERED.sub(r"\1\\.", _BLOCK_START.sub(r"\\\1", escaped))
        shown.append(f"> {escaped}" if escaped else ">")
    if len(lines) > limit_lines:
        shown.append(f"> … ({len(lines) - limit_lines} more lines)")
    return "  \n".join(shown)
