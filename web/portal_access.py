"""Web routes: signing in to the partner portal by emailed link, and signing out; the `signed_in`
dependency every portal page uses, and `check_csrf` for every portal form POST.

A page behind `signed_in` never runs for a visitor without a valid session: they are sent (303) to the
sign-in page. A POST whose CSRF token is missing or wrong gets 403 and changes nothing; before sign-in
the token is bound to a random nonce in a form cookie instead of the session.

Emailed links open a page with a button, and only the button's POST spends the link, so a mail scanner
that fetches every link in a message never uses one up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from partnerflow.secrets import new_token, pseudonym
from partnerflow.settings import get_settings
from partnerflow.tasks.portal.access import LinkRefused, link_state, send_sign_in_link, use_sign_in_link
from partnerflow.tasks.portal.sessions import (
    COOKIE_NAME,
    COOKIE_PATH,
    PortalVisitor,
    csrf_matches,
    end_session,
    form_token,
    form_token_matches,
    start_session,
    visitor_for,
)
from partnerflow.tasks.shared.identity import normalise_email
from partnerflow.web.pages import client_of, message, render

router = APIRouter()
SIGN_IN_PATH = "/portal/sign-in"
CSRF_FIELD = "csrf_token"
FORM_COOKIE = "pf_portal_form"
MAX_EMAIL_LENGTH = 320
NOT_FROM_HERE = "This form has expired or did not come from this site; reload the page and try again."
REFUSED_TEXT = {
    LinkRefused.UNKNOWN: "This sign-in link is not valid.",
    LinkRefused.USED: "This sign-in link was already used: each link works once.",
    LinkRefused.EXPIRED: "This sign-in link has expired.",
}


def _secure() -> bool:
    return get_settings().public_base_url.lower().startswith("https://")


def signed_in(request: Request) -> PortalVisitor:
    """FastAPI dependency: the signed-in partner, or a 303 to the sign-in page (an unusable cookie is cleared).

    A plain function, so FastAPI runs its database lookup in a worker thread, off the event loop."""
    cookie = request.cookies.get(COOKIE_NAME)
    visitor = visitor_for(cookie)
    if visitor is None:
        headers = {"Location": SIGN_IN_PATH, "Cache-Control": "no-store"}
        if cookie is not None:
            headers["Set-Cookie"] = f'{COOKIE_NAME}=""; Max-Age=0; Path={COOKIE_PATH}; HttpOnly; SameSite=lax'
        raise HTTPException(status_code=303, detail="Please sign in.", headers=headers)
    return visitor


# `def page(visitor: SignedIn)`: the route runs only for a signed-in partner.
SignedIn = Annotated[PortalVisitor, Depends(signed_in)]


def check_csrf(visitor: PortalVisitor, form: Mapping) -> None:
    """Refuse (403) a form POST that does not carry this session's CSRF token in `csrf_token`."""
    if not csrf_matches(visitor, form.get(CSRF_FIELD)):
        raise HTTPException(status_code=403, detail=NOT_FROM_HERE)


def set_session_cookie(response: Response, cookie_value: str) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries it), Secure behind https.
    No Max-Age: the browser forgets it when closed; the row's expiry is what counts."""
    response.set_cookie(COOKIE_NAME, cookie_value, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure())


# --- forms shown before sign-in ------------------------------------------------------------------

def form_page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """A pre-sign-in form page whose CSRF token is bound to the visitor's form cookie (set when missing)."""
    nonce = request.cookies.get(FORM_COOKIE) or ""
    fresh = len(nonce) < 16 or len(nonce) > 64
    nonce = new_token(16) if fresh else nonce
    response = render(template, status, csrf_token=form_token(nonce), **context)
    response.headers["Cache-Control"] = "no-store"
    if fresh:
        response.set_cookie(FORM_COOKIE, nonce, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure())
    return response


def check_form_token(request: Request, form: Mapping) -> None:
    if not form_token_matches(request.cookies.get(FORM_COOKIE), form.get(CSRF_FIELD)):
        raise HTTPException(status_code=403, detail=NOT_FROM_HERE)


