"""Web routes: changing payout details in the partner portal (/portal/payout-details), and the link that
confirms a change (/portal/payout-details/confirm/{token}), mailed to the partner's address on file.

The form changes nothing by itself; the confirmation link works once, without a session (it may be opened
on another device), and only its page's button applies the change. Secrets typed in are never echoed back.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.details import PAYOUT_METHODS, OnboardingInvalid
from partnerflow.tasks.portal.access import LinkRefused
from partnerflow.tasks.portal.details_change import (
    ChangeUnavailable,
    change_for_link,
    confirm_change,
    payout_profile,
    pending_change,
    request_change,
)
from partnerflow.tasks.portal.sessions import PortalVisitor
from partnerflow.web.pages import message, render
from partnerflow.web.portal_access import SignedIn, check_csrf, check_form_token, form_page

router = APIRouter()
FORM_PATH = "/portal/payout-details"
FIELDS = ("payout_method", "account_holder", "iban", "bic", "paypal_email", "stripe_account_id", "payout_currency")
NEVER_ECHOED = ("iban", "stripe_account_id")
REFUSED_TEXT = {
    LinkRefused.UNKNOWN: "This confirmation link is not valid.",
    LinkRefused.USED: "This confirmation link was already used, or a newer change replaced it.",
    LinkRefused.EXPIRED: "This confirmation link has expired; nothing was changed.",
}


def _form(visitor: PortalVisitor, status: int = 200, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None) -> HTMLResponse:
    profile = payout_profile(visitor.partner_id)
    waiting = pending_change(visitor.partner_id)
    shown = {k: v for k, v in (values or {}).items() if k in FIELDS and k not in NEVER_ECHOED}
    response = render("portal/pages/details.html", status, title="Payout details", current="profile",
                      csrf_token=visitor.csrf_token, partner_name=profile["legal_name"], profile=profile,
                      pending=waiting, errors=errors or {}, values=shown, payout_methods=PAYOUT_METHODS,
                      cooling_off_hours=get_settings().portal.portal_payout_cooling_off_hours)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(FORM_PATH, response_class=HTMLResponse)
def details_form(visitor: SignedIn) -> HTMLResponse:
    return _form(visitor)


@router.post(FORM_PATH, response_class=HTMLResponse)
async def ask_for_change(request: Request, visitor: SignedIn) -> HTMLResponse:
    form = await request.form()
    check_csrf(visitor, form)
    data = {name: str(form.get(name) or "")[:200] for name in FIELDS}
    return await run_in_threadpool(_ask, visitor, data)


def _ask(visitor: PortalVisitor, data: dict[str, str]) -> HTMLResponse:
    try:
        change = request_change(visitor.partner_id, data)
    except OnboardingInvalid as exc:
        return _form(visitor, 422, exc.errors, data)
    except ChangeUnavailable as exc:
        return message("Payout details", str(exc), 409)
    profile = payout_profile(visitor.partner_id)
    response = render("portal/pages/details_sent.html", title="Confirm by email", current="profile",
                      csrf_token=visitor.csrf_token, partner_name=profile["legal_name"], email=profile["email"],
                      masked=change.details_masked, currency=change.payout_currency,
                      minutes=get_settings().portal.portal_details_link_minutes)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(FORM_PATH + "/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request) -> HTMLResponse:
    found = change_for_link(token)
    if isinstance(found, LinkRefused):
        return _refused(found)
    return form_page(request, "portal/pages/details_confirm.html", title="Confirm new payout details",
                     token=token, masked=found.details_masked, currency=found.payout_currency,
                     cooling_off_hours=get_settings().portal.portal_payout_cooling_off_hours)


@router.post(FORM_PATH + "/confirm/{token}", response_class=HTMLResponse)
async def confirm(token: str, request: Request) -> HTMLResponse:
    check_form_token(request, await request.form())
    outcome = await run_in_threadpool(confirm_change, token)
    if isinstance(outcome, LinkRefused):
        return _refused(outcome)
    response = render("portal/pages/details_done.html", title="Payout details changed",
                      masked=outcome.details_masked, currency=outcome.payout_currency, hold_until=outcome.hold_until)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(reason: LinkRefused) -> HTMLResponse:
    response = message("Confirmation link not valid", REFUSED_TEXT[reason] + " You can ask for the change again "
                       "in the partner portal.", 404 if reason == LinkRefused.UNKNOWN else 410)
    response.headers["Cache-Control"] = "no-store"
    return response
