"""Web routes: the partner application form (/apply, no JavaScript needed) and its JSON API."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

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
            + f"<label><input type='checkbox' name='agreed_to_terms' value='yes'> I agree to the program terms."
              f"{err('agreed_to_terms')}</label><button type='submit'>Apply</button></form>")


@router.get("/apply", response_class=HTMLResponse)
def apply_form() -> HTMLResponse:
    return page("Apply to the partner program", _form())


@router.post("/apply", response_class=HTMLResponse)
async def apply_submit(request: Request) -> HTMLResponse:
    form = await request.form()
    data: dict[str, Any] = {k: form.get(k) for k in form.keys()}
    data["channels"] = form.getlist("channels")
    data["promotional_methods"] = form.getlist("promotional_methods")
    try:
        application, created = submit_application(data)
    except ApplicationInvalid as exc:
        return page("Apply to the partner program", _form(data, exc.errors), 422)
    except DuplicateApplication:
        return page("Already registered", "<p>This email address or website already belongs to a partner. "
                    "Contact us if you need access.</p>", 409)
    if not created:
        return page("Already applied", "<p>We already have an application for this email address or website; "
                    "we will be in touch.</p>", 409)
    return page("Thank you", f"<p>We received the application for {escape(application.legal_name)}. "
                "You will hear from us by email.</p>", 201)


@router.post("/api/applications")
async def apply_api(request: Request) -> JSONResponse:
    try:
        data = await request.json()
    except ValueError:
        return JSONResponse({"detail": "The body must be a JSON object."}, status_code=400)
    if not isinstance(data, dict):
        return JSONResponse({"detail": "The body must be a JSON object."}, status_code=400)
    try:
        application, created = submit_application(data)
    except ApplicationInvalid as exc:
        return JSONResponse({"detail": [{"loc": ["body", k], "msg": v, "type": "value_error"}
                                        for k, v in exc.errors.items()], "errors": exc.errors}, status_code=422)
    except DuplicateApplication as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    if not created:
        return JSONResponse({"detail": "An application with this email address or domain already exists.",
                             "application_id": application.id}, status_code=409)
    return JSONResponse({"id": application.id, "status": application.status, "partner_id": application.partner_id},
                        status_code=201)
