"""Dropbox Sign (formerly HelloSign) API v3 over httpx.

Auth: HTTP basic with the API key as user name. Requests are multipart forms; answers are
`{"signature_request": {...}}`, errors `{"error": {"error_msg", "error_name"}}`.
Callbacks are multipart/form-data with one `json` field; `event.event_hash` is
hex HMAC-SHA256(key=API key, msg=event_time + event_type), and the reply body must be
exactly `Hello API Event Received` or Dropbox Sign retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from partnerflow.providers.errors import PermanentError, RetryableError
from partnerflow.providers.esign.base import Callback, Envelope, Inbound, NotReady, Target, WebhookRejected
from partnerflow.providers.esign.saas import HttpVendor, call, error_reason, http_client, required, same_secret
from partnerflow.providers.esign.settings import EsignSettings

HELLO = "Hello API Event Received"
REFERENCE_FIELD = "partnerflow_ref"
# Events after which the signed PDF can be fetched. Files may still be rendering right after
# `all_signed` (the API answers 409); `downloadable` follows once they are ready.
COMPLETION_EVENTS = ("signature_request_all_signed", "signature_request_downloadable")
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _reason(response: httpx.Response) -> str:
    return error_reason(response, lambda body: ((body.get("error") or {}).get("error_name"),
                                                (body.get("error") or {}).get("error_msg")))


class DropboxSignProvider(HttpVendor):
    name = "dropbox_sign"
    callback_reply = HELLO  # Dropbox Sign counts a callback as delivered only with this exact body
    callback_media_types = ("multipart/form-data", "application/x-www-form-urlencoded")

    def __init__(self, settings: EsignSettings):
        self.settings = settings
        self._key = required(settings, "dropbox_sign_api_key")
        self._base = settings.dropbox_sign_api_host.rstrip("/") + "/v3"

    def _call(self, method: str, path: str, *, creating: bool = False, **kwargs) -> httpx.Response:
        with http_client(self.settings.esign_timeout_seconds) as client:
            return call(client, method, self._base + path, provider=self.name, reason_of=_reason,
                        creating=creating, auth=(self._key, ""), **kwargs)

    # --- the provider interface ---------------------------------------------------------------
    def send(self, envelope: Envelope) -> str:
        """Returns the Dropbox Sign signature_request_id."""
        data = {
            "title": envelope.title,
            "subject": envelope.title,
            "message": envelope.message or f"Please sign: {envelope.title}",
            "signers[0][name]": envelope.signer_name,
            "signers[0][email_address]": envelope.signer_email,
            f"metadata[{REFERENCE_FIELD}]": envelope.reference,
            "test_mode": "1" if self.settings.dropbox_sign_test_mode else "0",
        }
        mime = DOCX_MIME if envelope.filename.endswith(".docx") else "application/pdf"
        response = self._call("POST", "/signature_request/send", creating=True, data=data,
                              files={"file[0]": (envelope.filename, envelope.document, mime)})
        try:
            return response.json()["signature_request"]["signature_request_id"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"{self.name}: send answered without a signature_request_id") from None

    def find(self, reference: str) -> str | None:
        response = self._call("GET", "/signature_request/list", params={"query": reference, "page_size": 100})
        for item in response.json().get("signature_requests") or []:
            if (item.get("metadata") or {}).get(REFERENCE_FIELD) == reference:
                return item["signature_request_id"]
        return None

    def void(self, provider_request_id: str, reason: str) -> None:
        """Cancel an incomplete request (Dropbox Sign takes no reason; ours goes to the audit log)."""
        self._call("POST", f"/signature_request/cancel/{provider_request_id}")

    def is_signed(self, provider_request_id: str) -> bool:
        response = self._call("GET", f"/signature_request/{provider_request_id}")
        return bool((response.json().get("signature_request") or {}).get("is_complete"))

    def is_declined(self, provider_request_id: str) -> bool:
        request = self._call("GET", f"/signature_request/{provider_request_id}").json().get("signature_request") or {}
        return bool(request.get("is_declined")) or any(
            s.get("status_code") == "declined" for s in request.get("signatures") or [])

    def download(self, provider_request_id: str) -> bytes:
        try:
            response = self._call("GET", f"/signature_request/files/{provider_request_id}",
                                  params={"file_type": "pdf"})
        except PermanentError as exc:
            if "HTTP 409" in exc.reason:  # files still being processed
                raise NotReady(exc.reason, retry_after=30) from None
            raise
        if not response.content.startswith(b"%PDF"):
            raise RetryableError(f"{self.name}: files download did not return a PDF")
        return response.content

    # --- callbacks --------------------------------------------------------------------------
    def parse_callback(self, inbound: Inbound) -> Callback:
        """Verify one callback's `json` form field by its event hash. Raises WebhookRejected."""
        form_json = inbound.form.get("json")
        if not form_json:
            raise WebhookRejected(400, "missing json field")
        try:
            payload = json.loads(form_json)
            event = payload["event"]
            event_time = str(event["event_time"])
            event_type = str(event["event_type"])
            given = str(event["event_hash"])
        except (ValueError, KeyError, TypeError):
            raise WebhookRejected(400, "malformed event") from None
        expected = hmac.new(self._key.encode(), (event_time + event_type).encode(), hashlib.sha256).hexdigest()
        if not same_secret(given, expected):
            raise WebhookRejected(401, "event hash does not match")
        try:
            occurred_at = datetime.fromtimestamp(int(event_time), tz=UTC)
        except (ValueError, OverflowError):
            raise WebhookRejected(400, "malformed event_time") from None
        request_id = (payload.get("signature_request") or {}).get("signature_request_id")
        # Dropbox Sign gives no event id; the request, type and time identify one event.
        return Callback(event_id=f"{request_id or 'account'}:{event_type}:{event_time}", event_type=event_type,
                        occurred_at=occurred_at, payload=payload,
                        test=event_type == "callback_test")  # sent when the callback URL is set up

    def completion(self, payload: dict[str, Any]) -> Target | None:
        event = payload["event"]
        request = payload.get("signature_request") or {}
        if event["event_type"] not in COMPLETION_EVENTS or not request.get("signature_request_id"):
            return None
        # Right after `all_signed` the files may still be rendering; `downloadable` follows.
        return Target(request["signature_request_id"], (request.get("metadata") or {}).get(REFERENCE_FIELD),
                      {"event_type": event["event_type"], "event_time": event["event_time"]},
                      final=event["event_type"] != "signature_request_all_signed")

    def declined(self, payload: dict[str, Any]) -> Target | None:
        event = payload["event"]
        request = payload.get("signature_request") or {}
        if event["event_type"] != "signature_request_declined" or not request.get("signature_request_id"):
            return None
        reasons = [s.get("decline_reason") for s in request.get("signatures") or [] if s.get("decline_reason")]
        return Target(request["signature_request_id"], (request.get("metadata") or {}).get(REFERENCE_FIELD),
                      {"reason": "; ".join(reasons) or "declined", "event_time": event["event_time"]})
