"""`hello healthcheck`: the curl-less probe a scratch image's HEALTHCHECK runs.

Deliberately light: http.client only, no Flask, so a probe every few seconds
costs little. Returns (ok, one-line reason).
"""

from __future__ import annotations

import http.client
import json
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


def probe(url: str, timeout: float, commit: str | None = None) -> tuple[bool, str]:
    """GET url, expecting 200; with commit, then GET /version on the same server and
    expect that commit: the answer of the build a deploy started, not another's."""
    ok, reason, _ = _get(url, timeout)
    if not ok or commit is None:
        return ok, reason
    version_url = urllib.parse.urlunsplit(parse_url(url)._replace(path="/version", query=""))
    ok, reason, body = _get(version_url, timeout)
    if not ok:
        return ok, reason
    try:
        answered = json.loads(body)["commit"]
    except (ValueError, KeyError, TypeError):
        return False, f"{version_url}: not a hello /version answer"
    if not isinstance(answered, str) or not answered.startswith(commit):
        return False, f"{version_url}: commit {str(answered)[:40]!r}, expected {commit}"
    return True, f"{url}: 200, commit {commit}"


def _get(url: str, timeout: float) -> tuple[bool, str, bytes]:
    parts = parse_url(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                            timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"User-Agent": "hello-healthcheck"})
        response = connection.getresponse()
        status, body = response.status, response.read(65536)
    except TimeoutError:
        return False, f"{url}: no answer within {timeout:g}s", b""
    except OSError as error:
        return False, f"{url}: {error.strerror or error}", b""
    except http.client.HTTPException as error:
        return False, f"{url}: bad HTTP answer ({type(error).__name__})", b""
    finally:
        connection.close()
    if status != 200:
        return False, f"{url}: status {status}, expected 200", body
    return True, f"{url}: 200", body
