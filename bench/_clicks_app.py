"""The web app for bench/clicks.py (served by uvicorn in its own process): the real app, plus the floor —
a route answering the same redirect with nothing recorded."""

from fastapi.responses import RedirectResponse

from partnerflow.settings import get_settings
from partnerflow.web.app import create_app

app = create_app()


@app.get("/floor/{code}")
def floor_redirect(code: str) -> RedirectResponse:
    return RedirectResponse(f"{get_settings().onboarding.partner_landing_url}?ref={code}", status_code=302)
