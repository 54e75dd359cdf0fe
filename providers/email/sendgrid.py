"""SendGrid provider: the official `sendgrid` library, v3 /mail/send, batched with personalizations.

Each personalization carries one recipient with its own subject, headers (List-Unsubscribe),
custom_args (our message id, mapped back by the event webhook) and substitutions holding the
text and HTML we rendered, so up to 1,000 different messages travel in one request.

Retries: 429 waits for Retry-After (else X-RateLimit-Reset); 5xx and connection failures back
off exponentially with jitter; other 4xx fail permanently with SendGrid's reason. A read
timeout is ambiguous (SendGrid may have accepted the mail and has no idempotency key), so it
is never repeated here: the message stays `sending` until the event webhook confirms it.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
import urllib.error
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from partnerflow.providers.email.base import EmailProvider, OutgoingEmail, SendOutcome
from partnerflow.providers.email.settings import MailSettings
from partnerflow.providers.errors import (
    AmbiguousError,
    PermanentError,
    ProviderError,
    RetryableError,
)

MAX_PERSONALIZATIONS = 1000  # SendGrid's per-request limit
MAX_SUBSTITUTIONS_BYTES = 10_000  # per personalization
MAX_CATEGORIES = 10
TEXT_TAG, HTML_TAG = "-pf-text-", "-pf-html-"
MAX_WAIT_SECONDS = 120.0  # longer rate-limit waits are left to the next run


def _sleep(seconds: float) -> None:  # tests replace this to record waits instead of waiting
    time.sleep(seconds)


def _header(headers, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    return str(value) if value is not None else None


def _reason(status: int, body: bytes | str | None) -> str:
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        text = "; ".join(f"{e.get('field') + ': ' if e.get('field') else ''}{e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError):
        text = (body.decode(errors="replace") if isinstance(body, bytes) else str(body or ""))[:300]
    return f"SendGrid {status}: {text or 'no reason given'}"


def _error_indexes(body: bytes | str | None) -> set[int]:
    """Which personalizations a 400 blames (fields like 'personalizations.3.to')."""
    found = set()
    try:
        for error in json.loads(body or b"{}").get("errors") or []:
            parts = (error.get("field") or "").split(".")
            if len(parts) > 1 and parts[0] == "personalizations" and parts[1].isdigit():
                found.add(int(parts[1]))
    except (ValueError, AttributeError):
        pass
    return found


class SendGridProvider(EmailProvider):
    name = "sendgrid"
    idempotent = False

    def __init__(self, settings: MailSettings, sleep: Callable[[float], None] | None = None):
        self.settings = settings
        self.sleep = sleep or _sleep
        self.sg = SendGridAPIClient(settings.sendgrid_api_key.get_secret_value(),
                                    host=settings.sendgrid_api_host.rstrip("/"))
        self.sg.client.timeout = settings.sendgrid_timeout_seconds  # the library has no default timeout
        self.max_retries = settings.sendgrid_max_retries

    # --- building requests ---

    def _sender(self, item: OutgoingEmail) -> dict:
        sender = {"email": item.from_email or self.settings.sender_email}
        name = item.from_name or self.settings.sender_name
        if name:
            sender["name"] = name
        return sender

    def _personalization(self, item: OutgoingEmail, substitute: bool) -> dict:
        p = {"to": [{"email": item.to}], "subject": item.subject,
             "custom_args": {"pf_message_id": str(item.message_id), "pf_key": item.idempotency_key}}
        if item.headers:
            p["headers"] = dict(item.headers)
        if substitute:
            p["substitutions"] = {TEXT_TAG: item.text, HTML_TAG: item.html or ""}
        return p

    def _fits_substitution(self, item: OutgoingEmail) -> bool:
        size = len(item.text.encode()) + len((item.html or "").encode()) + len(TEXT_TAG) + len(HTML_TAG)
        return not item.attachments and size <= MAX_SUBSTITUTIONS_BYTES and TEXT_TAG not in item.text

    def build_requests(self, emails: list[OutgoingEmail]) -> list[tuple[dict, list[OutgoingEmail]]]:
        """Group messages into request bodies (same sender and categories share a request)."""
        groups: dict[tuple, list[OutgoingEmail]] = {}
        singles: list[OutgoingEmail] = []
        for item in emails:
            if self._fits_substitution(item):
                key = (json.dumps(self._sender(item), sort_keys=True), tuple(item.categories[:MAX_CATEGORIES]),
                       item.html is not None)
                groups.setdefault(key, []).append(item)
            else:
                singles.append(item)
        requests = []
        for (_sender, categories, has_html), items in groups.items():
            for i in range(0, len(items), MAX_PERSONALIZATIONS):
                chunk = items[i:i + MAX_PERSONALIZATIONS]
                content = [{"type": "text/plain", "value": TEXT_TAG}]
                if has_html:
                    content.append({"type": "text/html", "value": HTML_TAG})
                body = {"personalizations": [self._personalization(it, True) for it in chunk],
                        "from": self._sender(chunk[0]), "content": content}
                if categories:
                    body["categories"] = list(categories)
                requests.append((body, chunk))
        for item in singles:
            content = [{"type": "text/plain", "value": item.text}]
            if item.html:
                content.append({"type": "text/html", "value": item.html})
            body = {"personalizations": [self._personalization(item, False)], "from": self._sender(item),
                    "content": content}
            if item.categories:
                body["categories"] = item.categories[:MAX_CATEGORIES]
            if item.attachments:
                body["attachments"] = [{"content": base64.b64encode(data).decode(), "filename": filename,
                                        "type": mime, "disposition": "attachment"}
                                       for filename, data, mime in item.attachments]
            requests.append((body, [item]))
        return requests

    # --- sending ---

    def send_batch(self, emails: list[OutgoingEmail]) -> list[SendOutcome]:
        outcomes: list[SendOutcome] = []
        for body, items in self.build_requests(emails):
            outcomes.extend(self._send_request(body, items))
        return outcomes

    def _send_request(self, body: dict, items: list[OutgoingEmail]) -> list[SendOutcome]:
        try:
            message_id = self.post(body)
        except PermanentError as exc:
            blamed = _error_indexes(getattr(exc, "body", None))
            if len(items) > 1 and blamed and len(blamed) < len(items):
                # Fail only the blamed recipients and send the rest again without them.
                outcomes = [SendOutcome(items[i].message_id, error=exc) for i in sorted(blamed) if i < len(items)]
                keep = [i for i in range(len(items)) if i not in blamed]
                retry_body = {**body, "personalizations": [body["personalizations"][i] for i in keep]}
                return outcomes + self._send_request(retry_body, [items[i] for i in keep])
            return [SendOutcome(it.message_id, error=exc) for it in items]
        except ProviderError as exc:  # retryable after our own retries, or ambiguous
            return [SendOutcome(it.message_id, error=exc) for it in items]
        return [SendOutcome(it.message_id, provider_message_id=message_id) for it in items]

    def post(self, body: dict) -> str | None:
        """POST /v3/mail/send with retries; returns X-Message-Id. Raises a classified ProviderError."""
        attempt = 0
        while True:
            try:
                response = self.sg.client.mail.send.post(request_body=body)
                return _header(response.headers, "X-Message-Id")
            except HTTPError as exc:
                status = exc.status_code
                if status == 429:
                    wait = self._rate_limit_wait(exc.headers)
                    error = RetryableError(_reason(status, exc.body), retry_after=wait)
                elif status >= 500:
                    wait = None
                    error = RetryableError(_reason(status, exc.body))
                else:
                    error = PermanentError(_reason(status, exc.body))
                    error.body = exc.body
                    raise error from None
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                # The request went out and the answer never came: SendGrid may have accepted it.
                raise AmbiguousError(f"SendGrid gave no answer ({type(exc).__name__}, timeout "
                                     f"{self.settings.sendgrid_timeout_seconds}s); waiting for its event "
                                     "webhook instead of sending again") from None
            except urllib.error.URLError as exc:  # never sent: refused, DNS, connect timeout
                wait = None
                error = RetryableError(f"SendGrid unreachable: {getattr(exc, 'reason', exc)}")
            attempt += 1
            if attempt > self.max_retries:
                raise error
            if wait is None:
                wait = min(60.0, 2 ** (attempt - 1)) + random.uniform(0, 1)  # exponential backoff, jitter
            if wait > MAX_WAIT_SECONDS:
                raise error
            self.sleep(wait)

    @staticmethod
    def _rate_limit_wait(headers) -> float | None:
        retry_after = _header(headers, "Retry-After")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
                except (TypeError, ValueError):
                    pass
        reset = _header(headers, "X-RateLimit-Reset")
        if reset:
            try:
                return max(0.0, float(reset) - time.time())
            except ValueError:
                pass
        return None
