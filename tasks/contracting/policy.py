"""The approval policy (templates/contracting/approval_policy.yaml or PARTNERFLOW_APPROVAL_POLICY_PATH),
the reviewer's form and the Markdown description it is shown under."""

from __future__ import annotations

import functools
from enum import StrEnum
from importlib import resources
from typing import Any, Literal

import yaml
from prefect.input import RunInput
from pydantic import Field

from partnerflow.models import Application
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.screening import SEVERITY_ORDER
from partnerflow.tasks.shared.markdown import md_text
from partnerflow.tasks.shared.terms import CommissionTerms, default_for


class Verdict(StrEnum):
    """What the policy says about an application."""

    APPROVE = "approve"
    REJECT = "reject"
    ASK = "ask"  # a person decides


class ApprovalDecision(RunInput):
    """The reviewer's answer. Leave the commission fields empty to use the tier's default terms."""

    decision: Literal["approve", "reject", "request_changes"]
    tier: str = "standard"
    commission_rate: str = Field("", description='e.g. "0.12" = 12 % of the net sale; empty: the tier\'s terms.')
    commission_flat_minor: int = Field(0, ge=0, description="e.g. 2500 = 25.00 per sale; 0: the tier's terms.")
    note: str = Field("", description="Shown to the applicant when you reject or request changes.")
    reviewer: str = Field(min_length=1, description="Your name: who decided.")


def load_policy() -> dict[str, Any]:
    path = get_settings().contracting.approval_policy_path
    if path is not None:
        return yaml.safe_load(path.read_text()) or {}
    return _embedded_policy()


@functools.lru_cache(maxsize=1)
def _embedded_policy() -> dict[str, Any]:
    policy = resources.files("partnerflow.templates").joinpath("contracting/approval_policy.yaml")
    return yaml.safe_load(policy.read_text())


def default_tier(policy: dict[str, Any]) -> str:
    return policy.get("default_tier", "standard")


def decide_by_policy(policy: dict[str, Any], partner_type: str, findings: list[dict[str, Any]]) -> Verdict:
    """approve | reject | ask: the first rule whose conditions all hold."""
    codes = {f["code"] for f in findings}
    worst = max((SEVERITY_ORDER[f["severity"]] for f in findings), default=-1)
    for rule in policy.get("rules") or []:
        if "partner_types" in rule and partner_type not in rule["partner_types"]:
            continue
        if "finding_codes" in rule and not codes & set(rule["finding_codes"]):
            continue
        if "max_severity" in rule:
            limit = -1 if rule["max_severity"] == "none" else SEVERITY_ORDER[rule["max_severity"]]
            if worst > limit:
                continue
        return Verdict(rule["decision"])
    return Verdict.ASK


def terms_from_answer(answer: ApprovalDecision, partner_type: str) -> CommissionTerms:
    """The tier's default terms with the reviewer's rate or flat amount, validated by CommissionTerms."""
    data = default_for(partner_type, answer.tier).model_dump(mode="json")
    if answer.commission_flat_minor:
        data.update(kind="flat", flat_minor=answer.commission_flat_minor, rate=None, tiers=[])
    elif answer.commission_rate:
        data.update(kind="percentage", rate=answer.commission_rate.strip(), tiers=[])
    return CommissionTerms.model_validate(data)


def describe_for_reviewer(app: Application, findings: list[dict[str, Any]], policy: dict[str, Any]) -> str:
    """The Markdown above the reviewer's form. Everything the applicant typed is escaped (md_text)."""
    default = default_for(app.partner_type, default_tier(policy))
    lines = [f"## Partner application {app.id}: {md_text(app.legal_name)}", "",
             "| | |", "|---|---|",
             f"| Contact | {md_text(app.contact_name)} {md_text('<' + app.email + '>')} |",
             f"| Country | {md_text(app.country)} |",
             f"| Website | {md_text(app.website) or '—'} |", f"| Type | {md_text(app.partner_type)} |",
             f"| Channels | {md_text(', '.join(app.channels)) or '—'} |",
             f"| Promotional methods | {md_text(', '.join(app.promotional_methods)) or '—'} |",
             f"| Tax status | {md_text(app.tax_status)} |", "", "### Screening findings", ""]
    # Findings quote the applicant's name and domain: escaped too.
    lines += [f"- **{f['severity']}** `{f['code']}`: {md_text(f['detail'], 1000)}"
              for f in findings] or ["- none"]
    lines += ["", "### Default terms", "", default.describe(), "",
              f"Tiers: {', '.join(policy.get('tiers') or ['standard'])}. Leave `commission_rate` empty and "
              "`commission_flat_minor` at 0 to keep the tier's default; set one of them (e.g. 0.12, or 2500 for "
              "25.00 per sale) to override.", "Choose the `decision` and fill in `reviewer` with your name."]
    return "\n".join(lines)
