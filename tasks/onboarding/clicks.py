"""Clicks on tracking links: where a click may lead (never an open redirect), whether it came from a
bot, and a batched writer that keeps the database off the request path.

The web process queues each click in memory; a background thread writes the queue every
`click_flush_ms` or as soon as `click_flush_rows` wait, in one transaction. A clean shutdown
(the web app's lifespan) writes what is left, so no click is lost; a crash loses at most one
flush interval, which a click counter can afford.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import insert
from sqlmodel import select

from partnerflow.models import Partner, session_scope, utcnow
from partnerflow.models.tracking import Click
from partnerflow.secrets import pseudonym
from partnerflow.settings import get_settings
from partnerflow.tasks.onboarding.activation import note_click

log = logging.getLogger(__name__)

MAX_USER_AGENT = 256
MAX_REFERRER = 512
MAX_TARGET = 2048
# While the database is away the queue grows; past this many clicks new ones are dropped (and counted),
# so an outage costs clicks, never the web process's memory.
MAX_QUEUED = 200_000
# Crawlers, link unfurlers and scripted fetches: their "clicks" are counted apart, never as visitors.
_BOT_AGENT = re.compile(
    r"bot|crawl|spider|slurp|preview|prefetch|headless|facebookexternalhit|embedly|curl|wget|python-|"
    r"httpx|go-http-client|java/|okhttp|scrapy|monitor|lighthouse", re.IGNORECASE)


def new_click_id() -> str:
    return secrets.token_urlsafe(12)


def allowed_hosts() -> list[str]:
    settings = get_settings().onboarding
    listed = settings.partner_landing_domains or urlsplit(settings.partner_landing_url).hostname or ""
    return [h.strip().lower().rstrip(".") for h in listed.split(",") if h.strip()]


def safe_target(url: str | None) -> str | None:
    """The deep link's target when it is an absolute http(s) URL on an allowed host, else None.

    Strict on purpose: browsers read `//host`, `https:host`, backslashes, `user@host` and non-ASCII
    hosts differently from parsers, so anything but a plain `https://host/path` is refused.
    """
    if not url or len(url) > MAX_TARGET or not url.isascii() or "\\" in url:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or parts.netloc.lower() != host:
        return None  # no scheme, no host, a port or userinfo (`https://shop.example@evil.example`)
    host = host.rstrip(".")
    if any(host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts()):
        return url
    return None


def landing_with(target: str, code: str, click_id: str) -> str:
    """The target with ?ref=<code>&pf_click=<click id> appended to its own query."""
    parts = urlsplit(target)
    query = "&".join(q for q in (parts.query, urlencode({"ref": code, "pf_click": click_id})) if q)
    return urlunsplit(parts._replace(query=query))


def is_bot(user_agent: str, method: str, purpose: str = "") -> bool:
    """Crawlers, link previews (HEAD) and browser prefetches (Sec-Purpose / Purpose: prefetch)."""
    return (method.upper() == "HEAD" or "prefetch" in purpose.lower() or not user_agent.strip()
            or bool(_BOT_AGENT.search(user_agent)))


@dataclass(frozen=True)
class PendingClick:
    click_id: str
    tracking_code: str
    clicked_at: datetime
    ip_hash: str | None
    user_agent: str | None
    referrer: str | None
    landing_url: str
    is_bot: bool


def pending_click(code: str, *, click_id: str, ip: str | None, user_agent: str, referrer: str | None,
                  landing: str, bot: bool, now: datetime | None = None) -> PendingClick:
    return PendingClick(click_id=click_id, tracking_code=code[:64], clicked_at=now or utcnow(),
                        ip_hash=pseudonym(ip, "click-ip") if ip else None,
                        user_agent=user_agent[:MAX_USER_AGENT] or None,
                        referrer=(referrer or "")[:MAX_REFERRER] or None, landing_url=landing, is_bot=bot)


def write_clicks(batch: list[PendingClick]) -> int:
    """Store a batch in one transaction; clicks on unknown codes are dropped. Returns how many were stored."""
    if not batch:
        return 0
    codes = {c.tracking_code for c in batch}
    with session_scope() as session:
        partners = dict(session.exec(select(Partner.tracking_code, Partner.id)
                                     .where(Partner.tracking_code.in_(codes))).all())
        rows = [{**asdict(c), "partner_id": partners[c.tracking_code]} for c in batch if c.tracking_code in partners]
        if rows:
            session.execute(insert(Click), rows)
    return len(rows)


_noted: dict[str, float] = {}


def note_activity(code: str) -> None:
    """A human click is partner activity; note_click stores it at most once a minute, so this process
    skips the database for a code it noted less than a minute ago."""
    now = time.monotonic()
    if now - _noted.get(code, -120.0) < 60:
        return
    if len(_noted) > 100_000:
        _noted.clear()
    _noted[code] = now
    note_click(code)


class ClickWriter:
    """In-process queue of clicks, written in batches by one background thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[PendingClick] = queue.Queue()
        self.dropped = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, click: PendingClick) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("click queue full (database away?): %d click(s) dropped so far", self.dropped)
            return
        self._queue.put(click)
        self._ensure_running()
        if self._queue.qsize() >= get_settings().onboarding.click_flush_rows:
            self._wake.set()

    def _ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._wake.clear()  # a wake-up left by an earlier close() is not a reason to write now
                self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(get_settings().onboarding.click_flush_ms / 1000)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is away: the batch went back to the queue, try next tick
                log.exception("writing clicks failed; retrying")

    def flush(self) -> int:
        """Write everything queued so far; on failure the batch goes back to the queue and the error is raised."""
        with self._write_lock:
            batch: list[PendingClick] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                return write_clicks(batch)
            except Exception:
                for click in batch:
                    self._queue.put(click)
                raise

    def close(self) -> int:
        """Clean shutdown: stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.flush()

    def pending(self) -> int:
        return self._queue.qsize()


WRITER = ClickWriter()
