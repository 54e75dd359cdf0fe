"""A stateful fake of the DocuSign eSignature REST API v2.1 (the parts Partnerflow uses), on a local port.

Speaks the wire format: Bearer token, JSON envelope definitions with base64 documents,
`{"errorCode", "message"}` errors, `custom_field=name=value` envelope search, and Connect
JSON (SIM) notifications signed in `X-DocuSign-Signature-1` = base64(HMAC-SHA256(key, body)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from partnerflow.testing.local_server import FakeProvider

FAKE_PDF = b"%PDF-1.4\n% fake docusign combined document\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class FakeEnvelope:
    id: str
    definition: dict
    documents: list[bytes]
    status: str = "sent"  # sent | completed | voided
    voided_reason: str | None = None

    def custom_fields(self) -> dict[str, str]:
        fields = (self.definition.get("customFields") or {}).get("textCustomFields") or []
        return {f["name"]: f.get("value", "") for f in fields}


class FakeDocuSign(FakeProvider):
    def __init__(self, token: str = "ds-test-token", account_id: str = "acc-123", hmac_key: str = "connect-key"):
        super().__init__()
        self.token = token
        self.account_id = account_id
        self.hmac_key = hmac_key
        self.envelopes: dict[str, FakeEnvelope] = {}
        self.app = self._build()

    @property
    def url(self) -> str:
        """The api host setting: base URL ending in /restapi."""
        return self._server.url + "/restapi"

    def complete(self, envelope_id: str) -> None:
        self.envelopes[envelope_id].status = "completed"

    def connect_notification(self, envelope_id: str, event: str = "envelope-completed", *,
                             generated: str | None = None, key: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers DocuSign Connect posts (JSON SIM format, HMAC signature 1)."""
        body = json.dumps({
            "event": event,
            "apiVersion": "v2.1",
            "uri": f"/restapi/v2.1/accounts/{self.account_id}/envelopes/{envelope_id}",
            "retryCount": 0,
            "configurationId": 10001,
            "generatedDateTime": generated or _now(),
            "data": {"accountId": self.account_id, "userId": "user-1", "envelopeId": envelope_id},
        }).encode()
        digest = hmac.new((key or self.hmac_key).encode(), body, hashlib.sha256).digest()
        return body, {"Content-Type": "application/json",
                      "X-DocuSign-Signature-1": base64.b64encode(digest).decode()}

    def _error(self, status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"errorCode": code, "message": message}, status_code=status)

    def refuse(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(401, "USER_AUTHENTICATION_FAILED", "One or both of Username and Password are invalid.")
        return None

    def error_body(self, status: int) -> dict:
        code = "HOURLY_APIINVOCATION_LIMIT_EXCEEDED" if status == 429 else "UNSPECIFIED_ERROR"
        return {"errorCode": code, "message": f"injected {status}"}

    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self
        prefix = "/restapi/v2.1/accounts/{account_id}/envelopes"

        def account_ok(account_id: str) -> bool:
            return account_id == fake.account_id

        @app.post(prefix)
        async def create(account_id: str, request: Request):
            if not account_ok(account_id):
                return fake._error(400, "ACCOUNT_LACKS_PERMISSIONS", "This user lacks sufficient permissions.")
            try:
                definition = await request.json()
            except ValueError:
                return fake._error(400, "INVALID_REQUEST_BODY", "The request body is missing or improperly formatted.")
            docs = definition.get("documents") or []
            signers = (definition.get("recipients") or {}).get("signers") or []
            if not docs or not all(d.get("documentBase64") and d.get("fileExtension") for d in docs):
                return fake._error(400, "ENVELOPE_IS_INCOMPLETE", "The Envelope is not Complete.")
            if not signers or not all("@" in (s.get("email") or "") and s.get("name") for s in signers):
                return fake._error(400, "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT",
                                   "The email address for the recipient is invalid.")
            envelope = FakeEnvelope(id=str(uuid.uuid4()), definition=definition,
                                    documents=[base64.b64decode(d["documentBase64"]) for d in docs],
                                    status=definition.get("status", "created"))
            fake.envelopes[envelope.id] = envelope
            return JSONResponse({"envelopeId": envelope.id, "uri": f"/envelopes/{envelope.id}",
                                 "statusDateTime": _now(), "status": envelope.status}, status_code=201)

        @app.get(prefix)
        async def search(account_id: str, from_date: str | None = None, custom_field: str | None = None):
            if not from_date:
                return fake._error(400, "INVALID_REQUEST_PARAMETER", "from_date is required.")
            found = list(fake.envelopes.values())
            if custom_field:
                name, _, value = custom_field.partition("=")
                found = [e for e in found if e.custom_fields().get(name) == value]
            return {"resultSetSize": str(len(found)), "totalSetSize": str(len(found)),
                    "envelopes": [{"envelopeId": e.id, "status": e.status} for e in found]}

        @app.get(prefix + "/{envelope_id}")
        async def get_envelope(account_id: str, envelope_id: str):
            envelope = fake.envelopes.get(envelope_id)
            if not envelope:
                return fake._error(404, "ENVELOPE_DOES_NOT_EXIST", "The envelope specified does not exist.")
            return {"envelopeId": envelope.id, "status": envelope.status, "statusChangedDateTime": _now()}

        @app.put(prefix + "/{envelope_id}")
        async def update(account_id: str, envelope_id: str, request: Request):
            envelope = fake.envelopes.get(envelope_id)
            if not envelope:
                return fake._error(404, "ENVELOPE_DOES_NOT_EXIST", "The envelope specified does not exist.")
            body = await request.json()
            if body.get("status") == "voided":
                if envelope.status == "completed":
                    return fake._error(400, "ENVELOPE_CANNOT_VOID_INVALID_STATE",
                                       "Only envelopes in the 'Sent' or 'Delivered' states may be voided.")
                if not body.get("voidedReason"):
                    return fake._error(400, "INVALID_REQUEST_PARAMETER", "voidedReason is required.")
                envelope.status = "voided"
                envelope.voided_reason = body["voidedReason"]
            return {"envelopeId": envelope_id}

        @app.get(prefix + "/{envelope_id}/documents/combined")
        async def combined(account_id: str, envelope_id: str):
            envelope = fake.envelopes.get(envelope_id)
            if not envelope:
                return fake._error(404, "ENVELOPE_DOES_NOT_EXIST", "The envelope specified does not exist.")
            return Response(FAKE_PDF, media_type="application/pdf")

        return app
