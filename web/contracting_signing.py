"""Web routes: the built-in signing page (/sign/{token}).

The link is an unguessable token whose keyed hash is all the database holds. The page is a
plain HTML form, usable without JavaScript.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.models import Contract, SignatureRequest, utcnow
from partnerflow.models.contracting import OPEN_SIGNATURE_STATUSES, SignatureStatus
from partnerflow.settings import get_settings
from partnerflow.tasks.contracting.signing_page import CONSENT, contract_blocks, find_by_token, sign_on_page
from partnerflow.web.pages import client_of, message, render

router = APIRouter()
TITLE = "Sign your partner agreement"


def _open_request(token: str):
    """(row, contract, partner, error page)."""
    found = find_by_token(token)
    if found is None:
        return None, None, None, message("Link not found", "This signing link is not valid.", 404)
    row, contract, partner = found
    if row.status == SignatureStatus.SIGNED:
        return row, contract, partner, message("Already signed",
                                               f"This agreement was signed on {row.signed_at:%d %B %Y}. Thank you.")
    if row.status not in OPEN_SIGNATURE_STATUSES or (row.expires_at and row.expires_at <= utcnow()):
        return row, contract, partner, message("Link expired", "This signing link has expired or was withdrawn. "
                                               f"Please contact {get_settings().team_email}.", 410)
    return row, contract, partner, None


def _sign_form(token: str, row: SignatureRequest, contract: Contract, errors: dict[str, str] | None = None,
               name: str = "", status: int = 200) -> HTMLResponse:
    return render("contracting/pages/sign.html", status, title=TITLE, token=token, signer_name=row.signer_name,
                  document_sha256=contract.document_sha256, document=contract_blocks(contract), name=name,
                  errors=errors or {}, consent=CONSENT)


@router.get("/sign/{token}", response_class=HTMLResponse)
def signing_page(token: str) -> HTMLResponse:
    row, contract, _partner, error = _open_request(token)
    if error is not None:
        return error
    return _sign_form(token, row, contract)


@router.post("/sign/{token}", response_class=HTMLResponse)
async def sign(token: str, request: Request) -> HTMLResponse:
    form = await request.form()
    fields = {"signer_name": str(form.get("signer_name") or ""), "consent": str(form.get("consent") or "")}
    # The lookups and the signature are database work: a worker thread, never the event loop.
    return await run_in_threadpool(_sign, token, fields, *client_of(request))


def _sign(token: str, form: dict[str, str], ip: str, user_agent: str) -> HTMLResponse:
    row, contract, partner, error = _open_request(token)
    if error is not None:
        return error
    name = form["signer_name"].strip()
    errors = {}
    if len(name) < 2:
        errors["signer_name"] = "Type your full name."
    if form["consent"].lower() not in ("yes", "on", "true", "1"):
        errors["consent"] = "Tick the box to consent to signing electronically."
    if errors:
        return _sign_form(token, row, contract, errors, name, 422)
    if not sign_on_page(row, contract, signer_name=name, ip=ip, user_agent=user_agent):
        return message("Already signed", "This agreement was already signed. Thank you.")
    return message("Thank you", f"{partner.legal_name}'s agreement is signed. We will email you the next "
                   "steps (your tracking link and payout setup) shortly.")
