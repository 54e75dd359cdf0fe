"""What stands between the public internet and the web app's handlers: who the client is (believing
X-Forwarded-For only from a configured proxy), rate limits for the public forms (the `limits` library,
counters in memory or in Redis shared by every web process), a cap on every request body, and the
headers token pages need.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partnerflow.settings import WebSettings

TOO_LARGE = "The request body is larger than this server accepts."
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(value: str) -> list[_Network]:
    """The proxies whose X-Forwarded-For we believe; a wrong entry is a ValueError naming it."""
    networks = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"PARTNERFLOW_WEB_TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
    return networks


def _is_trusted(address: str, proxies: list[_Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(request: Request, proxies: list[_Network]) -> str:
    """The client's IP address. X-Forwarded-For is read only when the connection comes from a trusted
    proxy, from the right, skipping our own proxies: the first address a trusted proxy saw is the client."""
    peer = request.client.host if request.client else ""
    if not proxies or not _is_trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


@dataclass
class RateLimits:
    """Per-client-address and per-email-domain limits for one public form."""

    limiter: MovingWindowRateLimiter
    per_ip: list[RateLimitItem]
    per_domain: list[RateLimitItem]
    proxies: list[_Network]
    name: str

    @classmethod
    def from_settings(cls, web: WebSettings, name: str) -> RateLimits:
        storage = storage_from_string(web.web_rate_limit_storage, key_prefix=web.web_rate_limit_key_prefix)
        return cls(MovingWindowRateLimiter(storage), parse_many(web.web_apply_limit_per_ip),
                   parse_many(web.web_apply_limit_per_domain), trusted_networks(web.web_trusted_proxies), name)

    def allow(self, request: Request, email: str | None) -> bool:
        """Count this attempt; False when the client address or the email's domain has used its share."""
        keys = [(item, "ip", client_address(request, self.proxies)) for item in self.per_ip]
        domain = (email or "").rsplit("@", 1)[-1].strip().lower() if "@" in (email or "") else ""
        if domain:
            keys += [(item, "domain", domain) for item in self.per_domain]
        # Every rule is counted (hit), so a flood from one address also uses up its domain's share.
        allowed = True
        for item, kind, value in keys:
            allowed = self.limiter.hit(item, self.name, kind, value) and allowed
        return allowed


class BodyTooLarge(HTTPException):
    """A request body went past the configured limit while it was being read (an HTTPException, so that
    body parsing passes it through as 413 rather than calling it a malformed body)."""

    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE)


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` (or its path's own limit in `per_path`) gets 413 before
    it is read whole. A declared Content-Length is checked up front; a chunked body is counted as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(send, 413 if length.isdigit() else 400)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, 413)

    async def _refuse(self, send: Send, status: int) -> None:
        text = (TOO_LARGE if status == 413 else "The Content-Length header is not a number.")
        body = json.dumps({"detail": text}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# No page of ours is framed or sniffed, and none sends its address (which may hold a token) as a Referer.
EVERY_PAGE_HEADERS = {
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"content-security-policy": b"frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
}
# Pages reached through a secret link are not kept by the browser or a shared cache either.
TOKEN_PREFIXES = ("/sign/", "/onboarding/", "/u/", "/r/")
# A signed-in partner's pages: never kept by a shared cache, whatever the answer (a redirect or a 403
# included); a route may choose its own private caching (the portal's chart).
PRIVATE_PREFIXES = ("/portal",)


class SafeHeaders:
    """ASGI middleware adding EVERY_PAGE_HEADERS to each response, and `Cache-Control: no-store` to token pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = dict(EVERY_PAGE_HEADERS)
        if scope.get("path", "").startswith(TOKEN_PREFIXES):
            extra[b"cache-control"] = b"no-store"

        private = scope.get("path", "").startswith(PRIVATE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in extra]
                if private and not any(k.lower() == b"cache-control" for k, _ in kept):
                    kept.append((b"cache-control", b"private, no-store"))
                message = {**message, "headers": kept + list(extra.items())}
            await send(message)

        await self.app(scope, receive, with_headers)
