"""The client's address behind trusted proxies (--trusted-proxies), for the access log.

Only a peer inside a trusted network may speak for the client: then the address
chain of `Forwarded` (RFC 7239), or else `X-Forwarded-For`, is walked from the
right, skipping trusted hops, and the first untrusted address is the client. An
untrusted peer's headers are ignored (anyone can send them), and so is anything
that is not an IP address.
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
