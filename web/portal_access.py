"""Web routes: signing in to the partner portal by emailed link, and signing out; the `signed_in`
dependency every portal page uses, and `check_csrf` for every portal form POST.

A page behind `signed_in` never runs for a visitor without a valid session: they are sent (303) to the
sign-in page. A POST whose CSRF token is missing or not this session's gets 403 and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.settings import get_settings
from partnerflow.tasks.portal.sessions import (
    COOKIE_NAME,
    COOKIE_PATH,
    PortalVisitor,
    csrf_matches,
    end_session,
    visitor_for,
)

router = APIRouter()
SIGN_IN_PATH = "/portal/sign-in"
CSRF_FIELD = "csrf_token"


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
        raise HTTPException(status_code=403, detail="This form has expired or did not come from this site; "
                                                    "reload the page and try again.")


def set_session_cookie(response, cookie_value: str) -> None:
    """HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries it), Secure behind https.
    No Max-Age: the browser forgets it when closed; the row's expiry is what counts."""
    response.set_cookie(COOKIE_NAME, cookie_value, path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=get_settings().public_base_url.lower().startswith("https://"))


@router.post("/portal/sign-out")
async def sign_out(request: Request, visitor: SignedIn) -> RedirectResponse:
    check_csrf(visitor, await request.form())
    await run_in_threadpool(end_session, request.cookies.get(COOKIE_NAME))
    response = RedirectResponse(SIGN_IN_PATH, status_code=303)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response
