"""The host's IP addresses, without extra packages (for /whoami).

IPv4 addresses come from the SIOCGIFADDR ioctl per interface, IPv6 from
/proc/net/if_inet6: both work in a scratch container, where there is no `ip`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915


def _ipv4(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6() -> list[str]:
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            rows = [line.split() for line in table]
    except OSError:
        return []
    return [str(ipaddress.IPv6Address(bytes.fromhex(row[0]))) for row in rows if row]


def host_addresses() -> list[str]:
    addresses = []
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        interfaces = []
    for _, name in interfaces:
        address = _ipv4(name)
        if address:
            addresses.append(address)
    return addresses + _ipv6()
