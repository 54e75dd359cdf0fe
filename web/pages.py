"""What every partner-facing page shares: the plain HTML frame, and who is at the page."""

from __future__ import annotations

from html import escape

from fastapi import Request
from fastapi.responses import HTMLResponse

from partnerflow.web.guard import client_address


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A page readable on a phone and usable without JavaScript."""
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
        ".doc{border:1px solid #ccc;padding:1rem 2rem;max-height:60vh;overflow:auto}.error{color:#b00020}"
        "label{display:block;margin:.6rem 0}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>", status_code=status)


def client_of(request: Request) -> tuple[str, str]:
    """(IP address, user agent) of the person at the page; behind a trusted proxy, the address it saw."""
    proxies = getattr(request.app.state, "trusted_proxies", [])
    return client_address(request, proxies), request.headers.get("user-agent", "")
