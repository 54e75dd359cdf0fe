"""A small stateful stand-in for Stripe's transfers API (Connect), speaking its wire format.

What it reproduces, because our exactly-once guarantees lean on it:
- Bearer auth (401 otherwise), form-encoded bodies, Stripe's `{"error": {...}}` shapes;
- `Idempotency-Key`: the first result for a key is saved; a repeat with the same parameters replays
  it (header `Idempotent-Replayed: true`), different parameters -> 400 idempotency_error, a repeat
  while the first is still running -> 409 idempotency_error;
- unknown destination -> 400 resource_missing; `GET /v1/transfers?transfer_group=` listing;
- injected faults (partnerflow.testing.faults), aimed at its writes: 429 with Retry-After, 5xx,
  stalls before or after the transfer is created, a connection dropped after it.
`transfers` is the provider's own record: tests assert on it that each payout was paid once.
`signed_event(...)` builds a webhook delivery signed the way Stripe signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from partnerflow.testing.local_server import FakeProvider

API_KEY = "sk_test_fake_platform_key"
WEBHOOK_SECRET = "whsec_test_fake_secret"


def _error(status: int, type_: str, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    body = {"type": type_, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status)


_event_ids = itertools.count(1)


def signed_event(event_type: str, obj: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
                 event_id: str | None = None, account: str | None = None) -> tuple[bytes, dict]:
    """(raw body, headers) of a webhook delivery, signed as Stripe does: v1=HMAC-SHA256(secret, "t.body")."""
    event = {"id": event_id or f"evt_{next(_event_ids):08d}", "object": "event", "type": event_type,
             "created": int(time.time()), "livemode": False, "api_version": "2024-06-20",
             "data": {"object": obj}}
    if account:
        event["account"] = account
    raw = json.dumps(event).encode()
    t = int(time.time()) if timestamp is None else timestamp
    sig = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


class FakeStripe(FakeProvider):
    fault_method = "POST"  # reads are never faulted: they are how a caller finds out what happened

    def __init__(self, accounts: tuple[str, ...] = ("acct_partner_one", "acct_partner_two", "acct_partner_three")):
        super().__init__()
        self.accounts = set(accounts)
        self.transfers: dict[str, dict] = {}
        self.requests: list[dict] = []  # every transfer POST that got past the faults: key, params
        self._saved: dict[str, tuple[str, int, dict]] = {}  # idempotency key -> (params, status, body)
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v1/transfers", self._create_transfer, methods=["POST"]),
            Route("/v1/transfers", self._list_transfers, methods=["GET"]),
            Route("/v1/transfers/{transfer_id}", self._get_transfer, methods=["GET"]),
        ])

    # --- what tests look at ---
    def transfers_to(self, destination: str) -> list[dict]:
        return [t for t in self.transfers.values() if t["destination"] == destination]

    def forget_idempotency_keys(self) -> None:
        """What Stripe does after 24 hours."""
        self._saved.clear()

    def transfers_for_group(self, group: str) -> list[dict]:
        return [t for t in self.transfers.values() if t["transfer_group"] == group]

    # --- the API ---
    def refuse(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        return None

    def error_body(self, status: int) -> dict:
        if status == 429:
            return {"error": {"type": "rate_limit_error", "code": "rate_limit",
                              "message": "Too many requests hit the API too quickly."}}
        return {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}}

    async def _create_transfer(self, request: Request):
        form = await request.form()
        params = dict(form.multi_items())
        key = request.headers.get("idempotency-key")
        self.requests.append({"key": key, "params": params})
        fingerprint = json.dumps(sorted(params.items()))
        if key:
            with self._lock:
                saved = self._saved.get(key)
                if saved is None and key in self._running:
                    return _error(409, "idempotency_error", "There is currently another in-progress request "
                                  "using this Idempotent Key. Please try again later.")
                if saved is None:
                    self._running.add(key)
            if saved is not None:
                if saved[0] != fingerprint:
                    return _error(400, "idempotency_error", "Keys for idempotent requests can only be used with "
                                  "the same parameters they were first used with.")
                return JSONResponse(saved[2], status_code=saved[1], headers={"Idempotent-Replayed": "true"})
        try:
            status, body = self._make_transfer(params)
            if key:
                with self._lock:
                    self._saved[key] = (fingerprint, status, body)
        finally:
            if key:
                with self._lock:
                    self._running.discard(key)
        return JSONResponse(body, status_code=status)

    def _make_transfer(self, params: dict) -> tuple[int, dict]:
        for name in ("amount", "currency", "destination"):
            if not params.get(name):
                return 400, {"error": {"type": "invalid_request_error", "code": "parameter_missing",
                                       "param": name, "message": f"Missing required param: {name}."}}
        if not params["amount"].isdigit() or int(params["amount"]) <= 0:
            return 400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer",
                                   "param": "amount", "message": "Invalid positive integer"}}
        if params["destination"] not in self.accounts:
            return 400, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "param": "destination",
                                   "message": f"No such destination: '{params['destination']}'"}}
        transfer_id = f"tr_{next(self._ids):012d}"
        transfer = {
            "id": transfer_id, "object": "transfer", "amount": int(params["amount"]), "amount_reversed": 0,
            "currency": params["currency"], "destination": params["destination"],
            "description": params.get("description"), "created": int(time.time()), "livemode": False,
            "metadata": {k[len("metadata["):-1]: v for k, v in params.items() if k.startswith("metadata[")},
            "reversed": False, "transfer_group": params.get("transfer_group"),
        }
        self.transfers[transfer_id] = transfer
        return 200, transfer

    async def _list_transfers(self, request: Request):
        group = request.query_params.get("transfer_group")
        destination = request.query_params.get("destination")
        data = [t for t in self.transfers.values()
                if (group is None or t["transfer_group"] == group)
                and (destination is None or t["destination"] == destination)]
        data.sort(key=lambda t: t["id"], reverse=True)  # newest first, as Stripe lists
        return JSONResponse({"object": "list", "url": "/v1/transfers", "has_more": False, "data": data})

    async def _get_transfer(self, request: Request):
        transfer = self.transfers.get(request.path_params["transfer_id"])
        if transfer is None:
            return _error(404, "invalid_request_error", "No such transfer", code="resource_missing", param="id")
        return JSONResponse(transfer)
