"""A local stand-in for SendGrid's v3 /mail/send, speaking its wire format.

202 with X-Message-Id on success; 400 with an `errors` body for invalid recipients or more
than 1,000 personalizations; 401 without a Bearer key; injected faults: any status with
headers (429 + Retry-After, 500), or a stall (slow answer) after the mail was accepted.
It records every accepted request (or only counts them, for the benchmark).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class FakeSendGrid:
    def __init__(self, record: bool = True):
        self.record = record
        self.requests: list[dict] = []  # accepted bodies
        self.accepted_messages = 0
        self.attempts = 0  # every POST, accepted or not
        self.faults: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, str(value))
                    self.send_header("Content-Length", str(len(data)))
                    if data:
                        self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.attempts += 1
                    fault = fake.faults.pop(0) if fake.faults else None
                if self.path != "/v3/mail/send":
                    return self._answer(404, {"errors": [{"message": "not found"}]})
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    return self._answer(401, {"errors": [{"message": "authorization required"}]})
                if fault and fault["kind"] == "status":
                    return self._answer(fault["status"], fault["body"], fault["headers"])
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, {"errors": [{"message": "Bad Request", "field": None}]})
                personalizations = body.get("personalizations") or []
                if not 1 <= len(personalizations) <= 1000:
                    return self._answer(400, {"errors": [{"field": "personalizations",
                                                          "message": "between 1 and 1000 personalizations"}]})
                errors = [{"field": f"personalizations.{i}.to.0.email",
                           "message": "Does not contain a valid address."}
                          for i, p in enumerate(personalizations) if not EMAIL.match(p["to"][0]["email"])]
                if errors:
                    return self._answer(400, {"errors": errors})
                message_id = uuid.uuid4().hex[:22]
                with fake.lock:
                    fake.accepted_messages += len(personalizations)
                    if fake.record:
                        fake.requests.append({"body": body, "message_id": message_id})
                if fault and fault["kind"] == "stall":
                    time.sleep(fault["seconds"])  # accepted, but the client gives up first
                return self._answer(202, None, {"X-Message-Id": message_id})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeSendGrid:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, status: int, *, times: int = 1, headers: dict | None = None, body: dict | None = None):
        body = body if body is not None else {"errors": [{"message": f"fake failure {status}"}]}
        with self.lock:
            self.faults += [{"kind": "status", "status": status, "headers": headers or {}, "body": body}] * times

    def stall_next(self, seconds: float) -> None:
        with self.lock:
            self.faults.append({"kind": "stall", "seconds": seconds})

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
