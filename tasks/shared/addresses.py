"""Which network addresses a partner-supplied URL may reach: only public ones (server-side request forgery).

Used by the page fetcher on every connection and by the application form when a website is given.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

# Prefixes that carry or translate an IPv4 address inside IPv6: the embedded address could be internal.
_TRANSLATED_V6 = tuple(ipaddress.ip_network(n) for n in (
    "::/96",  # IPv4-compatible (deprecated)
    "::ffff:0:0/96",  # IPv4-mapped
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64 well-known prefix
    "64:ff9b:1::/48",  # NAT64 local-use prefix
    "2002::/16",  # 6to4
    "2001::/32",  # Teredo
))


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally routable unicast address; anything private, loopback, link-local,
    unspecified, multicast, reserved, shared (CGNAT) or an IPv4 address wrapped in IPv6 is refused."""
    if isinstance(address, ipaddress.IPv6Address) and any(address in net for net in _TRANSLATED_V6):
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified
                                      or address.is_loopback or address.is_link_local or address.is_private)


def addresses_of(infos) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The distinct addresses in getaddrinfo's answer, in its order (a scope id like %eth0 dropped)."""
    seen = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def website_refusal(url: str) -> str | None:
    """Why a partner-supplied website must not be accepted (`private_address`), or None.

    A name that does not resolve (yet) is accepted: the page check resolves and checks it again on
    every fetch. Blocking: call it from sync code (a threadpool handler), not from an event loop.
    """
    current = url.strip() if "://" in url else "http://" + url.strip()
    try:
        parts = urlsplit(current)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "invalid_url"
    if not host:
        return "invalid_url"
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    addresses = addresses_of(infos)
    return None if addresses and all(is_public_address(a) for a in addresses) else "private_address"
