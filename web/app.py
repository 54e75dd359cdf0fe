"""The small web app: sign-ups, signing pages, unsubscribe links, provider webhooks, conversion intake.

Each area keeps its routes in its own module; this file only assembles them.
"""

from __future__ import annotations

from fastapi import FastAPI

from partnerflow import __version__
from partnerflow.web import contracting as applications
from partnerflow.web import contracting_signing as signing
from partnerflow.web import contracting_webhooks as esign_webhooks
from partnerflow.web import onboarding
from partnerflow.web import outreach as recruitment
from partnerflow.web import payouts as conversions
from partnerflow.web import payouts_webhooks as payout_webhooks


def create_app() -> FastAPI:
    app = FastAPI(title="Partnerflow", version=__version__, docs_url="/api/docs")
    for module in (recruitment, applications, signing, esign_webhooks, onboarding, conversions, payout_webhooks):
        app.include_router(module.router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
