"""A polite, safe fetcher for other people's web pages.

Every page is fetched at most once per call, with:
- bounded concurrency and a delay between requests to the same host (politeness);
- robots.txt read once per host and obeyed for our user agent;
- redirects followed by hand (at most `max_redirects`, loops detected);
- a total time limit per request and a streaming size cap, so a slow-drip or huge page cannot hang us;
- the body decoded from the declared charset, falling back to the <meta> charset and then to
  charset-normalizer's guess (a latin-1 page served as utf-8 still reads correctly).

Nothing raises: each URL gets a FetchResult whose `error` is a short machine reason
(`timeout`, `too_large`, `redirect_loop`, `not_html`, `robots_disallowed`, `http_<code>`,
`connection_error`, `decode_error`, `invalid_url`, `private_address`).

Server-side request forgery: by default every host (robots.txt, each redirect hop) is resolved once,
refused unless every address is public (`is_public_address`), and the connection goes to the address
that was checked, with the name in the Host header and TLS SNI/certificate check, so a DNS answer
that changes between the check and the connection (rebinding) cannot reach an internal address.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx
from charset_normalizer import from_bytes

from partnerflow.tasks.shared.addresses import addresses_of, is_public_address

DEFAULT_USER_AGENT = "PartnerflowBot/0.1 (+partner program discovery; obeys robots.txt)"
HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_ROBOTS_MAX_BYTES = 500_000
_WEB_DEFAULTS = ("cp1252", "latin_1", "iso8859_15")


@dataclass
class FetchResult:
    url: str
    final_url: str | None = None
    status_code: int | None = None
    ok: bool = False
    error: str | None = None
    content_type: str | None = None
    text: str | None = None
    elapsed_ms: int = 0
    encoding: str | None = None  # the charset the text was decoded with
    notes: list[str] = field(default_factory=list)  # e.g. "charset_mismatch:utf-8"


class _Stop(Exception):
    """A fetch ends early with a machine reason."""

    def __init__(self, reason: str, status_code: int | None = None, location: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.location = location


def _charset_from_header(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = re.search(r"charset\s*=\s*\"?([^\s;\"]+)", content_type, re.I)
    return match.group(1).strip().lower() if match else None


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_body(body: bytes, content_type: str | None) -> tuple[str, str, list[str]]:
    """(text, encoding used, notes). Raises _Stop('decode_error') when nothing decodes it."""
    notes: list[str] = []
    declared = _charset_from_header(content_type)
    meta = _META_CHARSET.search(body[:4096])
    candidates = [declared, meta.group(1).decode("ascii", "ignore").lower() if meta else None]
    for name in candidates:
        codec = _known_codec(name)
        if name and not codec:
            notes.append(f"unknown_charset:{name}")
        if not codec:
            continue
        try:
            return body.decode(codec), codec, notes
        except (UnicodeDecodeError, LookupError):
            notes.append(f"charset_mismatch:{name}")
    if not any(candidates):
        try:
            return body.decode("utf-8"), "utf-8", notes
        except UnicodeDecodeError:
            pass
    guessed = guess_decode(body)
    if guessed is None:
        raise _Stop("decode_error")
    return guessed[0], guessed[1], notes


def guess_decode(body: bytes) -> tuple[str, str] | None:
    """(text, encoding) as charset-normalizer guesses it, or None for binary data."""
    matches = from_bytes(body)
    guess = matches.best()
    if guess is None or guess.encoding is None:
        return None
    # Short texts often tie between legacy code pages; on a tie prefer the web's own default,
    # windows-1252 (what browsers use for "latin-1" too).
    for match in matches:
        if (match.encoding in _WEB_DEFAULTS and match.chaos == guess.chaos
                and match.coherence == guess.coherence):
            guess = match
            break
    return str(guess), guess.encoding


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: loading the CA bundle took longer than a chunk's parsing."""
    return httpx.create_ssl_context(trust_env=False)  # as our clients: no environment settings


