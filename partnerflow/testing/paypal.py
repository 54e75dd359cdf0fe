"""A small stateful stand-in for PayPal's Payouts API (v1), speaking its wire format.

What it reproduces:
- OAuth2 client credentials at `/v1/oauth2/token` (HTTP Basic), Bearer tokens that can be expired
  by the test (`expire_tokens()` -> 401 invalid_token on the next call);
- `POST /v1/payments/payouts`: 201 with `batch_header.payout_batch_id`, status PENDING; a
  `sender_batch_id` used before is rejected (400 USER_BUSINESS_ERROR naming it, with a HATEOAS link to
  the original payout) — PayPal's own dedupe; VALIDATION_ERROR for malformed items;
- `GET /v1/payments/payouts/{id}`: batch and item statuses. Items settle on the first read when
  `settle_on_read` is set: SUCCESS, or FAILED / UNCLAIMED for receivers listed in `outcomes`;
- injected faults (partnerflow.testing.faults), aimed at batch creation: 429 with Retry-After, 5xx,
  stalls before/after the batch is created, a connection dropped after it.
`items()` is the provider's own record of every payment made.
"""

from __future__ import annotations

import base64
import itertools
import re
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from partnerflow.testing.local_server import FakeProvider

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"

_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")


def _error(status: int, name: str, message: str, details: list | None = None,
           links: list | None = None) -> JSONResponse:
    body = {"name": name, "message": message, "debug_id": "fakedebug01"}
    if details:
        body["details"] = details
    if links:
        body["links"] = links
    return JSONResponse(body, status_code=status)


