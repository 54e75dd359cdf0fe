"""Web routes: the partner application form (/apply, no JavaScript needed) and its JSON API."""

from __future__ import annotations

import logging
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
from partnerflow.web.pages import message, render

router = APIRouter()
log = logging.getLogger(__name__)
HONEYPOT = "homepage"  # a field hidden from people; whatever fills it is a robot


def _form(values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
          status: int = 200) -> HTMLResponse:
    return render("contracting/pages/apply.html", status, title="Apply to the partner program", values=values or {},
                  errors=errors or {}, channels=CHANNELS, partner_types=[t.value for t in PartnerType],
                  promotional_methods=PROMOTIONAL_METHODS, tax_statuses=TAX_STATUSES, honeypot=HONEYPOT)


@router.get("/apply", response_class=HTMLResponse)
def apply_form() -> HTMLResponse:
    return _form()


# One answer for a new application, a repeated one and a trap-caught bot: nobody learns from it whether
# an address already belongs to a partner.
THANKS = ("Thank you. If we can offer you a place in the program, you will hear from us by email; "
          "if you applied before, there is nothing more to do.")
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
        return message("Please try again later", TOO_MANY if allowed is False else UNAVAILABLE,
                       429 if allowed is False else 503)
    if data.pop(HONEYPOT, None):  # only a robot fills a field nobody can see
        return message("Thank you", THANKS)
    try:
        await run_in_threadpool(_receive, data)
    except ApplicationInvalid as exc:
        return _form(data, exc.errors, 422)
    return message("Thank you", THANKS)


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
