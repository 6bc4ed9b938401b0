"""hello/forwarded.py: the client behind trusted proxies, hop by hop, to the letter:
commas without spaces, elements without `for=`, empty headers."""

from __future__ import annotations

import ipaddress
import json

import pytest

from hello.forwarded import client_address
from hello.logs import LogWriter

PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize("headers, client", [
    ({"HTTP_FORWARDED": "for=1.2.3.4,for=5.6.7.8"}, "5.6.7.8"),
    ({"HTTP_FORWARDED": "for=1.2.3.4,for=10.0.0.9"}, "1.2.3.4"),
    ({"HTTP_FORWARDED": "for=1.2.3.4, proto=https"}, "10.0.0.1"),  # a hop that names no one
    ({"HTTP_X_FORWARDED_FOR": "1.2.3.4,5.6.7.8"}, "5.6.7.8"),
    ({"HTTP_X_FORWARDED_FOR": " , \t"}, "10.0.0.1"),
    ({"HTTP_FORWARDED": "for=1.2.3.4", "HTTP_X_FORWARDED_FOR": ", "}, "1.2.3.4"),
    ({"HTTP_FORWARDED": "for=1.2.3.4", "HTTP_X_FORWARDED_FOR": "XFF"}, "10.0.0.1"),
])
def test_the_client_a_trusted_proxy_names(headers, client):
    assert client_address({"REMOTE_ADDR": "10.0.0.1", **headers}, PROXIES) == client


def test_a_warning_line_says_warning(tmp_path):
    err = (tmp_path / "err").open("w+", encoding="utf-8")
    LogWriter("json", out=err, err=err).warning("waitress said something", count=2)
    err.seek(0)
    line = json.loads(err.read())
    assert (line["level"], line["event"], line["count"]) == ("warning", "waitress said something", 2)
