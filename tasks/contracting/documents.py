"""Contract generation from .docx templates with merge fields and a clause library.

The template (templates/contracting/contract/*.docx, built by build_templates.py) holds {{ field }}
merge fields and one [[CLAUSES]] paragraph; templates/contracting/contract/clauses.yaml says which
clauses apply by partner type, tier and country, and the governing law by country. The
commission clause is `CommissionTerms.describe()` of the very terms stored on the Contract
and the Partner, so the signed words and the payout engine read the same data.

Every field is resolved before the document is built: a missing one raises
ContractFieldMissing naming it, and nothing is written or sent.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import date
from importlib import resources
from typing import Any

import yaml
from docx import Document
from docx.oxml.ns import qn
from sqlmodel import select

from partnerflow.models import Contract, ContractStatus, Partner, audit, session_scope
from partnerflow.settings import get_settings
from partnerflow.tasks.shared.terms import CommissionTerms, terms_for_partner

FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")
CLAUSES_MARK = "[[CLAUSES]]"


class ContractFieldMissing(ValueError):
    """A merge field has no value; nothing was generated."""

    def __init__(self, field: str, where: str):
        self.field = field
        super().__init__(f"contract field {field!r} has no value (used in {where})")


@functools.lru_cache(maxsize=1)
def library() -> dict[str, Any]:
    text = resources.files("partnerflow.templates").joinpath("contracting/contract/clauses.yaml").read_text()
    return yaml.safe_load(text)


@functools.lru_cache(maxsize=8)
def template_bytes(name: str) -> bytes:
    return resources.files("partnerflow.templates").joinpath(f"contracting/contract/{name}").read_bytes()


def select_clauses(partner_type: str, tier: str, country: str) -> list[dict[str, Any]]:
    """The library's clauses that apply to this partner, in library order."""
    chosen = []
    for clause in library()["clauses"]:
        if "partner_types" in clause and partner_type not in clause["partner_types"]:
            continue
        if "tiers" in clause and tier not in clause["tiers"]:
            continue
        if "countries" in clause and country not in clause["countries"]:
            continue
        if "not_countries" in clause and country in clause["not_countries"]:
            continue
        chosen.append(clause)
    return chosen


def governing_law(country: str) -> str:
    laws = library()["governing_law"]
    return laws.get(country) or laws["default"]


def merge_fields(partner: Partner, terms: CommissionTerms, *, version: int, tier: str,
                 on: date | None = None) -> dict[str, str]:
    settings = get_settings()
    return {
        "company_name": settings.company_name,
        "company_signer": library().get("company_signer", ""),
        "legal_name": partner.legal_name,
        "contact_name": partner.contact_name,
        "email": partner.email,
        "country": partner.country,
        "partner_type": partner.partner_type,
        "tier": tier,
        "commission_terms": terms.describe(),
        "governing_law": governing_law(partner.country),
        "date": (on or date.today()).strftime("%d %B %Y"),
        "contract_version": str(version),
    }


