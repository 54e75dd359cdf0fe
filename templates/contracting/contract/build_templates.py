"""Build the contract templates (.docx) from the text below, so the committed binaries are reproducible.

Run: python templates/contracting/contract/build_templates.py   (writes partner_agreement.docx next to this file)
Merge fields are written {{ name }}; the paragraph [[CLAUSES]] is where the clause library goes.
Each paragraph is one run, so merging never has to join text Word split across runs.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

from docx import Document
from docx.shared import Pt

HERE = Path(__file__).resolve().parent

AGREEMENT = [
    ("Title", "{{ company_name }} Partner Program Agreement"),
    ("Normal", "This Partner Program Agreement (the \"Agreement\") is made on {{ date }} between {{ company_name }} "
               "(the \"Company\") and {{ legal_name }} (the \"Partner\", partner type: {{ partner_type }}), "
               "established in {{ country }} and represented by {{ contact_name }} ({{ email }})."),
    ("Heading 1", "1. Appointment"),
    ("Normal", "The Company appoints the Partner as a non-exclusive {{ partner_type }} partner at the {{ tier }} tier. "
               "The Partner promotes the Company's products in its own name and at its own cost, and is not an "
               "employee, agent or joint venturer of the Company."),
    ("Heading 1", "2. Commission"),
    ("Normal", "{{ commission_terms }}"),
    ("Normal", "Commissions are calculated from sales attributed to the Partner's tracking link or coupon code. "
               "The Company's records of attributed sales are final unless the Partner shows a manifest error "
               "within 60 days of a statement."),
    ("Heading 1", "3. Conduct"),
    ("Normal", "The Partner complies with all applicable laws, including consumer-protection, advertising and "
               "anti-spam laws, and does not make claims about the Company's products the Company has not approved."),
    ("Normal", "[[CLAUSES]]"),
    ("Heading 1", "Term and termination"),
    ("Normal", "This Agreement starts on signature and continues until either party ends it with 30 days' written "
               "notice, or at once for a material breach. Commissions earned before the end remain payable."),
    ("Heading 1", "Governing law"),
    ("Normal", "This Agreement is governed by the laws of {{ governing_law }}, and the courts there have exclusive "
               "jurisdiction."),
    ("Heading 1", "Signatures"),
    ("Normal", "For the Partner, {{ legal_name }}: signed electronically by {{ contact_name }}; see the signature "
               "certificate appended to the signed copy."),
    ("Normal", "For the Company, {{ company_name }}: {{ company_signer }}."),
]


def build(path: Path, paragraphs: list[tuple[str, str]]) -> None:
    doc = Document()
    doc.styles["Normal"].font.size = Pt(11)
    for style, text in paragraphs:
        doc.add_paragraph(text, style=style)
    # Fixed metadata and zip timestamps: the same text gives the same bytes.
    fixed = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    props = doc.core_properties
    props.author = props.last_modified_by = "Partnerflow"
    props.created = props.modified = fixed
    props.revision = 1
    raw = io.BytesIO()
    doc.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename != "[Content_Types].xml"):
            item = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
            item.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(item, src.read(info.filename))
    path.write_bytes(out.getvalue())


if __name__ == "__main__":
    build(HERE / "partner_agreement.docx", AGREEMENT)
    print("wrote", HERE / "partner_agreement.docx")
