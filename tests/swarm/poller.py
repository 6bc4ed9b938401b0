"""A client that polls one URL on a new connection every INTERVAL until SIGTERM.

Run where the nodes are reachable (the swarm's switch namespace): prints one JSON
summary on stdout when stopped: requests, failed (any error or non-200), the bodies
in the order they changed, the last body, and the longest time between two
successful answers (the gap a user would see).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    requests = failed = 0
    bodies: list[str] = []
    errors: list[str] = []
    last_ok = None
    longest_gap = 0.0
    while not stop:
        requests += 1
        connection = http.client.HTTPConnection(args.host, args.port, timeout=args.timeout)
        try:
            connection.request("GET", "/", headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
            if response.status != 200:
                raise OSError(f"status {response.status}")
            now = time.monotonic()
            if last_ok is not None:
                longest_gap = max(longest_gap, now - last_ok)
            last_ok = now
            if not bodies or bodies[-1] != body:
                bodies.append(body)
        except (OSError, http.client.HTTPException) as error:
            failed += 1
            if len(errors) < 20:
                errors.append(f"{time.strftime('%H:%M:%S')} {type(error).__name__}: {error}")
        finally:
            connection.close()
        time.sleep(args.interval)
    json.dump({"requests": requests, "failed": failed, "bodies": bodies,
               "last": bodies[-1] if bodies else None,
               "longest_gap_ms": round(longest_gap * 1000, 1), "errors": errors}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
