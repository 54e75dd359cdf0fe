"""DocuSign eSignature REST API v2.1 over httpx.

Auth: `Authorization: Bearer <access token>` (obtaining the token by JWT grant is outside
Partnerflow; the setting holds a current token). Errors are `{"errorCode", "message"}`.
Completion arrives by DocuSign Connect (JSON SIM format) signed with HMAC:
`X-DocuSign-Signature-1..N` = base64(HMAC-SHA256(key, raw body)), one header per active key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from partnerflow.providers.errors import PermanentError
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

REFERENCE_FIELD = "partnerflow_ref"
COMPLETION_EVENTS = ("envelope-completed",)


def _reason(response: httpx.Response) -> str:
    return error_reason(response, lambda body: (body.get("errorCode"), body.get("message")))


class DocuSignProvider(HttpVendor):
    name = "docusign"

    def __init__(self, settings: EsignSettings):
        self.settings = settings
        self._token = required(settings, "docusign_access_token")
        account = required(settings, "docusign_account_id")
        self._base = f"{settings.docusign_api_host.rstrip('/')}/v2.1/accounts/{account}/envelopes"

    def _call(self, method: str, path: str, *, creating: bool = False, **kwargs) -> httpx.Response:
        with http_client(self.settings.esign_timeout_seconds) as client:
            return call(client, method, self._base + path, provider=self.name, reason_of=_reason,
                        creating=creating, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)

    # --- the provider interface ---------------------------------------------------------------
    def send(self, envelope: Envelope) -> str:
        """Returns the DocuSign envelopeId."""
        name, _, extension = envelope.filename.rpartition(".")
        definition = {
            "emailSubject": envelope.title[:100],  # DocuSign caps the subject at 100 characters
            "emailBlurb": envelope.message,
            "documents": [{"documentId": "1", "name": name or envelope.filename, "fileExtension": extension or "docx",
                           "documentBase64": base64.b64encode(envelope.document).decode()}],
            "recipients": {"signers": [{"recipientId": "1", "routingOrder": "1", "name": envelope.signer_name,
                                        "email": envelope.signer_email}]},
            "customFields": {"textCustomFields": [{"name": REFERENCE_FIELD, "value": envelope.reference,
                                                   "show": "false", "required": "false"}]},
            "status": "sent",
        }
        response = self._call("POST", "", creating=True, json=definition)
        try:
            return response.json()["envelopeId"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"{self.name}: create answered without an envelopeId") from None

    def find(self, reference: str) -> str | None:
        # from_date is required; envelopes older than the reconcile window are not ours to find.
        since = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        response = self._call("GET", "", params={"from_date": since,
                                                 "custom_field": f"{REFERENCE_FIELD}={reference}"})
        envelopes = response.json().get("envelopes") or []
        return envelopes[0]["envelopeId"] if envelopes else None

    def void(self, provider_request_id: str, reason: str) -> None:
        self._call("PUT", f"/{provider_request_id}",
                   json={"status": "voided", "voidedReason": (reason or "voided")[:200]})

    def is_signed(self, provider_request_id: str) -> bool:
        return self._call("GET", f"/{provider_request_id}").json().get("status") == "completed"

    def is_declined(self, provider_request_id: str) -> bool:
        return self._call("GET", f"/{provider_request_id}").json().get("status") == "declined"

    def download(self, provider_request_id: str) -> bytes:
        response = self._call("GET", f"/{provider_request_id}/documents/combined")
        if not response.content.startswith(b"%PDF"):
            raise PermanentError(f"{self.name}: combined document is not a PDF")
        return response.content

    # --- Connect callbacks ---------------------------------------------------------------------
    def parse_callback(self, inbound: Inbound) -> Callback:
        """Verify one Connect notification by its HMAC headers. Raises WebhookRejected."""
        if not self.settings.docusign_connect_hmac_key:  # unset or empty: every notification is refused
            raise WebhookRejected(404, "PARTNERFLOW_DOCUSIGN_CONNECT_HMAC_KEY is not set")
        key = self.settings.docusign_connect_hmac_key.get_secret_value().encode()
        given = [v for k, v in inbound.headers.items() if k.lower().startswith("x-docusign-signature-")]
        if not given:
            raise WebhookRejected(401, "unsigned notification")
        expected = base64.b64encode(hmac.new(key, inbound.body, hashlib.sha256).digest()).decode()
        if not any(same_secret(value.strip(), expected) for value in given):
            raise WebhookRejected(401, "signature does not match")
        payload = json_payload(inbound.body, what="notification",
                               check=lambda p: (p["event"], p["data"]["envelopeId"], iso_time(p["generatedDateTime"])))
        return Callback(event_id=f"{payload['data']['envelopeId']}:{payload['event']}:{payload['generatedDateTime']}",
                        event_type=payload["event"], occurred_at=iso_time(payload["generatedDateTime"]),
                        payload=payload)

    def completion(self, payload: dict[str, Any]) -> Target | None:
        if payload["event"] not in COMPLETION_EVENTS:
            return None
        return self._target(payload, {"event_type": payload["event"], "generated_at": payload["generatedDateTime"]})

    def declined(self, payload: dict[str, Any]) -> Target | None:
        if payload["event"] not in ("envelope-declined", "recipient-declined"):
            return None
        return self._target(payload, {"reason": "declined", "generated_at": payload["generatedDateTime"]})

    @staticmethod
    def _target(payload: dict[str, Any], details: dict[str, Any]) -> Target:
        summary = payload["data"].get("envelopeSummary") or {}
        fields = (summary.get("customFields") or {}).get("textCustomFields") or []
        reference = next((f.get("value") for f in fields if f.get("name") == REFERENCE_FIELD), None)
        return Target(payload["data"]["envelopeId"], reference, details)
