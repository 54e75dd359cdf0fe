"""Callbacks from the e-signature vendors: one route per vendor that calls back, all built from
the vendor registry (/webhooks/dropbox-sign, /webhooks/docusign, /webhooks/documenso).

Anything forged, unsigned, malformed, too old or already acted on gets a 4xx and stores nothing.
A failure while acting (e.g. the signed PDF cannot be downloaded yet) answers 503, so the
vendor retries; the stored, unprocessed event is then picked up again.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from partnerflow.providers.errors import ProviderError
from partnerflow.providers.esign.base import Inbound, WebhookRejected
from partnerflow.providers.esign.registry import REMOTE, EsignVendor
from partnerflow.tasks.contracting.webhooks import receive_callback

log = logging.getLogger(__name__)
router = APIRouter()
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


async def _inbound(request: Request) -> Inbound:
    body = await request.body()
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        try:
            fields = await request.form()
        except HTTPException:  # e.g. the body limit's 413: answered as it is
            raise
        except Exception:  # a broken multipart body
            raise WebhookRejected(400, "malformed callback") from None
        form = {key: value for key, value in fields.items() if isinstance(value, str)}
    return Inbound(body=body, headers=dict(request.headers), form=form)


def _failure(slug: str, exc: Exception) -> Response:
    if isinstance(exc, WebhookRejected):
        log.warning("%s callback rejected: %s", slug, exc.reason)
        return PlainTextResponse(exc.reason, status_code=exc.status)
    reason = exc.reason if isinstance(exc, ProviderError) else type(exc).__name__
    log.warning("%s callback could not be acted on yet: %s", slug, reason)
    return PlainTextResponse("try again later", status_code=503)


def _route(slug: str):
    async def esign_callback(request: Request) -> Response:
        try:
            outcome, reply = await run_in_threadpool(receive_callback, slug, await _inbound(request))
        except (WebhookRejected, ProviderError) as exc:
            return _failure(slug, exc)
        if reply is not None:  # the vendor counts a callback as delivered only with this exact body
            return PlainTextResponse(reply)
        return JSONResponse({"status": "ok", "outcome": outcome})

    esign_callback.__name__ = f"{slug.replace('-', '_')}_callback"
    return esign_callback


for _name in REMOTE:
    _slug = EsignVendor.slug(_name)
    router.add_api_route(f"/webhooks/{_slug}", _route(_slug), methods=["POST"])
