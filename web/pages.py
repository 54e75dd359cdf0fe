"""What every partner-facing page shares: Jinja2 templates with one base layout, and who is at the page.

Pages live in templates/<stage>/pages/*.html and extend templates/shared/pages/base.html. Autoescape is
on for every page and a missing variable is an error, so no partner-supplied text reaches HTML unescaped
and no page renders half-empty.
"""

from __future__ import annotations

import functools
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


def client_of(request: Request) -> tuple[str, str]:
    """(IP address, user agent) of the person at the page; behind a trusted proxy, the address it saw."""
    proxies = getattr(request.app.state, "trusted_proxies", [])
    return client_address(request, proxies), request.headers.get("user-agent", "")
