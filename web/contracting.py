"""Web routes: the partner application form (/apply, no JavaScript needed) and its JSON API."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.models import PartnerType
from partnerflow.tasks.contracting.applications import (
    CHANNELS,
    PROMOTIONAL_METHODS,
    TAX_STATUSES,
    ApplicationInvalid,
    DuplicateApplication,
    submit_application,
)
from partnerflow.web.pages import page

router = APIRouter()
log = logging.getLogger(__name__)
HONEYPOT = "homepage"  # a field hidden from people; whatever fills it is a robot


def _form(values: dict[str, Any] | None = None, errors: dict[str, str] | None = None) -> str:
    values, errors = values or {}, errors or {}

    def err(name: str) -> str:
        return f" <span class='error' id='{name}-error'>{escape(errors[name])}</span>" if name in errors else ""

    def text(name: str, label: str, kind: str = "text") -> str:
        return (f"<label>{escape(label)}: <input type='{kind}' name='{name}' "
                f"value='{escape(str(values.get(name) or ''))}'>{err(name)}</label>")

    def select(name: str, label: str, options) -> str:
        opts = "".join(f"<option value='{o}'{' selected' if values.get(name) == o else ''}>{o}</option>"
                       for o in options)
        return (f"<label>{escape(label)}: <select name='{name}'><option value=''></option>{opts}</select>"
                f"{err(name)}</label>")

    def boxes(name: str, label: str, options) -> str:
        chosen = values.get(name) or []
        items = "".join(f"<label style='display:inline'><input type='checkbox' name='{name}' value='{o}'"
                        f"{' checked' if o in chosen else ''}> {o}</label> " for o in options)
        return f"<fieldset><legend>{escape(label)}</legend>{items}{err(name)}</fieldset>"

    summary = ("<p class='error'>Please correct the fields marked below.</p>" if errors else "")
    return (summary + "<form method='post' action='/apply'>"
            + text("legal_name", "Legal name (person or company)") + text("contact_name", "Contact name")
            + text("email", "Email", "email") + text("country", "Country (two-letter code, e.g. US)")
            + text("website", "Website") + boxes("channels", "Channels", CHANNELS)
            + select("partner_type", "Partner type", tuple(PartnerType))
            + boxes("promotional_methods", "Promotional methods", PROMOTIONAL_METHODS)
            + select("tax_status", "Tax status", TAX_STATUSES)
            + f"<div style='position:absolute;left:-10000px' aria-hidden='true'><label>Leave this empty: "
              f"<input type='text' name='{HONEYPOT}' value='' tabindex='-1' autocomplete='off'></label></div>"
            + f"<label><input type='checkbox' name='agreed_to_terms' value='yes'> I agree to the program terms."
              f"{err('agreed_to_terms')}</label><button type='submit'>Apply</button></form>")


@router.get("/apply", response_class=HTMLResponse)
def apply_form() -> HTMLResponse:
    return page("Apply to the partner program", _form())


# One answer for a new application, a repeated one and a trap-caught bot: nobody learns from it whether
# an address already belongs to a partner.
THANKS = ("<p>Thank you. If we can offer you a place in the program, you will hear from us by email; "
          "if you applied before, there is nothing more to do.</p>")
GENERIC_JSON = {"status": "received", "detail": "Thank you. We will reply by email."}
TOO_MANY = "Too many applications from this network or email domain; please try again later."
UNAVAILABLE = "We cannot take applications at the moment; please try again in a few minutes."


def _receive(data: dict[str, Any]) -> None:
    """Record the application (blocking database work: called in a worker thread). A duplicate is not news."""
    try:
        submit_application(data)
    except DuplicateApplication:
        pass


def _allowed(request: Request, data: dict[str, Any]) -> bool | None:
    """Within the limits? None when the counters cannot be reached (e.g. Redis is down): refused for now."""
    limits = request.app.state.apply_limits
    try:
        return limits.allow(request, str(data.get("email") or ""))
    except Exception:  # the storage's own errors (redis, connection) vary by backend
        log.exception("the /apply rate-limit counters cannot be reached")
        return None


@router.post("/apply", response_class=HTMLResponse)
async def apply_submit(request: Request) -> HTMLResponse:
    form = await request.form()
    data: dict[str, Any] = {k: form.get(k) for k in form.keys()}
    data["channels"] = form.getlist("channels")
    data["promotional_methods"] = form.getlist("promotional_methods")
    allowed = await run_in_threadpool(_allowed, request, data)
    if not allowed:
        return page("Please try again later", f"<p>{TOO_MANY if allowed is False else UNAVAILABLE}</p>",
                    429 if allowed is False else 503)
    if data.pop(HONEYPOT, None):  # only a robot fills a field nobody can see
        return page("Thank you", THANKS)
    try:
        await run_in_threadpool(_receive, data)
    except ApplicationInvalid as exc:
        return page("Apply to the partner program", _form(data, exc.errors), 422)
    return page("Thank you", THANKS)


@router.post("/api/applications", status_code=202)
async def apply_api(request: Request) -> JSONResponse:
    try:
        data = await request.json()
    except ValueError:
        return JSONResponse({"detail": "The body must be a JSON object."}, status_code=400)
    if not isinstance(data, dict):
        return JSONResponse({"detail": "The body must be a JSON object."}, status_code=400)
    allowed = await run_in_threadpool(_allowed, request, data)
    if not allowed:
        return JSONResponse({"detail": TOO_MANY if allowed is False else UNAVAILABLE},
                            status_code=429 if allowed is False else 503)
    if data.pop(HONEYPOT, None):
        return JSONResponse(GENERIC_JSON, status_code=202)
    try:
        await run_in_threadpool(_receive, data)
    except ApplicationInvalid as exc:
        return JSONResponse({"detail": [{"loc": ["body", k], "msg": v, "type": "value_error"}
                                        for k, v in exc.errors.items()], "errors": exc.errors}, status_code=422)
    return JSONResponse(GENERIC_JSON, status_code=202)
