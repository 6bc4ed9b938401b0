"""The client's address behind trusted proxies (--trusted-proxies), for the access log.

Only a peer inside a trusted network may speak for the client: then the address
chain of `Forwarded` (RFC 7239), or else `X-Forwarded-For`, is walked from the
right, skipping trusted hops, and the first untrusted address is the client. An
untrusted peer's headers are ignored (anyone can send them), and so is anything
that is not an IP address.

waitress removes these headers itself unless told otherwise; with --trusted-proxies
the server tells it otherwise and `ForwardedMiddleware` does the removing instead,
for peers outside the trusted networks, so the app sees them only from a proxy.
"""

from __future__ import annotations

import ipaddress
import re

_FOR = re.compile(r'for="?\[?([0-9A-Fa-f.:]+)\]?(?::[0-9]+)?"?', re.IGNORECASE)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return address is not None and any(address in network for network in networks)


def _chain(environ) -> list[str]:
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        hops = []
        for element in forwarded.split(","):
            match = _FOR.search(element)
            hops.append(match.group(1) if match else "")
        return hops
    return [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]


def client_address(environ, networks) -> str | None:
    """REMOTE_ADDR, or the client a trusted proxy names."""
    peer = environ.get("REMOTE_ADDR")
    if not networks or not _trusted(_address(peer or ""), networks):
        return peer
    for hop in reversed(_chain(environ)):
        address = _address(hop)
        if address is None:
            return peer  # a malformed hop: trust nothing past it
        if not _trusted(address, networks):
            return str(address)
    return peer


FORWARDING_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST",
                      "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY")
CLIENT_KEY = "hello.client"  # the client's address as the access log writes it


class ForwardedMiddleware:
    """Notes the client (environ[CLIENT_KEY]) and drops forwarding headers from untrusted peers."""

    def __init__(self, app, networks):
        self.app = app
        self.networks = networks

    def __call__(self, environ, start_response):
        environ[CLIENT_KEY] = client_address(environ, self.networks)
        if not _trusted(_address(environ.get("REMOTE_ADDR") or ""), self.networks):
            for name in FORWARDING_HEADERS:
                environ.pop(name, None)
        return self.app(environ, start_response)
