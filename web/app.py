"""The small web app: sign-ups, signing and onboarding pages, unsubscribe links, provider webhooks,
conversion intake.

Each stage keeps its routes in the web module of its name; this file only assembles them.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from partnerflow import __version__
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding import clicks
from partnerflow.web import (
    contracting,
    contracting_signing,
    contracting_webhooks,
    news,
    onboarding,
    outreach,
    payouts,
    payouts_webhooks,
    portal,
    portal_access,
    portal_details,
)
from partnerflow.web.guard import BodyLimit, RateLimits, SafeHeaders, trusted_networks

STAGE_ROUTES = (outreach, contracting, contracting_signing, contracting_webhooks, onboarding, payouts,
                payouts_webhooks, portal_access, portal_details, portal, news)


@asynccontextmanager
async def _write_clicks_on_shutdown(app: FastAPI):
    yield
    clicks.WRITER.close()  # a clean shutdown loses no queued click


def create_app() -> FastAPI:
    web = get_settings().web
    app = FastAPI(title="Partnerflow", version=__version__, docs_url="/api/docs", lifespan=_write_clicks_on_shutdown)
    for module in STAGE_ROUTES:
        app.include_router(module.router)
    # Outermost last: the headers go on every answer, the 413 included.
    app.add_middleware(BodyLimit, max_bytes=web.web_max_body_bytes,
                       per_path={"/webhooks/sendgrid/inbound": web.web_max_inbound_mail_bytes})
    app.add_middleware(SafeHeaders)
    app.state.trusted_proxies = trusted_networks(web.web_trusted_proxies)
    app.state.apply_limits = RateLimits.from_settings(web, "apply")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
