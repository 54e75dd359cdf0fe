"""Built-in e-signature: our own signing page (/sign/{token}) at an unguessable link.

The signer gets the link by mail from us (the contracting tasks send it); the page records
the signer's typed name, consent, IP and browser, and the signed copy carries a signature
certificate page. The link token is our reference plus a MAC of it under the link key: a re-run
that mails the link again sends the same one, and the page checks a token by computing the MAC
again under each listed link key (keys rotate: a link mailed before a rotation keeps working while
its key is listed, and a reminder mailed after it carries a link under the newest key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
from typing import Any

from docx import Document
from docx.enum.text import WD_BREAK

from partnerflow.providers.errors import PermanentError
from partnerflow.providers.esign.base import Callback, Envelope, Inbound, SigningLink, Target, WebhookRejected
from partnerflow.providers.esign.settings import EsignSettings


class BuiltinSigning:
    name = "builtin"
    callback_reply = None
    callback_media_types: tuple[str, ...] = ()

    def __init__(self, settings: EsignSettings):
        if settings.signing_link_key is None or not settings.signing_base_url:
            raise PermanentError("the built-in signing page needs its link key and the public base URL")
        self._key = settings.signing_link_key.get_secret_value().encode()
        self._base_url = settings.signing_base_url.rstrip("/")

    def signing_link(self, reference: str) -> SigningLink:
        token = link_token(self._key, reference)
        return SigningLink(token=token, url=f"{self._base_url}/sign/{token}")

    def send(self, envelope: Envelope) -> str:
        """Nothing leaves the installation: the request is the link we mail."""
        return request_id(envelope.reference)

    def find(self, reference: str) -> str | None:
        return None  # a send here never has an unknown outcome

    def void(self, provider_request_id: str, reason: str) -> None:
        """Nothing to tell anyone: the signing page refuses requests that are no longer open."""

    def is_signed(self, provider_request_id: str) -> bool:
        return False  # signing on our page completes the request there and then

    def is_declined(self, provider_request_id: str) -> bool:
        return False  # declining on our page closes the request there and then

    def download(self, provider_request_id: str) -> bytes:
        raise PermanentError("the built-in signing page keeps no documents; the signed copy is stored when signed")

    def parse_callback(self, inbound: Inbound) -> Callback:
        raise WebhookRejected(404, "the built-in signing page has no callbacks")

    def completion(self, payload: dict[str, Any]) -> Target | None:
        return None

    def declined(self, payload: dict[str, Any]) -> Target | None:
        return None


def request_id(reference: str) -> str:
    """The built-in request's id, as recorded on our row."""
    return f"builtin-{reference}"


def link_token(key: bytes, reference: str) -> str:
    """'<reference>_<MAC>': the reference (letters and digits) says which request, the MAC under the link key
    that we made the link; only URL-safe characters, so mail clients link the whole of it."""
    mac = hmac.new(key, f"builtin-signing-link:{reference}".encode(), hashlib.sha256)
    return f"{reference}_{base64.urlsafe_b64encode(mac.digest()).decode().rstrip('=')}"


def reference_in(token: str, keys: list[bytes]) -> str | None:
    """The reference a link token was made for under one of `keys`; None for anything else (forged, old form)."""
    reference, separator, _ = token.partition("_")
    if not separator or not reference.isascii() or not reference.isalnum():
        return None
    given = token.encode()  # bytes: a non-ASCII token is a mismatch, never a crash
    return reference if any(hmac.compare_digest(given, link_token(key, reference).encode()) for key in keys) else None


def signed_copy(document: bytes, evidence: dict[str, Any], *, company_name: str) -> bytes:
    """The contract with a signature certificate page appended."""
    doc = Document(io.BytesIO(document))
    doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    doc.add_paragraph("Signature certificate", style="Heading 1")
    doc.add_paragraph("This agreement was signed electronically through the signing page of "
                      f"{company_name}. The signer typed their name and gave the consent below.")
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
