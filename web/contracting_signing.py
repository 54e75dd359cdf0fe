"""Web routes: the builtin signing page (/sign/{token}) and the onboarding form (/onboarding/{token}).

Both links are unguessable tokens whose keyed hash is all the database holds. Pages are plain
HTML forms, usable without JavaScript.
"""

from __future__ import annotations

import hashlib
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from partnerflow.models import Contract, Partner, session_scope, utcnow
from partnerflow.settings import get_settings

router = APIRouter()

CONSENT = ("I agree to sign this agreement electronically, and my typed name below is my signature with the "
           "same effect as a handwritten one.")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
        ".doc{border:1px solid #ccc;padding:1rem 2rem;max-height:60vh;overflow:auto}.error{color:#b00020}"
        "label{display:block;margin:.6rem 0}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>", status_code=status)


def _client(request: Request) -> tuple[str, str]:
    return (request.client.host if request.client else ""), request.headers.get("user-agent", "")


def _open_request(token: str):
    """(row, contract, partner, error page)."""
    from partnerflow.providers.esign.builtin import find_by_token

    row = find_by_token(token)
    if row is None or row.provider != "builtin":
        return None, None, None, page("Link not found", "<p>This signing link is not valid.</p>", 404)
    with session_scope() as session:
        contract = session.get(Contract, row.contract_id)
        partner = session.get(Partner, contract.partner_id)
    if row.status == "signed":
        return row, contract, partner, page("Already signed",
                                            f"<p>This agreement was signed on {row.signed_at:%d %B %Y}. Thank you.</p>")
    if row.status not in ("pending", "sent") or (row.expires_at and row.expires_at <= utcnow()):
        return row, contract, partner, page("Link expired", "<p>This signing link has expired or was withdrawn. "
                                            f"Please contact {escape(get_settings().team_email)}.</p>", 410)
    return row, contract, partner, None


def _sign_form(token: str, row, contract, errors: dict[str, str] | None = None, name: str = "") -> str:
    from partnerflow.tasks.contracting.documents import contract_html
    from partnerflow.tasks.contracting.signing import contract_document

    errors = errors or {}
    err = lambda k: f"<span class='error'>{escape(errors[k])}</span>" if k in errors else ""  # noqa: E731
    return (f"<p>Please read the agreement for <strong>{escape(row.signer_name)}</strong> "
            f"(document SHA-256 <code>{contract.document_sha256}</code>).</p>"
            f"<div class='doc'>{contract_html(contract_document(contract))}</div>"
            f"<form method='post' action='/sign/{escape(token)}'>"
            f"<label>Type your full name to sign: <input name='signer_name' value='{escape(name)}' required> "
            f"{err('signer_name')}</label>"
            f"<label><input type='checkbox' name='consent' value='yes'> {escape(CONSENT)} {err('consent')}</label>"
            "<button type='submit'>Sign the agreement</button></form>")


@router.get("/sign/{token}", response_class=HTMLResponse)
def signing_page(token: str) -> HTMLResponse:
    row, contract, _partner, error = _open_request(token)
    if error is not None:
        return error
    return page("Sign your partner agreement", _sign_form(token, row, contract))


@router.post("/sign/{token}", response_class=HTMLResponse)
async def sign(token: str, request: Request) -> HTMLResponse:
    from partnerflow.providers.esign.builtin import signed_copy
    from partnerflow.tasks.contracting.signing import complete_signature, signing_base

    form = await request.form()
    row, contract, partner, error = _open_request(token)
    if error is not None:
        return error
    name = str(form.get("signer_name") or "").strip()
    errors = {}
    if len(name) < 2:
        errors["signer_name"] = "Type your full name."
    if str(form.get("consent") or "").lower() not in ("yes", "on", "true", "1"):
        errors["consent"] = "Tick the box to consent to signing electronically."
    if errors:
        return page("Sign your partner agreement", _sign_form(token, row, contract, errors, name), 422)
    document = signing_base(contract, row)  # refuses a contract whose hash changed since it was sent
    ip, user_agent = _client(request)
    evidence = {"signer_name": name, "signer_email": row.signer_email, "signed_at": utcnow().isoformat(),
                "ip": ip, "user_agent": user_agent, "consent": CONSENT,
                "document_sha256": hashlib.sha256(document).hexdigest(), "signature_request_id": row.id}
    done = complete_signature(row.id, signed_document=signed_copy(document, evidence),
                              filename=f"contract-{contract.id}-signed-{row.id}.docx", evidence=evidence,
                              actor=f"signer:{row.signer_email}")
    if not done:
        return page("Already signed", "<p>This agreement was already signed. Thank you.</p>")
    return page("Thank you", f"<p>{escape(partner.legal_name)}'s agreement is signed. We will email you the next "
                "steps (your tracking link and payout setup) shortly.</p>")


