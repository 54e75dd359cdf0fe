"""A stateful fake of the Dropbox Sign API v3 (the parts Partnerflow uses), on a local port.

Speaks the wire format: HTTP basic auth with the API key as user name, multipart form posts
(`file[0]`, `signers[0][name]`, `metadata[key]`), `{"signature_request": {...}}` answers,
`{"error": {"error_msg", "error_name"}}` errors, and event callbacks whose `event_hash` is
HMAC-SHA256(api key, event_time + event_type) in a multipart `json` field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from partnerflow.testing.local_server import FakeProvider

FAKE_PDF = b"%PDF-1.4\n% fake signed document\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@dataclass
class FakeRequest:
    id: str
    title: str
    subject: str
    message: str
    signers: list[dict]
    metadata: dict[str, str]
    files: list[tuple[str, bytes]]
    test_mode: bool
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "awaiting_signature"  # awaiting_signature | signed | declined | cancelled
    decline_reason: str | None = None

    def as_json(self) -> dict:
        return {
            "signature_request_id": self.id,
            "title": self.title,
            "subject": self.subject,
            "message": self.message,
            "metadata": self.metadata,
            "is_complete": self.status == "signed",
            "is_declined": False,
            "has_error": False,
            "test_mode": self.test_mode,
            "created_at": self.created_at,
            "files_url": f"https://api.hellosign.com/v3/signature_request/files/{self.id}",
            "signatures": [
                {"signature_id": f"sig-{self.id}-{i}", "signer_email_address": s["email_address"],
                 "signer_name": s["name"], "decline_reason": self.decline_reason,
                 "status_code": {"signed": "signed", "declined": "declined"}.get(self.status, "awaiting_signature")}
                for i, s in enumerate(self.signers)
            ],
        }


class FakeDropboxSign(FakeProvider):
    def __init__(self, api_key: str = "dbs-test-key"):
        super().__init__()
        self.api_key = api_key
        self.requests: dict[str, FakeRequest] = {}
        self.app = self._build()

    # --- test helpers -------------------------------------------------------------------

    def sign(self, request_id: str) -> None:
        self.requests[request_id].status = "signed"

    def decline(self, request_id: str, reason: str) -> None:
        self.requests[request_id].status = "declined"
        self.requests[request_id].decline_reason = reason

    def callback(self, request_id: str, event_type: str = "signature_request_all_signed", *,
                 event_time: int | None = None, key: str | None = None) -> dict[str, str]:
        """The form fields Dropbox Sign posts to the callback URL, hashed with `key` (default: the API key)."""
        event_time = str(event_time if event_time is not None else int(time.time()))
        digest = hmac.new((key or self.api_key).encode(), (event_time + event_type).encode(), hashlib.sha256)
        payload = {
            "event": {
                "event_time": event_time,
                "event_type": event_type,
                "event_hash": digest.hexdigest(),
                "event_metadata": {"related_signature_id": None, "reported_for_account_id": "acct-1",
                                   "reported_for_app_id": None, "event_message": None},
            },
            "signature_request": self.requests[request_id].as_json() if request_id in self.requests else
            {"signature_request_id": request_id, "metadata": {}},
        }
        return {"json": json.dumps(payload)}

    # --- the API --------------------------------------------------------------------------
    def _error(self, status: int, name: str, msg: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"error_msg": msg, "error_name": name}}, status_code=status, headers=headers)

    def refuse(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        user = base64.b64decode(header[6:]).decode().partition(":")[0] if header.startswith("Basic ") else ""
        if not hmac.compare_digest(user, self.api_key):
            return self._error(401, "unauthorized", "Unauthorized api key")
        return None

    def error_body(self, status: int) -> dict:
        return {"error": {"error_msg": f"injected {status}",
                          "error_name": "exceeded_rate" if status == 429 else "internal_error"}}

    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self

        @app.post("/v3/signature_request/send")
        async def send(request: Request):
            form = await request.form()
            files = []
            for key, value in form.multi_items():
                if key.startswith("file[") and hasattr(value, "read"):
                    files.append((value.filename, await value.read()))
            signers: dict[int, dict] = {}
            metadata: dict[str, str] = {}
            for key, value in form.multi_items():
                if key.startswith("signers["):
                    index, _, rest = key[len("signers["):].partition("]")
                    signers.setdefault(int(index), {})[rest.strip("[]")] = value
                elif key.startswith("metadata["):
                    metadata[key[len("metadata["):-1]] = value
            if not files:
                return fake._error(400, "bad_request", "Must specify files to be sent")
            ordered = [signers[i] for i in sorted(signers)]
            if not ordered or not all(s.get("email_address") and s.get("name") for s in ordered):
                return fake._error(400, "bad_request", "Signer email_address and name are required")
            if "@" not in ordered[0]["email_address"]:
                return fake._error(400, "bad_request", f"Invalid email address: {ordered[0]['email_address']}")
            sr = FakeRequest(id=uuid.uuid4().hex, title=form.get("title", ""), subject=form.get("subject", ""),
                             message=form.get("message", ""), signers=ordered, metadata=metadata, files=files,
                             test_mode=form.get("test_mode") == "1")
            fake.requests[sr.id] = sr
            return {"signature_request": sr.as_json()}

        @app.get("/v3/signature_request/list")
        async def list_requests(query: str = "", page: int = 1, page_size: int = 20):
            # Free-text terms match title, metadata values and file names, as the real search does.
            terms = [t for t in query.split() if t not in ("AND", "OR")]
            found = [r for r in fake.requests.values()
                     if all(t in r.title or t in r.metadata.values() or any(t in f for f, _ in r.files)
                            for t in terms)]
            found.sort(key=lambda r: r.created_at, reverse=True)
            chunk = found[(page - 1) * page_size: page * page_size]
            return {"signature_requests": [r.as_json() for r in chunk],
                    "list_info": {"page": page, "num_pages": max(1, -(-len(found) // page_size)),
                                  "num_results": len(found), "page_size": page_size}}

        @app.get("/v3/signature_request/{request_id}")
        async def get_request(request_id: str):
            sr = fake.requests.get(request_id)
            if not sr:
                return fake._error(404, "not_found", "Not found")
            return {"signature_request": sr.as_json()}

        @app.post("/v3/signature_request/cancel/{request_id}")
        async def cancel(request_id: str):
            sr = fake.requests.get(request_id)
            if not sr:
                return fake._error(404, "not_found", "Not found")
            if sr.status == "signed":
                return fake._error(400, "signature_request_cancel_failed", "Completed requests cannot be cancelled")
            sr.status = "cancelled"
            return Response(status_code=200)

        @app.get("/v3/signature_request/files/{request_id}")
        async def files(request_id: str, file_type: str = "pdf"):
            sr = fake.requests.get(request_id)
            if not sr:
                return fake._error(404, "not_found", "Not found")
            if sr.status != "signed":
                return fake._error(409, "conflict", "Files are still being processed. Please try again later.")
            return Response(FAKE_PDF, media_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="{request_id}.pdf"'})

        return app
