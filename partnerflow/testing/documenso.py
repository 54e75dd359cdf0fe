"""A stateful fake of the Documenso API v1 (the parts Partnerflow uses), on a local port.

Create answers with a presigned `uploadUrl` (here: /upload/<token> on the same server, no auth),
`send` refuses a document without an uploaded PDF, errors are `{"message": ...}`, and
webhooks carry the shared secret as-is in `X-Documenso-Secret`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from partnerflow.testing.local_server import FakeProvider

FAKE_PDF = b"%PDF-1.7\n% fake documenso signed document\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


@dataclass
class FakeDocument:
    id: int
    title: str
    external_id: str | None
    recipients: list[dict]
    upload_token: str
    pdf: bytes | None = None
    status: str = "DRAFT"  # DRAFT | PENDING | COMPLETED | DELETED

    def as_json(self) -> dict:
        return {"id": self.id, "externalId": self.external_id, "title": self.title, "status": self.status,
                "userId": 1, "teamId": None, "createdAt": "2026-01-01T00:00:00.000Z"}


class FakeDocumenso(FakeProvider):
    def __init__(self, api_key: str = "api_documenso_test", webhook_secret: str = "documenso-shared-secret"):
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.documents: dict[int, FakeDocument] = {}
        self._ids = count(101)
        self.app = self._build()

    def live(self) -> list[FakeDocument]:
        return [d for d in self.documents.values() if d.status != "DELETED"]

    def complete(self, document_id: str | int) -> None:
        self.documents[int(document_id)].status = "COMPLETED"

    def webhook(self, document_id: str | int, event: str = "DOCUMENT_COMPLETED", *, created_at: str | None = None,
                secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        doc = self.documents.get(int(document_id))
        payload = doc.as_json() if doc else {"id": int(document_id), "externalId": None, "status": "COMPLETED"}
        body = json.dumps({
            "event": event,
            "payload": payload,
            "createdAt": created_at or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "webhookEndpoint": "https://partners.example/webhooks/documenso",
        }).encode()
        return body, {"Content-Type": "application/json", "X-Documenso-Secret": secret or self.webhook_secret}

    def refuse(self, request: Request) -> Response | None:
        if request.url.path.startswith("/api/") and \
                request.headers.get("authorization", "").removeprefix("Bearer ") != self.api_key:
            return _error(401, "Unauthorized")
        return None

    def _build(self) -> FastAPI:
        app = FastAPI()
        fake = self
        base = "/api/v1/documents"

        @app.post(base)
        async def create(request: Request):
            body = await request.json()
            recipients = body.get("recipients") or []
            if not body.get("title") or not recipients:
                return _error(400, "title and recipients are required")
            if not all("@" in (r.get("email") or "") for r in recipients):
                return _error(400, "Invalid email")
            doc = FakeDocument(id=next(fake._ids), title=body["title"], external_id=body.get("externalId"),
                               recipients=recipients, upload_token=uuid.uuid4().hex)
            fake.documents[doc.id] = doc
            return {"uploadUrl": f"{fake.url}/upload/{doc.upload_token}", "documentId": doc.id,
                    "externalId": doc.external_id,
                    "recipients": [{"recipientId": i + 1, "name": r["name"], "email": r["email"], "role": r["role"],
                                    "signingUrl": f"{fake.url}/sign/{doc.id}-{i}", "token": uuid.uuid4().hex}
                                   for i, r in enumerate(recipients)]}

        @app.put("/upload/{token}")
        async def upload(token: str, request: Request):
            doc = next((d for d in fake.documents.values() if d.upload_token == token), None)
            if doc is None:
                return Response("NoSuchUpload", status_code=403)
            doc.pdf = await request.body()
            return Response(status_code=200)

        @app.post(base + "/{document_id}/send")
        async def send(document_id: int):
            doc = fake.documents.get(document_id)
            if doc is None or doc.status == "DELETED":
                return _error(404, "Document not found")
            if not doc.pdf or not doc.pdf.startswith(b"%PDF"):
                return _error(400, "Document data is missing or not a PDF")
            doc.status = "PENDING"
            return {"message": "Document sent for signing successfully", "id": doc.id, "status": doc.status}

        @app.get(base)
        async def list_documents(page: int = 1, perPage: int = 10):
            docs = sorted(fake.live(), key=lambda d: d.id, reverse=True)
            chunk = docs[(page - 1) * perPage: page * perPage]
            return {"documents": [d.as_json() for d in chunk], "totalPages": max(1, -(-len(docs) // perPage))}

        @app.get(base + "/{document_id}")
        async def get_document(document_id: int):
            doc = fake.documents.get(document_id)
            if doc is None or doc.status == "DELETED":
                return _error(404, "Document not found")
            return doc.as_json()

        @app.delete(base + "/{document_id}")
        async def delete(document_id: int):
            doc = fake.documents.get(document_id)
            if doc is None or doc.status == "DELETED":
                return _error(404, "Document not found")
            doc.status = "DELETED"
            return doc.as_json()

        @app.get(base + "/{document_id}/download")
        async def download(document_id: int):
            doc = fake.documents.get(document_id)
            if doc is None or doc.status != "COMPLETED":
                return _error(404, "Document not found or not completed")
            return {"downloadUrl": f"{fake.url}/files/{doc.id}.pdf"}

        @app.get("/files/{name}")
        async def files(name: str):
            return Response(FAKE_PDF, media_type="application/pdf")

        return app
