"""Documenso (self-hostable, API v1) over httpx.

Documenso signs PDF only, so our .docx contract is converted with LibreOffice headless first.
Sending is three calls: create the document (with our reference as `externalId`; the answer
carries a presigned `uploadUrl`), PUT the PDF there, then `POST /documents/{id}/send`.
Webhooks are not signed: Documenso sends the configured secret as-is in `X-Documenso-Secret`,
so we compare it in constant time and rely on the timestamp window and store-once for replays.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from partnerflow.providers.errors import AmbiguousError, PermanentError, RetryableError
from partnerflow.providers.esign.base import Callback, Envelope, Inbound, Target, WebhookRejected
from partnerflow.providers.esign.saas import (
    HttpVendor,
    call,
    error_reason,
    http_client,
    iso_time,
    json_payload,
    required,
    same_secret,
)
from partnerflow.providers.esign.settings import EsignSettings

COMPLETION_EVENTS = ("DOCUMENT_COMPLETED",)
_FIND_MAX_PAGES = 5  # newest first; a reference we look for was created minutes ago


def _reason(response: httpx.Response) -> str:
    return error_reason(response, lambda body: (body.get("message"),))


def to_pdf(document: bytes, filename: str, timeout: float = 120) -> bytes:
    """The PDF to send: a PDF as is, a .docx converted by LibreOffice headless (its own profile dir, so
    parallel conversions do not fight over the user profile lock)."""
    if document.startswith(b"%PDF"):
        return document
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if not soffice:
        raise PermanentError("documenso takes PDF only and LibreOffice (soffice) is not installed to convert "
                             f"{filename}")
    with tempfile.TemporaryDirectory(prefix="pf-pdf-") as tmp:
        source = Path(tmp) / (Path(filename).stem + Path(filename).suffix or ".docx")
        source.write_bytes(document)
        try:
            subprocess.run([soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless",
                            "--convert-to", "pdf", "--outdir", tmp, str(source)],
                           check=True, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RetryableError(f"converting {filename} to PDF timed out") from None
        except subprocess.CalledProcessError as exc:
            raise PermanentError(f"converting {filename} to PDF failed: {exc.stderr.decode()[:200]}") from None
        target = source.with_suffix(".pdf")
        if not target.exists():
            raise PermanentError(f"converting {filename} to PDF produced nothing")
        return target.read_bytes()


class DocumensoProvider(HttpVendor):
    name = "documenso"

    def __init__(self, settings: EsignSettings):
        self.settings = settings
        self._key = required(settings, "documenso_api_key")
        self._base = settings.documenso_api_host.rstrip("/") + "/api/v1/documents"

    def _call(self, method: str, url: str, *, creating: bool = False, auth: bool = True, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._key}"} if auth else {}
        with http_client(self.settings.esign_timeout_seconds) as client:
            return call(client, method, url, provider=self.name, reason_of=_reason, creating=creating,
                        headers=headers, **kwargs)

    # --- the provider interface ---------------------------------------------------------------
    def send(self, envelope: Envelope) -> str:
        """Create, upload the PDF, send; returns the Documenso document id."""
        envelope = dataclasses.replace(envelope, document=to_pdf(envelope.document, envelope.filename),
                                       filename=str(Path(envelope.filename).with_suffix(".pdf")))
        response = self._call("POST", self._base, creating=True, json={
            "title": envelope.title,
            "externalId": envelope.reference,
            "recipients": [{"name": envelope.signer_name, "email": envelope.signer_email, "role": "SIGNER"}],
            "meta": {"subject": envelope.title, "message": envelope.message or f"Please sign: {envelope.title}"},
        })
        try:
            body = response.json()
            document_id, upload_url = str(body["documentId"]), body["uploadUrl"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"{self.name}: create answered without documentId/uploadUrl") from None
        try:
            self._upload(upload_url, envelope.document)
            self._call("POST", f"{self._base}/{document_id}/send", creating=True, json={"sendEmail": True})
        except AmbiguousError:
            raise  # maybe sent: the next attempt looks it up by externalId
        except (RetryableError, PermanentError) as exc:
            # Not sent: remove the draft so a retry starts clean; if even that fails, let the
            # next attempt find (and remove) the draft by its externalId.
            try:
                self._call("DELETE", f"{self._base}/{document_id}")
            except RetryableError:
                raise AmbiguousError(f"{exc.reason} (draft {document_id} left behind)") from None
            raise
        return document_id

    def _upload(self, upload_url: str, pdf: bytes) -> None:
        with http_client(self.settings.esign_timeout_seconds) as client:
            call(client, "PUT", upload_url, provider=self.name, reason_of=_reason, content=pdf,
                 headers={"Content-Type": "application/octet-stream"})

    def find(self, reference: str) -> str | None:
        """The sent document carrying our reference; a draft left by a half-done send is deleted instead."""
        for page in range(1, _FIND_MAX_PAGES + 1):
            body = self._call("GET", self._base, params={"page": page, "perPage": 100}).json()
            for doc in body.get("documents") or []:
                if doc.get("externalId") != reference:
                    continue
                if doc.get("status") == "DRAFT":
                    self._call("DELETE", f"{self._base}/{doc['id']}")
                    return None
                return str(doc["id"])
            if page >= int(body.get("totalPages") or 1):
                break
        return None

    def void(self, provider_request_id: str, reason: str) -> None:
        """Deleting a pending document cancels it for the recipients (Documenso takes no reason)."""
        self._call("DELETE", f"{self._base}/{provider_request_id}")

    def is_signed(self, provider_request_id: str) -> bool:
        return self._call("GET", f"{self._base}/{provider_request_id}").json().get("status") == "COMPLETED"

    def is_declined(self, provider_request_id: str) -> bool:
        document = self._call("GET", f"{self._base}/{provider_request_id}").json()
        return document.get("status") == "REJECTED" or any(
            r.get("signingStatus") == "REJECTED" for r in document.get("recipients") or [])

    def download(self, provider_request_id: str) -> bytes:
        body = self._call("GET", f"{self._base}/{provider_request_id}/download").json()
        url = body.get("downloadUrl")
        if not url:
            raise RetryableError(f"{self.name}: no downloadUrl yet for document {provider_request_id}")
        pdf = self._call("GET", url, auth=False).content
        if not pdf.startswith(b"%PDF"):
            raise RetryableError(f"{self.name}: download of document {provider_request_id} is not a PDF")
        return pdf

    # --- webhooks -----------------------------------------------------------------------------
    def parse_callback(self, inbound: Inbound) -> Callback:
        """Check the shared secret header and the payload shape. Raises WebhookRejected."""
        if not self.settings.documenso_webhook_secret:
            raise WebhookRejected(404, "PARTNERFLOW_DOCUMENSO_WEBHOOK_SECRET is not set")
        given = next((v for k, v in inbound.headers.items() if k.lower() == "x-documenso-secret"), "")
        expected = self.settings.documenso_webhook_secret.get_secret_value()
        if not same_secret(given, expected):
            raise WebhookRejected(401, "webhook secret does not match")
        payload = json_payload(inbound.body, what="webhook",
                               check=lambda p: (p["event"], p["payload"]["id"], iso_time(p["createdAt"])))
        return Callback(event_id=f"{payload['payload']['id']}:{payload['event']}:{payload['createdAt']}",
                        event_type=payload["event"], occurred_at=iso_time(payload["createdAt"]), payload=payload)

    def completion(self, payload: dict[str, Any]) -> Target | None:
        if payload["event"] not in COMPLETION_EVENTS:
            return None
        return self._target(payload, {"event_type": payload["event"], "created_at": payload["createdAt"]})

    def declined(self, payload: dict[str, Any]) -> Target | None:
        if payload["event"] != "DOCUMENT_REJECTED":
            return None
        return self._target(payload, {"reason": "rejected", "created_at": payload["createdAt"]})

    @staticmethod
    def _target(payload: dict[str, Any], details: dict[str, Any]) -> Target:
        document = payload["payload"]
        return Target(str(document["id"]), document.get("externalId"), details)