class FakePayPal(FakeProvider):
    fault_method = "POST"
    fault_path = "/v1/payments/payouts"  # not the token: faults hit the payment itself

    def __init__(self):
        super().__init__()
        self.batches: dict[str, dict] = {}  # payout_batch_id -> {"header":..., "items":[...]}
        self.by_sender_batch_id: dict[str, str] = {}
        self.outcomes: dict[str, tuple[str, str]] = {}  # receiver -> (transaction_status, error name)
        self.settle_on_read = True
        self.token_requests = 0
        self.create_requests = 0
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v1/oauth2/token", self._token, methods=["POST"]),
            Route("/v1/payments/payouts", self._create, methods=["POST"]),
            Route("/v1/payments/payouts/{batch_id}", self._get, methods=["GET"]),
        ])

    # --- what tests look at / steer ---
    def items(self) -> list[dict]:
        return [item for batch in self.batches.values() for item in batch["items"]]

    def items_for(self, sender_item_id: str) -> list[dict]:
        return [i for i in self.items() if i["payout_item"]["sender_item_id"] == sender_item_id]

    def expire_tokens(self) -> None:
        self._tokens.clear()

    # --- the API ---
    async def _token(self, request: Request):
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = await request.form()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client", "error_description": "Client Authentication failed"},
                                status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        self.token_requests += 1
        token = f"A21AA-fake-token-{next(self._ids)}"
        self._tokens.add(token)
        return JSONResponse({"scope": "https://uri.paypal.com/services/payments/payouts", "access_token": token,
                             "token_type": "Bearer", "app_id": "APP-FAKE", "expires_in": 32400})

    def refuse(self, request: Request) -> Response | None:
        if request.url.path == "/v1/oauth2/token":
            return None  # client credentials, checked there
        auth = request.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and auth[len("Bearer "):] in self._tokens):
            return JSONResponse({"error": "invalid_token", "error_description": "Access Token not found in cache"},
                                status_code=401)
        return None

    def error_body(self, status: int) -> dict:
        name, message = {429: ("RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."),
                         503: ("SERVICE_UNAVAILABLE", "Service unavailable.")}.get(
            status, ("INTERNAL_SERVER_ERROR", "An internal server error occurred."))
        return {"name": name, "message": message, "debug_id": "fakedebug01"}

    def _link(self, batch_id: str) -> dict:
        return {"href": f"{self.url}/v1/payments/payouts/{batch_id}", "rel": "self", "method": "GET",
                "encType": "application/json"}

    async def _create(self, request: Request):
        body = await request.json()
        self.create_requests += 1
        header = body.get("sender_batch_header") or {}
        sender_batch_id = header.get("sender_batch_id")
        items = body.get("items") or []
        problems = self._validate(sender_batch_id, items)
        if problems:
            return _error(400, "VALIDATION_ERROR", "Invalid request - see details", details=problems)
        with self._lock:
            existing = self.by_sender_batch_id.get(sender_batch_id)
            if existing is None:
                batch_id = f"FAKEBATCH{next(self._ids):06d}"
                self.by_sender_batch_id[sender_batch_id] = batch_id
                self.batches[batch_id] = self._new_batch(batch_id, header, items)
        if existing is not None:
            return _error(400, "USER_BUSINESS_ERROR", f"Batch with given sender_batch_id already exists: "
                          f"{sender_batch_id}", details=[{"field": "sender_batch_id", "location": "body",
                                                         "issue": "SENDER_BATCH_ID_ALREADY_USED",
                                                         "value": sender_batch_id}],
                          links=[self._link(existing)])
        return JSONResponse({"batch_header": self.batches[batch_id]["header"], "links": [self._link(batch_id)]},
                            status_code=201)

    @staticmethod
    def _validate(sender_batch_id, items) -> list[dict]:
        problems = []
        if sender_batch_id and len(str(sender_batch_id)) > 256:
            problems.append({"field": "sender_batch_header.sender_batch_id", "issue": "Maximum length is 256"})
        if not sender_batch_id:
            problems.append({"field": "sender_batch_header.sender_batch_id", "issue": "Required field missing"})
        if not items:
            problems.append({"field": "items", "issue": "Required field missing"})
        seen = set()
        for n, item in enumerate(items):
            amount = item.get("amount") or {}
            if not isinstance(amount.get("value"), str) or not _AMOUNT.match(amount["value"]):
                problems.append({"field": f"items[{n}].amount.value", "issue": "Invalid amount"})
            if not re.fullmatch(r"[A-Z]{3}", str(amount.get("currency", ""))):
                problems.append({"field": f"items[{n}].amount.currency", "issue": "Invalid currency"})
            if not item.get("receiver"):
                problems.append({"field": f"items[{n}].receiver", "issue": "Required field missing"})
            sid = item.get("sender_item_id")
            if sid is not None and len(str(sid)) > 63:  # PayPal's limit for a sender_item_id
                problems.append({"field": f"items[{n}].sender_item_id", "issue": "Maximum length is 63"})
            if sid in seen:
                problems.append({"field": f"items[{n}].sender_item_id", "issue": "DUPLICATE_ITEM"})
            seen.add(sid)
        return problems

    def _new_batch(self, batch_id: str, header: dict, items: list[dict]) -> dict:
        stored = []
        for item in items:
            item_id = f"FAKEITEM{next(self._ids):06d}"
            stored.append({
                "payout_item_id": item_id, "transaction_id": None, "transaction_status": "PENDING",
                "payout_batch_id": batch_id,
                "payout_item": {"recipient_type": item.get("recipient_type", header.get("recipient_type", "EMAIL")),
                                "amount": item["amount"], "note": item.get("note", ""),
                                "receiver": item["receiver"], "sender_item_id": item.get("sender_item_id")},
                "links": [{"href": f"{self.url}/v1/payments/payouts-item/{item_id}", "rel": "item", "method": "GET"}],
            })
        return {"header": {"payout_batch_id": batch_id, "batch_status": "PENDING",
                           "sender_batch_header": header}, "items": stored}

    def _settle(self, batch: dict) -> None:
        for item in batch["items"]:
            if item["transaction_status"] != "PENDING":
                continue
            status, error = self.outcomes.get(item["payout_item"]["receiver"], ("SUCCESS", ""))
            item["transaction_status"] = status
            if status == "SUCCESS":
                item["transaction_id"] = f"FAKETXN{next(self._ids):08d}"
            elif error:
                item["errors"] = {"name": error, "message": f"{error} (fake)"}
        batch["header"]["batch_status"] = "SUCCESS"

    async def _get(self, request: Request):
        batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "INVALID_RESOURCE_ID", "Requested resource ID was not found.")
        if self.settle_on_read:
            with self._lock:
                self._settle(batch)
        return JSONResponse({"batch_header": batch["header"], "items": batch["items"],
                             "links": [self._link(batch["header"]["payout_batch_id"])]})
