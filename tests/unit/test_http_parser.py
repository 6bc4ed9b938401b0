"""hello's request parser (waitress's, plus RFC 9112 checks) fed bytes in process:
the chunked body limit, the request line a 431 logs, and the Transfer-Encoding
codings it counts. The same behaviour over real sockets is in tests/server."""

from __future__ import annotations

import pytest
from waitress.adjustments import Adjustments
from waitress.utilities import RequestEntityTooLarge

from hello.http_parser import HelloParser

LIMIT = 10  # --max-body-bytes; waitress is given one more (hello/server.py)


def feed(*pieces: bytes) -> HelloParser:
    parser = HelloParser(Adjustments(max_request_body_size=LIMIT + 1))
    for piece in pieces:
        while piece and not parser.completed:
            piece = piece[parser.received(piece):]
    return parser


HEAD = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_chunked_body_of_exactly_the_limit_is_taken_whole():
    body = b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n"
    parser = feed(HEAD, body[:9], body[9:])
    assert parser.completed and parser.error is None
    assert parser.headers["CONTENT_LENGTH"] == "10"
    assert parser.body_bytes_received == len(body)
    assert parser.get_body_stream().read() == b"0123456789"


def test_a_chunked_body_past_the_limit_is_413_naming_the_limit():
    parser = feed(HEAD, b"b\r\n0123456789a\r\n0\r\n\r\n")
    assert parser.completed is True
    assert isinstance(parser.error, RequestEntityTooLarge)
    assert parser.error.body == "exceeds max_body of 10"


def test_a_chunk_declared_past_the_limit_is_413_before_its_bytes_arrive():
    parser = feed(HEAD, b"ffffffff\r\n0123")
    assert parser.completed is True and isinstance(parser.error, RequestEntityTooLarge)


def test_a_chunk_declared_up_to_the_limit_is_waited_for():
    parser = feed(HEAD, b"a\r\n0123")
    assert not parser.completed and parser.error is None


def test_a_malformed_chunk_ends_the_request_with_its_error():
    parser = feed(HEAD, b"zz\r\nhello\r\n0\r\n\r\n")
    assert parser.completed is True
    assert parser.error is not None and parser.error.code == 400


@pytest.mark.parametrize("start, line", [
    (b"\r\nGET /a?b?c HTTP/1.1\r\nX-Big: y", ("GET", "/a")),
    (b"\r\nXPOST /x HTTP/1.1\r\n", ("XPOST", "/x")),
    (b"GET /a HTTP/1.1", None),  # the first line is not whole: no guess
    (b"\r\n\r\n", None),
    (b" \t\r\n GET /sp HTTP/1.1\r\n", ("GET", "/sp")),  # whitespace first, as waitress skips it
])
def test_the_request_line_a_too_large_head_logs(start, line):
    assert HelloParser._request_line_of(start) == line


@pytest.mark.parametrize("head, codings", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n", [b"gzip", b"chunked"]),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: X-Zip\r\nTransfer-Encoding:  chunked\t\r\n",
     [b"x-zip", b"chunked"]),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: a:b,\x0cgzip\r\nHost: x\r\n", [b"a:b", b"\x0cgzip"]),
    (b"POST / HTTP/1.1\r\nHost: x\r\n", []),
])
def test_transfer_codings_of_every_line(head, codings):
    assert HelloParser._transfer_codings(head) == codings


def test_a_request_line_waitress_could_not_parse_still_has_a_path_and_a_command():
    """waitress logs "Client disconnected while serving %s" % request.path: for a 400 whose
    request line did not parse, that raised AttributeError (an error line and a traceback)."""
    parser = HelloParser(Adjustments())
    parser.received(b"GET /" + b"\xff" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parser.error is not None
    assert "Client disconnected while serving %s" % parser.path  # noqa: UP031 (as waitress has it)
    assert parser.command is None or isinstance(parser.command, str)
