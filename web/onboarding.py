"""Web routes: the onboarding form (/onboarding/{token}: tax form and payout details) and the
partner's tracking link (/r/{code}).

The form link is an unguessable token whose keyed hash is all the database holds; the page is a
plain HTML form, usable without JavaScript. Secrets typed in are never echoed back.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from partnerflow.models import utcnow
from partnerflow.models.onboarding import Onboarding
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.activation import landing_url, note_click
from partnerflow.tasks.onboarding.details import (
    PAYOUT_METHODS,
    OnboardingInvalid,
    find_onboarding,
    payout_summary,
    submit_onboarding,
)
from partnerflow.web.pages import client_of, page

router = APIRouter()
TITLE = "Tax form and payout details"
NEVER_ECHOED = ("tin", "iban", "stripe_account_id")


def _form(token: str, kind: str, errors: dict[str, str] | None = None, values: dict | None = None) -> str:
    errors, values = errors or {}, values or {}

    def err(name: str) -> str:
        return f" <span class='error'>{escape(errors[name])}</span>" if name in errors else ""

    def field(name: str, label: str) -> str:
        value = "" if name in NEVER_ECHOED else escape(str(values.get(name) or ""))
        return (f"<label>{escape(label)}: <input type='text' name='{name}' value='{value}' autocomplete='off'>"
                f"{err(name)}</label>")

    tax = [field("tax_name", "Name (as shown on your tax return)"), field("tax_address", "Address")]
    if kind == "W-9":
        tax.append(field("tin", "SSN or EIN (9 digits)"))
    else:
        tax += [field("citizenship", "Country of citizenship (ISO code)"),
                field("tin", "Foreign tax identifying number")]
    options = "".join(f"<option value='{m}'{' selected' if values.get('payout_method') == m else ''}>{m}</option>"
                      for m in PAYOUT_METHODS)
    return (f"<form method='post' action='/onboarding/{escape(token)}'><h2>Tax form {kind}</h2>{''.join(tax)}"
            f"<label><input type='checkbox' name='certify' value='yes'> I certify under penalties of perjury that "
            f"the information above is correct.{err('certify')}</label>"
            f"<h2>Payout details</h2><label>Method: <select name='payout_method'>{options}</select>"
            f"{err('payout_method')}</label>"
            + field("account_holder", "Account holder (SEPA)") + field("iban", "IBAN (SEPA)")
            + field("bic", "BIC (SEPA, optional)") + field("paypal_email", "PayPal email")
            + field("stripe_account_id", "Stripe account id (acct_…)")
            + "<p><button type='submit'>Save</button></p></form>")


def _open_row(token: str) -> tuple[Onboarding | None, HTMLResponse | None]:
    row = find_onboarding(token)
    if row is None:
        return None, page("Link not found", "<p>This link is not valid.</p>", 404)
    if row.expires_at <= utcnow():
        return None, page("Link expired", f"<p>This link has expired. Please contact "
                          f"{escape(get_settings().team_email)}.</p>", 410)
    return row, None


@router.get("/onboarding/{token}", response_class=HTMLResponse)
def onboarding_page(token: str) -> HTMLResponse:
    row, error = _open_row(token)
    if error is not None:
        return error
    done = (f"<p>We have your details ({escape(row.tax_form_masked or '')}). Submitting again replaces them.</p>"
            if row.completed_at else "")
    return page(TITLE, done + _form(token, row.tax_form_kind))


@router.post("/onboarding/{token}", response_class=HTMLResponse)
async def onboarding_submit(token: str, request: Request) -> HTMLResponse:
    row, error = _open_row(token)
    if error is not None:
        return error
    data = dict(await request.form())
    try:
        saved = submit_onboarding(token, data, ip=client_of(request)[0])
    except OnboardingInvalid as exc:
        return page(TITLE, _form(token, row.tax_form_kind, exc.errors, data), 422)
    return page("Thank you", f"<p>Saved: {escape(saved.tax_form_masked or '')}; payouts to "
                f"{escape(payout_summary(saved.partner_id))}.</p>")


@router.get("/r/{code}")
def tracking_redirect(code: str) -> RedirectResponse:
    """A partner's tracking link: note the activity and redirect to the landing page with ?ref=."""
    note_click(code)
    return RedirectResponse(landing_url(code), status_code=302)
