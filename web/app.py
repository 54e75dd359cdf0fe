"""The small web app: sign-ups, signing and onboarding pages, unsubscribe links, provider webhooks,
conversion intake.

Each stage keeps its routes in the web module of its name; this file only assembles them.
"""

from __future__ import annotations

from fastapi import FastAPI

from partnerflow import __version__
from partnerflow.web import (
    contracting,
    contracting_signing,
    contracting_webhooks,
    onboarding,
    outreach,
    payouts,
    payouts_webhooks,
)

STAGE_ROUTES = (outreach, contracting, contracting_signing, contracting_webhooks, onboarding, payouts,
                payouts_webhooks)


def create_app() -> FastAPI:
    app = FastAPI(title="Partnerflow", version=__version__, docs_url="/api/docs")
    for module in STAGE_ROUTES:
        app.include_router(module.router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
