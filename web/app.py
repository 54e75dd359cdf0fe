"""The small web app: sign-ups, signing pages, unsubscribe links, provider webhooks, conversion intake.

Each area keeps its routes in its own module; this file only assembles them.
"""

from __future__ import annotations

from fastapi import FastAPI

from partnerflow import __version__
from partnerflow.web import applications, conversions, esign_webhooks, payout_webhooks, recruitment, signing


def create_app() -> FastAPI:
    app = FastAPI(title="Partnerflow", version=__version__, docs_url="/api/docs")
    for module in (recruitment, applications, signing, esign_webhooks, conversions, payout_webhooks):
        app.include_router(module.router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
