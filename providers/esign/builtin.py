"""Builtin e-signature: our own signing page (web/signing.py) at an unguessable, expiring link.

The link token is derived from the installation's secret key and the request's idempotency
key, so a re-run that has to deliver the mail again sends the same link; the database keeps
only its keyed hash (partnerflow.secrets.token_hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from sqlalchemy import update

from partnerflow.models import Contract, Partner, SignatureRequest, audit, session_scope
from partnerflow.providers.errors import PermanentError
from partnerflow.providers.esign.settings import EsignSettings
from partnerflow.secrets import master_key, token_hash
from partnerflow.settings import get_settings


def signing_token(row: SignatureRequest) -> str:
    mac = hmac.new(master_key(), f"builtin-signing-link:{row.idempotency_key}:{row.id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def signing_url(token: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/sign/{token}"


class BuiltinSigning:
    name = "builtin"

    def __init__(self, settings: EsignSettings):
        self.settings = settings

    def send(self, signature_request_id: int, *, document: bytes, filename: str, title: str,
             message: str = "") -> str:
        """Record the link's hash, then mail the link once (key `sign:{id}`)."""
        from partnerflow.tasks.shared.mail import deliver

        with session_scope() as session:
            row = session.get(SignatureRequest, signature_request_id)
            if row is None:
                raise PermanentError(f"signature request {signature_request_id} does not exist")
            token = signing_token(row)
            provider_request_id = f"builtin-{row.id}"
            if row.provider_request_id is None:
                session.execute(update(SignatureRequest)
                                .where(SignatureRequest.id == row.id, SignatureRequest.provider_request_id.is_(None))
                                .values(token_hash=token_hash(token), provider_request_id=provider_request_id,
                                        status="sent"))
                audit(session, actor="system", action="signature.sent", subject_type="signature_request",
                      subject_id=row.id, details={"provider": self.name})
            contract = session.get(Contract, row.contract_id)
            partner = session.get(Partner, contract.partner_id)
            context = {"signer_name": row.signer_name, "legal_name": partner.legal_name, "title": title,
                       "message": message, "signing_url": signing_url(token),
                       "expires_on": row.expires_at.strftime("%d %B %Y") if row.expires_at else ""}
            to_email, partner_id = row.signer_email, partner.id
        deliver(f"sign:{signature_request_id}", kind="signing_request", to_email=to_email,
                template="contracting/signing_request", context=context, partner_id=partner_id)
        return provider_request_id

    def void(self, provider_request_id: str, reason: str) -> None:
        """Nothing to tell anyone: the signing page refuses requests whose row is no longer open."""


def find_by_token(token: str) -> SignatureRequest | None:
    from sqlmodel import select

    with session_scope() as session:
        return session.exec(select(SignatureRequest).where(SignatureRequest.token_hash == token_hash(token))).first()


def signed_copy(document: bytes, evidence: dict) -> bytes:
    """The contract with a signature certificate page appended (python-docx)."""
    import io

    from docx import Document
    from docx.enum.text import WD_BREAK

    doc = Document(io.BytesIO(document))
    doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    doc.add_paragraph("Signature certificate", style="Heading 1")
    doc.add_paragraph("This agreement was signed electronically through the signing page of "
                      f"{get_settings().company_name}. The signer typed their name and gave the consent below.")
    rows = [("Signed by", evidence.get("signer_name", "")), ("Signer email", evidence.get("signer_email", "")),
            ("Signed at (UTC)", evidence.get("signed_at", "")), ("IP address", evidence.get("ip", "")),
            ("User agent", evidence.get("user_agent", "")), ("Consent", evidence.get("consent", "")),
            ("Document SHA-256", evidence.get("document_sha256", "")),
            ("Signature request", str(evidence.get("signature_request_id", "")))]
    table = doc.add_table(rows=0, cols=2)
    table.style = "Table Grid"
    for label, value in rows:
        cells = table.add_row().cells
        cells[0].text = label
        cells[1].text = str(value or "")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