# --- onboarding: tax form and payout details ----------------------------------------------------------

def _onboarding_form(token: str, kind: str, errors: dict[str, str] | None = None, values: dict | None = None) -> str:
    errors, values = errors or {}, values or {}

    def field(name: str, label: str, kind_: str = "text") -> str:
        value = "" if name in ("tin", "iban", "stripe_account_id") else escape(str(values.get(name) or ""))
        err = f" <span class='error'>{escape(errors[name])}</span>" if name in errors else ""
        return f"<label>{escape(label)}: <input type='{kind_}' name='{name}' value='{value}' autocomplete='off'>{err}</label>"

    tax = [field("tax_name", "Name (as shown on your tax return)"), field("tax_address", "Address")]
    if kind == "W-9":
        tax.append(field("tin", "SSN or EIN (9 digits)"))
    else:
        tax += [field("citizenship", "Country of citizenship (ISO code)"), field("tin", "Foreign tax identifying number")]
    certify_err = f" <span class='error'>{escape(errors['certify'])}</span>" if "certify" in errors else ""
    method_err = f" <span class='error'>{escape(errors['payout_method'])}</span>" if "payout_method" in errors else ""
    options = "".join(f"<option value='{m}'{' selected' if values.get('payout_method') == m else ''}>{m}</option>"
                      for m in ("sepa", "paypal", "stripe"))
    return (f"<form method='post' action='/onboarding/{escape(token)}'><h2>Tax form {kind}</h2>{''.join(tax)}"
            f"<label><input type='checkbox' name='certify' value='yes'> I certify under penalties of perjury that "
            f"the information above is correct.{certify_err}</label>"
            f"<h2>Payout details</h2><label>Method: <select name='payout_method'>{options}</select>{method_err}</label>"
            + field("account_holder", "Account holder (SEPA)") + field("iban", "IBAN (SEPA)") + field("bic", "BIC (SEPA, optional)")
            + field("paypal_email", "PayPal email") + field("stripe_account_id", "Stripe account id (acct_…)")
            + "<p><button type='submit'>Save</button></p></form>")


def _onboarding_row(token: str):
    from partnerflow.tasks.onboarding.activation import find_onboarding

    row = find_onboarding(token)
    if row is None:
        return None, page("Link not found", "<p>This link is not valid.</p>", 404)
    if row.expires_at <= utcnow():
        return None, page("Link expired", f"<p>This link has expired. Please contact "
                          f"{escape(get_settings().team_email)}.</p>", 410)
    return row, None


@router.get("/onboarding/{token}", response_class=HTMLResponse)
def onboarding_page(token: str) -> HTMLResponse:
    row, error = _onboarding_row(token)
    if error is not None:
        return error
    done = (f"<p>We have your details ({escape(row.tax_form_masked or '')}). Submitting again replaces them.</p>"
            if row.completed_at else "")
    return page("Tax form and payout details", done + _onboarding_form(token, row.tax_form_kind))


@router.post("/onboarding/{token}", response_class=HTMLResponse)
async def onboarding_submit(token: str, request: Request) -> HTMLResponse:
    from partnerflow.tasks.onboarding.activation import (
        OnboardingInvalid,
        submit_onboarding,
    )

    row, error = _onboarding_row(token)
    if error is not None:
        return error
    data = dict(await request.form())
    try:
        saved = submit_onboarding(token, data, ip=_client(request)[0])
    except OnboardingInvalid as exc:
        return page("Tax form and payout details", _onboarding_form(token, row.tax_form_kind, exc.errors, data), 422)
    with session_scope() as session:
        masked = session.get(Partner, saved.partner_id).payout_details_masked
    return page("Thank you", f"<p>Saved: {escape(saved.tax_form_masked or '')}; payouts to {escape(masked or '')}.</p>")


# --- tracking link ----------------------------------------------------------------------------------

@router.get("/r/{code}")
def tracking_redirect(code: str):
    """A partner's tracking link: note the activity (at most once a minute per partner) and redirect with ?ref=."""
    from datetime import timedelta
    from urllib.parse import urlencode, urlsplit, urlunsplit

    from fastapi.responses import RedirectResponse
    from sqlalchemy import or_, update

    now = utcnow()
    with session_scope() as session:
        known = session.execute(
            update(Partner).where(Partner.tracking_code == code,
                                  or_(Partner.last_activity_at.is_(None),
                                      Partner.last_activity_at < now - timedelta(minutes=1)))
            .values(last_activity_at=now)).rowcount
    target = urlsplit(get_settings().onboarding.partner_landing_url)
    query = "&".join(q for q in (target.query, urlencode({"ref": code})) if q)
    del known  # unknown codes still reach the landing page; attribution happens at conversion intake
    return RedirectResponse(urlunsplit(target._replace(query=query)), status_code=302)
