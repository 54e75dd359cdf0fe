"""A local stand-in for SendGrid's v3 /mail/send, speaking its wire format.

202 with X-Message-Id on success; 400 with an `errors` body for invalid recipients or more
than 1,000 personalizations; 401 without a Bearer key; injected faults (partnerflow.testing.faults):
any status with headers (429 + Retry-After, 500), a stall after the mail was accepted, a drop.
It records every accepted request (or only counts them, for the benchmark).
"""

from __future__ import annotations

import json
import re
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from partnerflow.testing.local_server import FakeProvider

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SEND_PATH = "/v3/mail/send"


class FakeSendGrid(FakeProvider):
    def __init__(self, record: bool = True):
        super().__init__()
        self.record = record
        self.requests: list[dict] = []  # accepted bodies
        self.accepted_messages = 0
        self.app = Starlette(routes=[Route(SEND_PATH, self._send, methods=["POST"])])

    @property
    def attempts(self) -> int:
        """Every POST, accepted or not."""
        return self.calls("POST")

    def refuse(self, request: Request) -> Response | None:
        if request.url.path != SEND_PATH:
            return JSONResponse({"errors": [{"message": "not found"}]}, status_code=404)
        if not (request.headers.get("authorization") or "").startswith("Bearer "):
            return JSONResponse({"errors": [{"message": "authorization required"}]}, status_code=401)
        return None

    def error_body(self, status: int) -> dict:
        return {"errors": [{"message": f"fake failure {status}"}]}

    async def _send(self, request: Request):
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"errors": [{"message": "Bad Request", "field": None}]}, status_code=400)
        personalizations = body.get("personalizations") or []
        if not 1 <= len(personalizations) <= 1000:
            return JSONResponse({"errors": [{"field": "personalizations",
                                             "message": "between 1 and 1000 personalizations"}]}, status_code=400)
        errors = [{"field": f"personalizations.{i}.to.0.email", "message": "Does not contain a valid address."}
                  for i, p in enumerate(personalizations) if not EMAIL.match(p["to"][0]["email"])]
        if errors:
            return JSONResponse({"errors": errors}, status_code=400)
        message_id = uuid.uuid4().hex[:22]
        self.accepted_messages += len(personalizations)
        if self.record:
            self.requests.append({"body": body, "message_id": message_id})
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    def messages(self) -> list[dict]:
        """Each accepted personalization with its request's X-Message-Id, rendered as SendGrid would."""
        out = []
        for request in self.requests:
            body = request["body"]
            for p in body["personalizations"]:
                subs = p.get("substitutions") or {}
                content = {}
                for part in body["content"]:
                    value = part["value"]
                    for tag, replacement in subs.items():
                        value = value.replace(tag, replacement)
                    content[part["type"]] = value
                out.append({"to": p["to"][0]["email"], "subject": p.get("subject"), "headers": p.get("headers", {}),
                            "custom_args": p.get("custom_args", {}), "categories": body.get("categories", []),
                            "from": body["from"], "content": content, "x_message_id": request["message_id"]})
        return out
