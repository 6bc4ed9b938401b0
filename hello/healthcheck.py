"""`hello healthcheck`: the curl-less probe a scratch image's HEALTHCHECK runs.

Deliberately light: http.client only, no Flask, so a probe every few seconds
costs little. Returns (ok, one-line reason).
"""

from __future__ import annotations

import http.client
import urllib.parse


def parse_url(url: str) -> urllib.parse.SplitResult:
    """The parts of an http:// URL; ValueError (a usage error) for anything else."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ValueError(f"{url!r} has no valid port") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// URL")
    return parts


def local_url(host: str, port: int) -> str:
    """Where the local server answers: its own address, or loopback for a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    parts = parse_url(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                            timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"User-Agent": "hello-healthcheck"})
        status = connection.getresponse().status
    except TimeoutError:
        return False, f"{url}: no answer within {timeout:g}s"
    except OSError as error:
        return False, f"{url}: {error.strerror or error}"
    except http.client.HTTPException as error:
        return False, f"{url}: bad HTTP answer ({type(error).__name__})"
    finally:
        connection.close()
    if status != 200:
        return False, f"{url}: status {status}, expected 200"
    return True, f"{url}: 200"