@dataclass
class SignInLimits:
    """Sign-in links asked for per client address and per email address (counted as a keyed hash, so the
    shared counter store never holds addresses). Counters live where /apply's do."""

    limiter: MovingWindowRateLimiter
    per_ip: list[RateLimitItem]
    per_email: list[RateLimitItem]

    @classmethod
    def for_app(cls, request: Request) -> SignInLimits:
        limits = getattr(request.app.state, "portal_sign_in_limits", None)
        if limits is None:
            web, portal = get_settings().web, get_settings().portal
            storage = storage_from_string(web.web_rate_limit_storage, key_prefix=web.web_rate_limit_key_prefix)
            limits = cls(MovingWindowRateLimiter(storage), parse_many(portal.portal_sign_in_limit_per_ip),
                         parse_many(portal.portal_sign_in_limit_per_email))
            request.app.state.portal_sign_in_limits = limits
        return limits

    def allow(self, ip: str, email: str) -> bool:
        keys = [(item, "ip", ip) for item in self.per_ip]
        keys += [(item, "email", pseudonym(email, "portal-sign-in")) for item in self.per_email]
        allowed = True
        for item, kind, value in keys:  # every rule counts the attempt
            allowed = self.limiter.hit(item, "portal-sign-in", kind, value) and allowed
        return allowed


# --- routes --------------------------------------------------------------------------------------

@router.get("/portal/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return form_page(request, "portal/pages/sign_in.html", title="Sign in", email="", error="", link_token="")


@router.post("/portal/sign-in", response_class=HTMLResponse)
async def ask_for_link(request: Request, background: BackgroundTasks) -> HTMLResponse:
    form = await request.form()
    check_form_token(request, form)
    typed = str(form.get("email") or "").strip()[:MAX_EMAIL_LENGTH]
    address = normalise_email(typed)
    if address is None:
        return form_page(request, "portal/pages/sign_in.html", 422, title="Sign in", email=typed, link_token="",
                         error="Enter the email address you use with us, e.g. name@example.com.")
    ip = client_of(request)[0]
    if not await run_in_threadpool(SignInLimits.for_app(request).allow, ip, address):
        return message("Too many sign-in links", "Too many sign-in links were asked for from here or for this "
                       "address. Please wait a few minutes and try again.", 429)
    # After the answer: a partner's address and a stranger's get the same page in the same time.
    background.add_task(send_sign_in_link, address)
    response = render("portal/pages/sign_in_sent.html", title="Check your email", email=address,
                      minutes=get_settings().portal.portal_sign_in_link_minutes)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/portal/sign-in/{token}", response_class=HTMLResponse)
def sign_in_link_page(token: str, request: Request) -> HTMLResponse:
    refused = link_state(token)
    if refused is not None:
        return _refused(refused)
    return form_page(request, "portal/pages/sign_in.html", title="Sign in", email="", error="", link_token=token)


@router.post("/portal/sign-in/{token}")
async def use_link(token: str, request: Request) -> Response:
    check_form_token(request, await request.form())
    outcome = await run_in_threadpool(use_sign_in_link, token, ip=client_of(request)[0])
    if isinstance(outcome, LinkRefused):
        return _refused(outcome)
    # A session this browser had (perhaps another partner's) ends: one browser, one signed-in partner.
    await run_in_threadpool(end_session, request.cookies.get(COOKIE_NAME))
    cookie, _ = await run_in_threadpool(start_session, outcome)
    response = RedirectResponse("/portal", status_code=303)
    set_session_cookie(response, cookie)
    return response


def _refused(reason: LinkRefused) -> HTMLResponse:
    response = render("portal/pages/sign_in_sent.html", 404 if reason == LinkRefused.UNKNOWN else 410,
                      title="Sign-in link not valid", email="", refused=REFUSED_TEXT[reason],
                      minutes=get_settings().portal.portal_sign_in_link_minutes)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/portal/sign-out")
async def sign_out(request: Request, visitor: SignedIn) -> RedirectResponse:
    check_csrf(visitor, await request.form())
    await run_in_threadpool(end_session, request.cookies.get(COOKIE_NAME))
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response