def _fill(text: str, fields: dict[str, str], where: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        got = fields.get(name)
        if got is None or str(got).strip() == "":
            raise ContractFieldMissing(name, where)
        return str(got)

    return FIELD.sub(value, text)


@dataclass
class Rendered:
    document: bytes
    document_sha256: str
    template_name: str
    template_sha256: str
    clause_ids: list[str]


def render_contract(fields: dict[str, str], *, partner_type: str, tier: str, country: str,
                    template_name: str | None = None) -> Rendered:
    """Merge fields and clauses into the template; raises ContractFieldMissing before building anything."""
    template_name = template_name or library()["template"]
    raw = template_bytes(template_name)
    template_sha = hashlib.sha256(raw).hexdigest()
    clauses = select_clauses(partner_type, tier, country)
    doc = Document(io.BytesIO(raw))
    # Resolve every text first so a missing field stops us before any output exists.
    planned = []
    body_element = doc.element.body
    for p in body_element.iterchildren(qn("w:p")):
        text = "".join(t.text or "" for t in p.iter(qn("w:t")))
        if text.strip() == CLAUSES_MARK:
            planned.append((p, None))
        elif "{{" in text:
            planned.append((p, _fill(text, fields, template_name)))
    clause_texts = [(c["title"], _fill(c["text"], fields, f"clause {c['id']}")) for c in clauses]
    heading_proto, body_proto = _prototypes(doc)
    heading_proto, body_proto = copy.deepcopy(heading_proto), copy.deepcopy(body_proto)
    for p, text in planned:
        if text is not None:
            _replace_text(p, text)
            continue
        anchor = p
        for number, (title, body) in enumerate(clause_texts, start=4):
            for proto, line in ((heading_proto, f"{number}. {title}"), (body_proto, body)):
                element = _copy_with_text(proto, line)
                anchor.addnext(element)
                anchor = element
        p.getparent().remove(p)
    props = doc.core_properties
    props.title = f"{fields.get('company_name')} Partner Program Agreement"
    props.subject = fields.get("legal_name", "")
    props.version = fields.get("contract_version", "")
    version = fields.get("contract_version")
    props.keywords = f"partnerflow contract; version {version}; template {template_name} sha256 {template_sha}"
    clause_ids = ", ".join(c["id"] for c in clauses) or "none"
    footer = _copy_with_text(body_proto, f"Contract version {version} · template {template_name} "
                             f"(SHA-256 {template_sha[:16]}…) · clauses: {clause_ids}")
    list(body_element.iterchildren(qn("w:p")))[-1].addnext(footer)
    out = io.BytesIO()
    doc.save(out)
    data = out.getvalue()
    return Rendered(data, hashlib.sha256(data).hexdigest(), template_name, template_sha, [c["id"] for c in clauses])


def _style_id(p_element) -> str:
    ppr = p_element.pPr
    return ppr.pStyle.val if ppr is not None and ppr.pStyle is not None else ""


def _prototypes(doc):
    """A heading paragraph and a body paragraph of the template, copied for clauses.

    No style lookups: they are slow."""
    heading = body = None
    for p in doc.element.body.iterchildren(qn("w:p")):
        style = _style_id(p)
        if heading is None and style.startswith("Heading"):
            heading = p
        elif body is None and style == "" and FIELD.search("".join(t.text or "" for t in p.iter(qn("w:t")))):
            body = p
    return heading, body


def _copy_with_text(proto, text: str):
    return _replace_text(copy.deepcopy(proto), text)


def _replace_text(element, text: str):
    """Put `text` in the paragraph's first run and drop the other runs (keeps the first run's formatting)."""
    runs = element.findall(qn("w:r"))
    for run in runs[1:]:
        element.remove(run)
    texts = runs[0].findall(qn("w:t"))
    texts[0].text = text
    for extra in texts[1:]:
        runs[0].remove(extra)
    return element


def generate_contract(partner_id: int, *, application_id: int | None = None,
                      terms: CommissionTerms | dict | None = None, tier: str | None = None) -> Contract:
    """Generate (once per application) the partner's contract and store the agreed terms on it and the partner."""
    settings = get_settings()
    with session_scope() as session:
        if application_id is not None:
            existing = session.exec(select(Contract).where(
                Contract.application_id == application_id,
                Contract.status.in_((ContractStatus.GENERATED, ContractStatus.SENT, ContractStatus.SIGNED)))).first()
            if existing:
                return existing
        partner = session.get(Partner, partner_id)
        if partner is None:
            raise ValueError(f"partner {partner_id} does not exist")
        tier = tier or partner.tier
        if terms is None:
            partner.tier = tier
            terms = terms_for_partner(partner)
        terms = CommissionTerms.parse(terms)
        version = len(session.exec(select(Contract.id).where(Contract.partner_id == partner_id)).all()) + 1
        fields = merge_fields(partner, terms, version=version, tier=tier)
        rendered = render_contract(fields, partner_type=partner.partner_type, tier=tier, country=partner.country)
        relative = f"contracts/partner-{partner_id}-v{version}-{rendered.document_sha256[:12]}.docx"
        path = settings.documents_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.document)
        terms_json = terms.model_dump(mode="json")
        contract = Contract(partner_id=partner_id, application_id=application_id, version=version,
                            template_name=rendered.template_name, template_sha256=rendered.template_sha256,
                            document_path=relative, document_sha256=rendered.document_sha256,
                            commission_terms=terms_json)
        session.add(contract)
        partner.tier = tier
        partner.commission_terms = terms_json
        if terms.payout_threshold_minor is not None:
            partner.payout_threshold_minor = terms.payout_threshold_minor
        session.add(partner)
        session.flush()
        audit(session, actor="system", action="contract.generated", subject_type="contract", subject_id=contract.id,
              details={"partner_id": partner_id, "version": version, "template_sha256": rendered.template_sha256,
                       "document_sha256": rendered.document_sha256, "clauses": rendered.clause_ids})
        return contract
