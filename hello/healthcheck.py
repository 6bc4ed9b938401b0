"""`hello healthcheck`: the curl-less probe a scratch image's HEALTHCHECK runs.

Deliberately light: http.client only, no Flask, so a probe every few seconds
costs little. Returns (ok, one-line reason).
"""

from __future__ import annotations

import http.client
import urllib.parse


def probe(url: str, timeout: float) -> tuple[bool, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False, f"{url!r} is not an http:// URL"
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
