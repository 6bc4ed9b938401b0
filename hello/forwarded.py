"""The client's address behind trusted proxies (--trusted-proxies), for the access log.

Only a peer inside a trusted network may speak for the client: then the address
chain of `Forwarded` (RFC 7239) and of `X-Forwarded-For` is walked from the
right, skipping trusted hops, and the first untrusted address is the client (if
both headers are there and name different clients, neither is believed). An
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


def _forwarded_chain(forwarded: str) -> list[str]:
    hops = []
    for element in forwarded.split(","):
        match = _FOR.search(element)
        hops.append(match.group(1) if match else "")
    return hops


def _xff_chain(forwarded_for: str) -> list[str]:
    return [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]


def _client_in(chain: list[str], peer: str | None, networks) -> str | None:
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            return peer  # a malformed hop: trust nothing past it
        if not _trusted(address, networks):
            return str(address)
    return peer


def client_address(environ, networks) -> str | None:
    """REMOTE_ADDR, or the client a trusted proxy names.

    With both headers, they must name the same client: a proxy usually writes one
    and passes the other on as the client sent it (nginx and DigitalOcean's load
    balancer write X-Forwarded-For), so either may be the client's own invention.
    """
    peer = environ.get("REMOTE_ADDR")
    if not networks or not _trusted(_address(peer or ""), networks):
        return peer
    chains = []
    if environ.get("HTTP_FORWARDED"):
        chains.append(_forwarded_chain(environ["HTTP_FORWARDED"]))
    forwarded_for = _xff_chain(environ.get("HTTP_X_FORWARDED_FOR", ""))
    if forwarded_for:
        chains.append(forwarded_for)
    clients = {_client_in(chain, peer, networks) for chain in chains}
    return clients.pop() if len(clients) == 1 else peer


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
