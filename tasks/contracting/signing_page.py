"""What the built-in signing page (/sign/{token}) reads and does: find the request by its link,
show the contract, and sign it with the signer's evidence on a certificate page."""

from __future__ import annotations

import hashlib
import io

from docx import Document
from sqlmodel import select

from partnerflow.models import Contract, Partner, SignatureRequest, session_scope, utcnow
from partnerflow.providers.esign.builtin import reference_in, request_id, signed_copy
from partnerflow.secrets import token_hashes
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.sending import signing_link_keys
from partnerflow.tasks.contracting.signing import BUILTIN, complete_signature, contract_document, signing_base

CONSENT = ("I agree to sign this agreement electronically, and my typed name below is my signature with the "
           "same effect as a handwritten one.")


def find_by_token(token: str) -> tuple[SignatureRequest, Contract, Partner] | None:
    """The built-in request a signing link points to, with its contract and partner: by the stored hash of
    the link first mailed (links of the old form included), else by a link made under any listed key
    (a reminder mailed after a key rotation carries a link under the newest key)."""
    with session_scope() as session:
        row = session.exec(select(SignatureRequest).where(SignatureRequest.token_hash.in_(token_hashes(token)))).first()
        if row is None and (reference := reference_in(token, [k.encode() for k in signing_link_keys()])):
            row = session.exec(select(SignatureRequest).where(SignatureRequest.provider == BUILTIN,
                                                              SignatureRequest.provider_request_id
                                                              == request_id(reference))).first()
        if row is None or row.provider != BUILTIN:
            return None
        contract = session.get(Contract, row.contract_id)
        return row, contract, session.get(Partner, contract.partner_id)


def contract_blocks(contract: Contract) -> list[tuple[str, str]]:
    """The contract as the signer reads it, as ("title" | "heading" | "paragraph", text) in document order; the
    page's template lays them out. Refuses a document whose hash changed."""
    blocks = []
    for paragraph in Document(io.BytesIO(contract_document(contract))).paragraphs:
        if not paragraph.text.strip():
            continue
        style = paragraph.style.name
        kind = "title" if style == "Title" else "heading" if style.startswith("Heading") else "paragraph"
        blocks.append((kind, paragraph.text))
    return blocks


def sign_on_page(row: SignatureRequest, contract: Contract, *, signer_name: str, ip: str, user_agent: str) -> bool:
    """Sign with the typed name and consent; the signed copy carries the evidence. False if already signed."""
    document = signing_base(contract, row)  # refuses a contract whose hash changed since it was sent
    evidence = {"signer_name": signer_name, "signer_email": row.signer_email, "signed_at": utcnow().isoformat(),
                "ip": ip, "user_agent": user_agent, "consent": CONSENT,
                "document_sha256": hashlib.sha256(document).hexdigest(), "signature_request_id": row.id}
    return complete_signature(row.id, signed_document=signed_copy(document, evidence,
                                                                   company_name=get_settings().company_name),
                              filename=f"contract-{contract.id}-signed-{row.id}.docx", evidence=evidence,
                              actor=f"signer:{row.signer_email}")
