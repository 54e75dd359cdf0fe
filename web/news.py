"""Web routes for program news: the opt-out link in every news mail (a page with a button, and the
RFC 8058 one-click POST), and the portal page where a signed-in partner chooses what they get.

The opt-out link carries its own signed token (tasks/news/preferences.py), so a mail client's one-click
POST needs no cookie; a GET only shows the button, because mail scanners fetch every link.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.models import Partner, session_scope
from partnerflow.settings import get_settings
from partnerflow.tasks.news.preferences import NewsList, choices_of, read_token, set_choice
from partnerflow.web.pages import render
from partnerflow.web.portal_access import SignedIn, check_csrf

router = APIRouter()
PRIVATE = {"Cache-Control": "private, no-store"}
WHAT = {"news": "program news from", "weekly": "the weekly performance email from"}
NOT_VALID = "This link is not valid. You can choose which emails you get in the partner portal."


def _partner_email(partner_id: int) -> str | None:
    with session_scope() as session:
        partner = session.get(Partner, partner_id)
        return partner.email if partner else None


def _message(title: str, text: str, status: int = 200) -> HTMLResponse:
    response = render("news/pages/message.html", status, title=title, text=text,
                      company=get_settings().company_name)
    response.headers.update(PRIVATE)
    return response


@router.get("/news/u/{token}", response_class=HTMLResponse)
def opt_out_page(token: str) -> HTMLResponse:
    """The confirm button; a GET changes nothing."""
    found = read_token(token)
    email = _partner_email(found[1]) if found else None
    if found is None or email is None:
        return _message("Link not valid", NOT_VALID, 404)
    response = render("news/pages/opt_out.html", title="Stop these emails", email=email, what=WHAT[found[0]],
                      company=get_settings().company_name)
    response.headers.update(PRIVATE)
    return response


@router.post("/news/u/{token}", response_class=HTMLResponse)
async def opt_out(token: str, request: Request) -> HTMLResponse:
    """The page's button and the RFC 8058 one-click POST (body `List-Unsubscribe=One-Click`); idempotent."""
    body = (await request.body()).decode(errors="replace")
    source = "one-click" if "List-Unsubscribe=One-Click" in body else "opt-out-link"
    return await run_in_threadpool(_opt_out, token, source)  # database work off the event loop


def _opt_out(token: str, source: str) -> HTMLResponse:
    found = read_token(token)
    if found is None or not set_choice(found[1], found[0], False, source=source):
        return _message("Link not valid", NOT_VALID, 404)
    news_list: NewsList = found[0]
    return _message("Done", f"You will not get {WHAT[news_list]} {get_settings().company_name} any more. "
                            "You can turn it back on in the partner portal.")


def _preferences_page(visitor, status: int = 200, saved: bool = False) -> HTMLResponse:
    with session_scope() as session:
        partner = session.get(Partner, visitor.partner_id)
        name, email = partner.contact_name or partner.legal_name, partner.email
    response = render("news/pages/preferences.html", status, title="Email choices", partner_name=name,
                      email=email, csrf_token=visitor.csrf_token, current="preferences",
                      choices=choices_of(visitor.partner_id), saved=saved)
    response.headers.update(PRIVATE)
    return response


@router.get("/portal/preferences", response_class=HTMLResponse)
def preferences(visitor: SignedIn) -> HTMLResponse:
    return _preferences_page(visitor)


@router.post("/portal/preferences", response_class=HTMLResponse)
async def save_preferences(request: Request, visitor: SignedIn) -> HTMLResponse:
    """Ticked boxes are on, the others off (a browser sends only ticked boxes)."""
    form = await request.form()
    check_csrf(visitor, form)
    wanted = {name: form.get(name) == "on" for name in ("news", "weekly")}
    return await run_in_threadpool(_save, visitor, wanted)


def _save(visitor, wanted: dict[str, bool]) -> HTMLResponse:
    for news_list, on in wanted.items():
        set_choice(visitor.partner_id, news_list, on, source="portal")
    return _preferences_page(visitor, saved=True)
