"""What every partner-facing page shares: Jinja2 templates with one base layout, and who is at the page.

Pages live in templates/<stage>/pages/*.html and extend templates/shared/pages/base.html. Autoescape is
on for every page and a missing variable is an error, so no partner-supplied text reaches HTML unescaped
and no page renders half-empty.
"""

from __future__ import annotations

import functools
from html import escape
from importlib import resources
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from partnerflow.tasks.shared.money import format_money
from partnerflow.web.guard import client_address


@functools.lru_cache(maxsize=1)
def page_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("partnerflow.templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    env.filters["money"] = lambda minor, currency: format_money(minor, currency)
    return env


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render templates/<template> (e.g. "portal/pages/home.html") as an HTML answer."""
    return HTMLResponse(page_env().get_template(template).render(**context), status_code=status)


def message(title: str, text: str, status: int = 200) -> HTMLResponse:
    """A page that only says one thing (a link expired, a thank-you)."""
    return render("shared/pages/message.html", status, title=title, text=text)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """Legacy frame for pages still built as HTML strings; being moved to templates."""
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
