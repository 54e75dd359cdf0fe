"""Callbacks from the SaaS e-signature providers (Dropbox Sign, DocuSign, Documenso): verified, timestamp-checked, stored once, then acted on.

Anything forged, unsigned, malformed, too old or already acted on gets a 4xx and stores nothing.
A failure while acting (e.g. the signed PDF cannot be downloaded yet) answers 5xx, so the
provider retries; the stored, unprocessed event is then picked up again.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from partnerflow.providers.errors import ProviderError, RetryableError
from partnerflow.providers.esign.saas import (
    WebhookRejected,
    check_timestamp,
    complete_from_provider,
    decline_from_provider,
    mark_processed,
    store_event,
)
from partnerflow.settings import ConfigError, get_settings

log = logging.getLogger(__name__)
router = APIRouter()


def _dropbox_sign_provider():
    from partnerflow.providers.esign.dropbox_sign import DropboxSignProvider

    try:
        return DropboxSignProvider(get_settings().esign)
    except (ConfigError, ProviderError):
        raise WebhookRejected(404, "Dropbox Sign is not configured") from None


def _docusign_provider():
    from partnerflow.providers.esign.docusign import DocuSignProvider

    try:
        return DocuSignProvider(get_settings().esign)
    except (ConfigError, ProviderError):
        raise WebhookRejected(404, "DocuSign is not configured") from None


def handle_dropbox_sign(form_json: str | None) -> str:
    """Verify and act on one Dropbox Sign callback; returns what happened. Raises WebhookRejected."""
    from partnerflow.providers.esign import dropbox_sign

    provider = _dropbox_sign_provider()
    payload = provider.parse_callback(form_json)
    check_timestamp(dropbox_sign.event_time(payload))
    event = payload["event"]
    if event["event_type"] == "callback_test":  # sent when the callback URL is set up; nothing to store
        return "test"
    request_id = (payload.get("signature_request") or {}).get("signature_request_id")
    # Dropbox Sign gives no event id; the request, type and time identify one event.
    event_id = f"{request_id or 'account'}:{event['event_type']}:{event['event_time']}"
    webhook_id = store_event(provider.name, event_id, event["event_type"], payload)
    try:
        return act(provider, webhook_id, dropbox_sign.completion(payload), dropbox_sign.declined(payload))
    except RetryableError as exc:
        if event["event_type"] == "signature_request_all_signed" and "HTTP 409" in exc.reason:
            # The PDF is still being rendered; `signature_request_downloadable` follows and completes it.
            return "waiting for downloadable"
        raise


def handle_docusign(body: bytes, headers: dict[str, str]) -> str:
    """Verify and act on one DocuSign Connect notification; returns what happened. Raises WebhookRejected."""
    from partnerflow.providers.esign import docusign

    provider = _docusign_provider()
    payload = provider.parse_callback(body, headers)
    check_timestamp(docusign.generated_at(payload))
    event_id = f"{payload['data']['envelopeId']}:{payload['event']}:{payload['generatedDateTime']}"
    webhook_id = store_event(provider.name, event_id, payload["event"], payload)
    return act(provider, webhook_id, docusign.completion(payload), docusign.declined(payload))


def _documenso_provider():
    from partnerflow.providers.esign.documenso import DocumensoProvider

    try:
        return DocumensoProvider(get_settings().esign)
    except (ConfigError, ProviderError):
        raise WebhookRejected(404, "Documenso is not configured") from None


def handle_documenso(body: bytes, headers: dict[str, str]) -> str:
    """Check and act on one Documenso webhook (shared secret header, not a signature). Raises WebhookRejected."""
    from partnerflow.providers.esign import documenso

    provider = _documenso_provider()
    payload = provider.parse_callback(body, headers)
    check_timestamp(documenso.created_at(payload))
    event_id = f"{payload['payload']['id']}:{payload['event']}:{payload['createdAt']}"
    webhook_id = store_event(provider.name, event_id, payload["event"], payload)
    return act(provider, webhook_id, documenso.completion(payload), documenso.declined(payload))


def act(provider, webhook_id: int, completion: tuple | None, declined: tuple | None = None) -> str:
    """Complete (or close, when declined) the request a stored event is about; other events are only kept."""
    if completion is not None:
        return complete_from_provider(provider, webhook_id, *completion)
    if declined is not None:
        return decline_from_provider(provider.name, webhook_id, *declined)
    mark_processed(webhook_id)
    return "stored"


def _failure(provider: str, exc: Exception):
    if isinstance(exc, WebhookRejected):
        log.warning("%s callback rejected: %s", provider, exc.reason)
        return PlainTextResponse(exc.reason, status_code=exc.status)
    reason = exc.reason if isinstance(exc, ProviderError) else type(exc).__name__
    log.warning("%s callback could not be acted on yet: %s", provider, reason)
    return PlainTextResponse("try again later", status_code=503)


@router.post("/webhooks/dropbox-sign")
async def dropbox_sign_callback(request: Request):
    try:
        form = await request.form()
        form_json = form.get("json")
    except Exception:  # not a form, or a broken multipart body
        return PlainTextResponse("malformed callback", status_code=400)
    if not isinstance(form_json, str):
        return PlainTextResponse("missing json field", status_code=400)
    try:
        await run_in_threadpool(handle_dropbox_sign, form_json)
    except (WebhookRejected, ProviderError) as exc:
        return _failure("dropbox_sign", exc)
    # Dropbox Sign counts a callback as delivered only with this exact body.
    from partnerflow.providers.esign.dropbox_sign import HELLO

    return PlainTextResponse(HELLO)


@router.post("/webhooks/docusign")
async def docusign_callback(request: Request):
    body = await request.body()
    try:
        outcome = await run_in_threadpool(handle_docusign, body, dict(request.headers))
    except (WebhookRejected, ProviderError) as exc:
        return _failure("docusign", exc)
    return JSONResponse({"status": "ok", "outcome": outcome})


@router.post("/webhooks/documenso")
async def documenso_callback(request: Request):
    body = await request.body()
    try:
        outcome = await run_in_threadpool(handle_documenso, body, dict(request.headers))
    except (WebhookRejected, ProviderError) as exc:
        return _failure("documenso", exc)
    return JSONResponse({"status": "ok", "outcome": outcome})