class _Fetcher:
    def __init__(self, *, concurrency, per_domain_delay, timeout, max_bytes, user_agent,
                 respect_robots, max_redirects, allow_private, max_crawl_delay):
        self.per_domain_delay = per_domain_delay
        self.allow_private = allow_private
        self.max_crawl_delay = max_crawl_delay
        self.crawl_delay: dict[str, float] = {}  # host -> robots.txt Crawl-delay for us
        # host -> ("ip", the checked address to connect to) or ("error", reason); resolved once per fetcher
        self.host_checked: dict[str, tuple[str, str]] = {}
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.user_agent = user_agent
        self.respect_robots = respect_robots
        self.max_redirects = max_redirects
        self.semaphore = asyncio.Semaphore(max(1, concurrency))
        self.host_locks: dict[str, asyncio.Lock] = {}
        self.host_last: dict[str, float] = {}
        self.robots: dict[str, RobotFileParser | str] = {}  # origin -> parser or an error reason
        self.robots_locks: dict[str, asyncio.Lock] = {}
        self.client = httpx.AsyncClient(
            verify=_tls_context(),
            follow_redirects=False,
            trust_env=False,  # an environment proxy would connect to names we have not checked
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"},
            limits=httpx.Limits(max_connections=max(1, concurrency)),
        )

    async def _slot(self, host: str) -> None:
        """Take a concurrency slot once the delay (ours, or the site's longer Crawl-delay) has passed.

        Waiting for a host's turn does not hold a slot, so a slow-to-visit host never blocks the others.
        """
        delay = max(self.per_domain_delay, self.crawl_delay.get(host, 0.0))
        if delay <= 0:
            await self.semaphore.acquire()
            return
        async with self.host_locks.setdefault(host, asyncio.Lock()):
            wait = self.host_last.get(host, 0.0) + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.semaphore.acquire()
            self.host_last[host] = time.monotonic()

    async def _get(self, url: str, max_bytes: int, accept=None) -> tuple[httpx.Response, bytes]:
        """One GET with a total deadline and a size cap; `accept(response)` may refuse the body early."""
        parts = urlsplit(url)
        request_url, headers, extensions = url, {}, {}
        if not self.allow_private:
            # Connect to the address we checked; the name still goes in Host and in TLS (SNI, certificate).
            address = await self._checked_address(parts.hostname or "", parts.port or _default_port(parts.scheme))
            named = httpx.URL(url)
            request_url = str(named.copy_with(host=address, username=None, password=None))
            headers["Host"] = named.netloc.decode("ascii")  # IDNA-encoded name (and port), no credentials
            extensions["sni_hostname"] = named.raw_host.decode("ascii")
        await self._slot(parts.hostname or "")

        async def run():
            async with self.client.stream("GET", request_url, headers=headers, extensions=extensions) as response:
                if accept is not None:
                    accept(response)
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise _Stop("too_large", response.status_code)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _Stop("too_large", response.status_code)
                    chunks.append(chunk)
                return response, b"".join(chunks)

        try:
            async with asyncio.timeout(self.timeout):  # in this task: no extra task per request, as wait_for makes
                return await run()
        except (TimeoutError, httpx.TimeoutException):
            raise _Stop("timeout") from None
        except httpx.DecodingError:
            raise _Stop("decode_error") from None
        except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise _Stop("connection_error") from None
        finally:
            self.semaphore.release()

    async def _robots_allows(self, url: str) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self.robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin not in self.robots:
                self.robots[origin] = rules = await self._load_robots(origin)
                if not isinstance(rules, str):
                    wanted = rules.crawl_delay(self.user_agent)
                    if wanted:
                        self.crawl_delay[urlsplit(origin).hostname or ""] = min(float(wanted), self.max_crawl_delay)
        rules = self.robots[origin]
        if isinstance(rules, str):
            raise _Stop(rules)
        if not rules.can_fetch(self.user_agent, url):
            raise _Stop("robots_disallowed")

    async def _checked_address(self, host: str, port: int) -> str:
        """The one address of `host` we connect to, once every address it resolves to is public (SSRF)."""
        if host not in self.host_checked:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), self.timeout)
            except TimeoutError:
                self.host_checked[host] = ("error", "timeout")
            except (OSError, UnicodeError):
                self.host_checked[host] = ("error", "connection_error")
            else:
                addresses = addresses_of(infos)
                public = addresses and all(is_public_address(a) for a in addresses)
                self.host_checked[host] = ("ip", str(addresses[0])) if public else ("error", "private_address")
        kind, value = self.host_checked[host]
        if kind == "error":
            raise _Stop(value)
        return value

    async def _load_robots(self, origin: str) -> RobotFileParser | str:
        parser = RobotFileParser()
        try:
            response, body = await self._get(origin + "/robots.txt", _ROBOTS_MAX_BYTES)
        except _Stop as stop:
            if stop.reason == "too_large":
                parser.parse([])  # an absurd robots.txt: treat as no rules
                return parser
            return stop.reason  # the site is unreachable; the page would be too
        if response.status_code >= 500:
            # RFC 9309: a server error on robots.txt means "assume complete disallow".
            parser.disallow_all = True
        elif response.status_code >= 400 or 300 <= response.status_code < 400:
            parser.parse([])  # no robots.txt (or moved): everything allowed
        else:
            parser.parse(body.decode("utf-8", "replace").splitlines())
        return parser

    async def fetch(self, url: str) -> FetchResult:
        result = FetchResult(url=url)
        started = time.monotonic()
        try:
            await self._fetch(url, result)
            result.ok = True
        except _Stop as stop:
            result.error = stop.reason
            result.status_code = stop.status_code or result.status_code
            result.text = None
        except Exception as exc:  # never let one hostile page stop the others
            result.error = f"connection_error:{type(exc).__name__}"
            result.text = None
        result.elapsed_ms = int((time.monotonic() - started) * 1000)
        return result

    async def _fetch(self, url: str, result: FetchResult) -> None:
        current = url.strip()
        if "://" not in current:
            current = "http://" + current
        seen: set[str] = set()
        for _hop in range(self.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Stop("invalid_url")
            if current in seen:
                raise _Stop("redirect_loop")
            seen.add(current)
            result.final_url = current
            if not self.allow_private:
                await self._checked_address(parts.hostname, parts.port or _default_port(parts.scheme))
            if self.respect_robots:
                await self._robots_allows(current)

            def accept(response: httpx.Response) -> None:
                result.status_code = response.status_code
                if response.is_redirect or response.status_code >= 400:
                    # A redirect's or an error's body is never read.
                    raise _Stop("__stop_body__", response.status_code, response.headers.get("location"))
                ctype = response.headers.get("content-type", "")
                result.content_type = ctype or None
                if ctype and ctype.split(";", 1)[0].strip().lower() not in HTML_TYPES:
                    raise _Stop("not_html", response.status_code)

            try:
                response, body = await self._get(current, self.max_bytes, accept)
            except _Stop as stop:
                if stop.reason != "__stop_body__":
                    raise
                code = stop.status_code or 0
                if 300 <= code < 400:
                    location = stop.location
                    if not location:
                        raise _Stop(f"http_{code}", code) from None
                    current = urljoin(current, location)
                    continue
                raise _Stop(f"http_{code}", code) from None
            result.status_code = response.status_code
            text, encoding, notes = decode_body(body, result.content_type)
            result.text, result.encoding, result.notes = text, encoding, notes
            return
        raise _Stop("redirect_loop")  # too many hops counts as a loop


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def _fetch_all(urls: list[str], process: Callable[[FetchResult], Any] | None = None,
                     **options) -> list[FetchResult] | list[tuple[FetchResult, Any]]:
    fetcher = _Fetcher(**options)

    async def one(url: str):
        result = await fetcher.fetch(url)
        # Processed on the event loop as soon as it arrives: other downloads continue meanwhile, and no
        # second thread fights this one for the GIL (which slowed the downloads more than parsing cost).
        return result if process is None else (result, process(result))

    try:
        return await asyncio.gather(*(one(u) for u in urls))
    finally:
        await fetcher.client.aclose()


def fetch_pages(
    urls: list[str],
    *,
    concurrency: int = 10,
    per_domain_delay: float = 1.0,
    timeout: float = 10.0,
    max_bytes: int = 2_000_000,
    user_agent: str = DEFAULT_USER_AGENT,
    respect_robots: bool = True,
    max_redirects: int = 5,
    allow_private: bool = False,
    max_crawl_delay: float = 30.0,
    process: Callable[[FetchResult], Any] | None = None,
) -> list:
    """Fetch `urls` politely; one FetchResult per URL, in the same order. Never raises for a bad page.

    Hosts that resolve to non-public addresses are refused (`private_address`) unless `allow_private=True`
    (only for pages served on this machine by tests and benchmarks, through an explicit setting).
    A robots.txt Crawl-delay longer than `per_domain_delay` is obeyed, up to `max_crawl_delay` seconds.
    With `process` (which must not raise), each result is handed to it as soon as the page is read, while
    the others download, and the list holds `(result, process(result))` pairs instead.
    """
    options = {"concurrency": concurrency, "per_domain_delay": per_domain_delay, "timeout": timeout,
               "max_bytes": max_bytes, "user_agent": user_agent, "respect_robots": respect_robots,
               "max_redirects": max_redirects, "allow_private": allow_private, "max_crawl_delay": max_crawl_delay}
    coro_factory = lambda: _fetch_all(list(urls), process, **options)  # noqa: E731
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    # Called from inside an event loop (e.g. an async flow): run on a thread of our own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro_factory()).result()
