"""Web routes: the onboarding form (/onboarding/{token}: tax form and payout details) and the
partner's tracking link (/r/{code}, clicks recorded by tasks/onboarding/clicks.py).

The form link is an unguessable token whose keyed hash is all the database holds; the page is a
plain HTML form, usable without JavaScript. Secrets typed in are never echoed back. The link works once.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.models import utcnow
from partnerflow.models.onboarding import Onboarding
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding import clicks
from partnerflow.tasks.onboarding.details import (
    PAYOUT_METHODS,
    LinkUsed,
    OnboardingInvalid,
    find_onboarding,
    payout_summary,
    submit_onboarding,
)
from partnerflow.web.pages import client_of, message, render

router = APIRouter()
TITLE = "Tax form and payout details"
NEVER_ECHOED = ("tin", "iban", "stripe_account_id")


def _form(token: str, kind: str, errors: dict[str, str] | None = None, values: dict | None = None,
          status: int = 200) -> HTMLResponse:
    return render("onboarding/pages/details.html", status, title=TITLE, token=token, kind=kind, errors=errors or {},
                  values=values or {}, never_echoed=NEVER_ECHOED, payout_methods=PAYOUT_METHODS)


def _open_row(token: str) -> tuple[Onboarding | None, HTMLResponse | None]:
    row = find_onboarding(token)
    if row is None:
        return None, message("Link not found", "This link is not valid.", 404)
    if row.expires_at <= utcnow():
        return None, message("Link expired", f"This link has expired. Please contact {get_settings().team_email}.",
                             410)
    if row.completed_at is not None:
        return None, _used_page()
    return row, None


def _used_page() -> HTMLResponse:
    return message("Link already used", "This link has already been used: we have your tax form and payout "
                   "details. It works only once, so nobody else can change where your money goes. To change your "
                   f"details, write to {get_settings().team_email} and we will send you a way to do it.", 410)


@router.get("/onboarding/{token}", response_class=HTMLResponse)
def onboarding_page(token: str) -> HTMLResponse:
    row, error = _open_row(token)
    if error is not None:
        return error
    return _form(token, row.tax_form_kind)


@router.post("/onboarding/{token}", response_class=HTMLResponse)
async def onboarding_submit(token: str, request: Request) -> HTMLResponse:
    data = {k: str(v) for k, v in (await request.form()).items()}
    # Lookups, encryption and the save are blocking work: a worker thread, never the event loop.
    return await run_in_threadpool(_submit, token, data, client_of(request)[0])


def _submit(token: str, data: dict[str, str], ip: str) -> HTMLResponse:
    row, error = _open_row(token)
    if error is not None:
        return error
    try:
        saved = submit_onboarding(token, data, ip=ip)
    except OnboardingInvalid as exc:
        return _form(token, row.tax_form_kind, exc.errors, data, 422)
    except LinkUsed:  # a second submission raced this one and lost
        return _used_page()
    return message("Thank you", f"Saved: {saved.tax_form_masked or ''}; payouts to {payout_summary(saved.partner_id)}.")


@router.get("/r/{code}")
@router.head("/r/{code}", include_in_schema=False)  # link previews probe with HEAD: recorded as bots
def tracking_redirect(code: str, request: Request, to: str | None = None) -> RedirectResponse:
    """A partner's tracking link (or deep link with ?to= on an allowed host): the click is queued for the
    batched writer and the visitor sent on with ?ref=<code>&pf_click=<click id>. Never an open redirect:
    a target off the allowed hosts falls back to the program's landing page."""
    ip, user_agent = client_of(request)
    click_id = clicks.new_click_id()
    target = clicks.safe_target(to) or get_settings().onboarding.partner_landing_url
    landing = clicks.landing_with(target, code, click_id)
    purpose = request.headers.get("sec-purpose") or request.headers.get("purpose") or ""
    bot = clicks.is_bot(user_agent, request.method, purpose)
    clicks.WRITER.add(clicks.pending_click(code, click_id=click_id, ip=ip, user_agent=user_agent,
                                           referrer=request.headers.get("referer"), landing=landing, bot=bot))
    if not bot:
        clicks.note_activity(code)
    return RedirectResponse(landing, status_code=302)
