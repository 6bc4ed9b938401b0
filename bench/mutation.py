"""`make mutation`: mutmut over hello/ against the fast suites (tests/unit, tests/server).

Runs `mutmut run` from a clean mutants/ folder, then writes bench/MUTATION.md: the
date, commit, tool version, run time, the count per outcome, the score (killed of
all mutants) and every mutant that was not killed, with its diff and, when it is
one we judged equivalent (no test could tell it from the original), the reason.
mutmut's configuration is the [mutmut] section of setup.cfg; child processes of
the tests report what they ran through tests/mutation/sitecustomize.py.

`make mutation ARGS=--resume` keeps mutants/ from the last run: mutmut keeps the
kills, and the survivors listed as equivalent, of functions whose code did not change,
and checks the rest (new, changed, or not reached when that run was stopped), with the
tests as they are now.

`make mutation ARGS=--again` re-runs only the mutants not killed last time against
the tests as they are now (after adding some), each with pytest -x over the fast
suites directly (mutmut would first re-map every test, and ran them in random
order), keeping the other results, and rewrites bench/MUTATION.md; `ARGS="--again
TESTS..."` re-checks them against those tests only (pytest arguments), and
MUTATION_NAMES=REGEX only the mutants whose names it matches;
`ARGS="--report MINUTES"` only rewrites it from the results in mutants/ (a run made
by hand with `.venv/bin/mutmut run`, which took MINUTES); `ARGS=--report` with the
run times recorded (bench/MUTATION.runs).

Not run by .ci/run or CircleCI: it takes tens of minutes (see bench/MUTATION.md).
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
RESULTS = ROOT / "bench" / "MUTATION.md"
MUTMUT = pathlib.Path(sys.executable).with_name("mutmut")
TARGET = 0.90
# A mutant is caught when a test fails, or when the tests under it use up mutmut's CPU-time
# limit (SIGXCPU: CPU seconds, not wall time, so a slow machine does not cause it).
CAUGHT = ("killed", "timeout")
NOT_EQUIVALENT = "NOT equivalent, not tested"  # how a listed survivor a test could kill begins

# Mutants no test can kill because the program behaves the same either way.
# Keyed by mutmut's name, valid at the commit recorded in bench/MUTATION.md.
NEVER_LOGGED = ("the initial status is never logged: a WSGI app calls start_response "
                "before its body is iterated, which sets it.")
SAME_STATUS_CODE = "the first token of a WSGI status line (`204 No Content`) is the same however it is split."
EQUIVALENT: dict[str, str] = {
    "hello.healthcheck.xǁ_DeadlineSocketǁ_left__mutmut_3":
        "`left <= 0` or `< 0`: they differ only when the clock reads the deadline exactly, "
        "and then settimeout(0) makes the read fail at once: exit 1 either way.",
    "hello.netinfo.x__ipv4__mutmut_3":
        "`socket.socket(SOCK_DGRAM)` is family 2 (AF_INET), type stream: SIOCGIFADDR "
        "answers on any IPv4 socket.",
    "hello.netinfo.x__ipv4__mutmut_4":
        "a stream instead of a datagram IPv4 socket: SIOCGIFADDR answers on either.",
    "hello.netinfo.x__ipv4__mutmut_18":
        "`[:16]` or `[:15]`: Linux interface names are at most 15 bytes (IFNAMSIZ 16 "
        "with the NUL).",
    "hello.netinfo.x__ipv6__mutmut_2":
        "encoding None or ascii: /proc/net/if_inet6 is hex digits and names, ASCII in any "
        "locale.",
    "hello.netinfo.x__ipv6__mutmut_4":
        "encoding None or ascii: /proc/net/if_inet6 is hex digits and names, ASCII in any "
        "locale.",
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_3": NEVER_LOGGED,
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_4": NEVER_LOGGED,
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_5": NEVER_LOGGED,
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_13": SAME_STATUS_CODE,
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_16": SAME_STATUS_CODE,
    "hello.logs.xǁAccessLogMiddlewareǁ__call____mutmut_19": SAME_STATUS_CODE,
    "hello.server.xǁServerǁ__init____mutmut_7":
        "the initial signal name is never read: on_signal sets it before drain() logs it.",
    'hello.cli.x__check_env__mutmut_16':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.config.x__header__mutmut_7':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.config.x__utf8__mutmut_3':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.healthcheck.x_parse_url__mutmut_28':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.netinfo.x__ipv6__mutmut_8':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.config.x__delay_range__mutmut_9':
        "partition or rpartition at '-': a duration has no '-', so with one '-' they "
        "split alike and with more both fail.",
    'hello.config.x__networks__mutmut_3':
        'strict=None or False: ipaddress only tests it for truth.',
    'hello.forwarded.x__forwarded_chain__mutmut_11':
        "a hop without for= becomes '' or 'XXXX': neither is an address, so the walk stops there either way.",
    'hello.forwarded.x_client_address__mutmut_14':
        "no REMOTE_ADDR becomes '' or 'XXXX': neither is an address, so neither is trusted.",
    'hello.forwarded.xǁForwardedMiddlewareǁ__call____mutmut_16':
        "no REMOTE_ADDR becomes '' or 'XXXX': neither is an address, so neither is trusted.",
    'hello.healthcheck.x_probe__mutmut_16':
        "query None or '': urlunsplit only tests it for truth.",
    'hello.healthcheck.xǁ_DeadlineSocketǁrecv_into__mutmut_2':
        'keyword arguments dropped: http.client passes none.',
    'hello.healthcheck.xǁ_DeadlineSocketǁsendall__mutmut_2':
        'keyword arguments dropped: http.client passes none.',
    'hello.metrics.xǁRegistryǁexposition__mutmut_33':
        'zip strict=None or False: tested for truth; the lists are the same length anyway.',
    'hello.metrics.xǁRegistryǁexposition__mutmut_36':
        'zip without strict= is strict=False.',
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_5':
        "a split's maxsplit changed or dropped: only the first part is used, "
        "and 'two parts or more' holds alike.",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_3':
        'header name case: waitress title-cases every response header name it writes '
        '(waitress/task.py build_response_header).',
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_4':
        'header name case: waitress title-cases every response header name it writes '
        '(waitress/task.py build_response_header).',
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_9':
        'header name case: waitress title-cases every response header name it writes '
        '(waitress/task.py build_response_header).',
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_10':
        'header name case: waitress title-cases every response header name it writes '
        '(waitress/task.py build_response_header).',
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_18':
        "getattr's default dropped: HelloServer always sets hello_writer (None without an access log).",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_47':
        "getattr's default dropped: HelloParser always sets too_large_line.",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_63':
        "the first token of a status line ('413 Request Entity Too Large') is the same however it is split.",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_66':
        "the first token of a status line ('413 Request Entity Too Large') is the same however it is split.",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_69':
        "the first token of a status line ('413 Request Entity Too Large') is the same however it is split.",
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_72':
        "`content_length or 0` or `or 1`: waitress's error answers always have a body, so it is never 0.",
    "hello.ownprobe.x__hex_endpoint6__mutmut_8":
        "'::ffff:' or '::FFFF:': inet_pton reads hex digits in either case.",
    'hello.healthcheck.x__get__mutmut_38':
        'the arguments of the IncompleteRead raised: only its type name reaches the one line.',
    'hello.healthcheck.x__get__mutmut_39':
        'the arguments of the IncompleteRead raised: only its type name reaches the one line.',
    'hello.healthcheck.x__get__mutmut_40':
        'the arguments of the IncompleteRead raised: only its type name reaches the one line.',
    'hello.healthcheck.x__get__mutmut_41':
        'the arguments of the IncompleteRead raised: only its type name reaches the one line.',
    'hello.healthcheck.x__get__mutmut_43':
        'the body returned with a failure: probe() reads it only after a success.',
    'hello.healthcheck.x__get__mutmut_46':
        'the body returned with a failure: probe() reads it only after a success.',
    'hello.healthcheck.x__get__mutmut_49':
        'the body returned with a failure: probe() reads it only after a success.',
    'hello.server.xǁServerǁ__init____mutmut_6':
        'the initial signal name is never read: on_signal sets it before drain() logs it.',
    'hello.server.xǁServerǁ__init____mutmut_39':
        'expose_tracebacks None or False: waitress only tests it for truth.',
    'hello.server.xǁServerǁ__init____mutmut_52':
        "expose_tracebacks=False dropped: it is waitress's default.",
    'hello.server.xǁServerǁ__init____mutmut_60':
        'expose_tracebacks=True: waitress shows a traceback only when the WSGI app itself raises, '
        'and Flask (never in debug mode) turns every exception into its own 500 first.',
    'hello.server.xǁServerǁ__init____mutmut_40':
        'clear_untrusted_proxy_headers: waitress reads it only when its own trusted_proxy is set, '
        'and hello never sets that (ForwardedMiddleware does the job).',
    'hello.server.xǁServerǁ__init____mutmut_61':
        'clear_untrusted_proxy_headers: waitress reads it only when its own trusted_proxy is set, '
        'and hello never sets that (ForwardedMiddleware does the job).',
    'hello.waitress_internals.xǁHelloChannelǁhandle_read__mutmut_5':
        '`connected` None or False: waitress only tests it for truth.',
    'hello.waitress_internals.xǁHelloServerǁ_past_deadline__mutmut_5':
        '`>` or `>=` the header deadline: they differ only when a float clock reading equals it exactly.',
    'hello.waitress_internals.xǁHelloParserǁ_transfer_codings__mutmut_25':
        "only the number of `chunked` codings is read from the list: a coding of X's kept or "
        'dropped changes no count.',
    'hello.waitress_internals.xǁLoggedErrorTaskǁexecute__mutmut_82':
        'a TCP channel always has an address: the test of it is never false.',
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_9':
        "a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
        "more' holds alike.",
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_23':
        "a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
        "more' holds alike.",
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_26':
        "a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
        "more' holds alike.",
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_18':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.waitress_internals.xǁHelloParserǁ_request_line_of__mutmut_29':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.ownprobe.x_probe_own__mutmut_32':
        '`>=` or `>` the deadline: they differ only when the clock reads it exactly.',
    'hello.ownprobe.x__ask__mutmut_25':
        '`<= 0` or `< 0` time left: they differ only when the clock reads the deadline exactly.',
    'hello.ownprobe.x__ask__mutmut_30':
        'reading 1024 or 1025 bytes at a time: the loop reads until the line ends either way.',
    'hello.ownprobe.x__ask__mutmut_54':
        'how the status line is cut from the head: probe_own reads only its first two words, which '
        'every variant keeps.',
    'hello.ownprobe.x__ask__mutmut_55':
        'how the status line is cut from the head: probe_own reads only its first two words, which '
        'every variant keeps.',
    'hello.ownprobe.x__ask__mutmut_56':
        'how the status line is cut from the head: probe_own reads only its first two words, which '
        'every variant keeps.',
    'hello.ownprobe.x__ask__mutmut_57':
        'how the status line is cut from the head: probe_own reads only its first two words, which '
        'every variant keeps.',
    'hello.ownprobe.x__ask__mutmut_60':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.ownprobe.x__socket_inode__mutmut_3':
        'zip strict= True, False, None or none: both tuples have two items.',
    'hello.ownprobe.x__socket_inode__mutmut_6':
        'zip strict= True, False, None or none: both tuples have two items.',
    'hello.ownprobe.x__socket_inode__mutmut_7':
        'zip strict= True, False, None or none: both tuples have two items.',
    'hello.ownprobe.x__socket_inode__mutmut_10':
        "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces.",
    'hello.ownprobe.x__socket_inode__mutmut_12':
        "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces.",
    'hello.ownprobe.x__socket_inode__mutmut_14':
        "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces.",
    'hello.cli.x_main__mutmut_40':
        "getattr's default None or False for `--json`: only tested for truth.",
    'hello.ownprobe.x__ask__mutmut_18':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.server.xǁServerǁ__init____mutmut_65':
        'the loop thread\'s name shows only in a debugger or a py-spy dump; nothing reads it.',
    'hello.server.xǁServerǁ__init____mutmut_68':
        'the loop thread\'s name shows only in a debugger or a py-spy dump; nothing reads it.',
    'hello.server.xǁServerǁ__init____mutmut_70':
        'the loop thread\'s name shows only in a debugger or a py-spy dump; nothing reads it.',
    'hello.server.xǁServerǁ__init____mutmut_71':
        'the loop thread\'s name shows only in a debugger or a py-spy dump; nothing reads it.',
    'hello.server.xǁ_ErrorsToWriterǁemit__mutmut_21':
        '`left_out` 0 or None when there is none: it is only tested for truth.',
    'hello.waitress_internals.xǁHelloChannelǁ__init____mutmut_1':
        '`served_any` None or False: it is only tested for truth.',
    'hello.waitress_internals.xǁHelloChannelǁreceived__mutmut_7':
        '`loop_service_pending` None or False: it is only tested for truth.',
    'hello.waitress_internals.xǁHelloChannelǁreceived__mutmut_11':
        ('waitress sends as it writes (its send_bytes is 1), so each loop answer is on the wire '
        'already; what _send_now adds is closing a `Connection: close` probe in this turn, and such '
        'a request ends its pipeline, so it is never in a batch cut at LOOP_ANSWERS_PER_READ nor in '
        'a read that answered nothing.'),
    'hello.waitress_internals.xǁHelloChannelǁreceived__mutmut_15':
        ('waitress sends as it writes (its send_bytes is 1), so each loop answer is on the wire '
        'already; what _send_now adds is closing a `Connection: close` probe in this turn, and such '
        'a request ends its pipeline, so it is never in a batch cut at LOOP_ANSWERS_PER_READ nor in '
        'a read that answered nothing.'),
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_10':
        SAME_STATUS_CODE,
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_13':
        SAME_STATUS_CODE,
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_16':
        SAME_STATUS_CODE,
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_24':
        'the body before the app answers, () or None: neither has a close() to call.',
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_38':
        ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside '
         'METHODS is counted as "other" alike.'),
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_40':
        ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside '
         'METHODS is counted as "other" alike.'),
    'hello.metrics.xǁMiddlewareǁ__call____mutmut_43':
        ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside '
         'METHODS is counted as "other" alike.'),
    'hello.waitress_internals.xǁHelloServerǁ_evictable__mutmut_13':
        ('`and` or `or`: a connection holding a request is skipped again by '
         '_pop_still_evictable, which checks the same before it takes one.'),
    'hello.buildinfo.x_is_frozen__mutmut_4':
        'a missing sys.frozen as None or False: bool() of either is False.',
    'hello.buildinfo.x__stamp__mutmut_11':
        ('the stamp is JSON that build/binary writes in ASCII (version, commit hex, dates): every '
         'encoding Python would pick reads it the same.'),
    'hello.buildinfo.x__stamp__mutmut_13':
        ('the stamp is JSON that build/binary writes in ASCII (version, commit hex, dates): every '
         'encoding Python would pick reads it the same.'),
    'hello.buildinfo.x__stamp__mutmut_19':
        "a codec's name in another case or spelling: Python looks codecs up case-insensitively.",
    'hello.metrics.xǁRegistryǁfinished__mutmut_21':
        ('one spare slot that nothing reads: the exposition zips the counts with the bounds, which '
         'stops at the last bound, and +Inf is the list\'s last item either way.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_3':
        ('how the read loop\'s conditions combine: it ends once the candidate holds a request (or '
         'sends nothing more), and the candidate is then judged by the same conditions, so it is '
         'evicted or kept alike; only how much of a pipeline is read early differs.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_4':
        ('how the read loop\'s conditions combine: it ends once the candidate holds a request (or '
         'sends nothing more), and the candidate is then judged by the same conditions, so it is '
         'evicted or kept alike; only how much of a pipeline is read early differs.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_5':
        ('how the read loop\'s conditions combine: it ends once the candidate holds a request (or '
         'sends nothing more), and the candidate is then judged by the same conditions, so it is '
         'evicted or kept alike; only how much of a pipeline is read early differs.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_13':
        ('the read size or MSG_DONTWAIT: the loop reads until nothing more waits, and the socket '
         'is non-blocking already (waitress sets it).'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_14':
        ('the read size or MSG_DONTWAIT: the loop reads until nothing more waits, and the socket '
         'is non-blocking already (waitress sets it).'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_15':
        ('read_waiting\'s verdict on a socket with no whole request (nothing more waiting, broken, '
         'half-closed, or a body that could not spill): True or False, the candidate holds no '
         'request and is evicted alike.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_16':
        ('read_waiting\'s verdict on a socket with no whole request (nothing more waiting, broken, '
         'half-closed, or a body that could not spill): True or False, the candidate holds no '
         'request and is evicted alike.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_18':
        ('read_waiting\'s verdict on a socket with no whole request (nothing more waiting, broken, '
         'half-closed, or a body that could not spill): True or False, the candidate holds no '
         'request and is evicted alike.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_23':
        ('read_waiting\'s verdict on a socket with no whole request (nothing more waiting, broken, '
         'half-closed, or a body that could not spill): True or False, the candidate holds no '
         'request and is evicted alike.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_6':
        ('NOT equivalent, not tested: the cap on what one candidate\'s read may take (header limit '
         'plus body limit, over 1 GiB by default); the kernel\'s receive buffer holds far less.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_7':
        ('NOT equivalent, not tested: the cap on what one candidate\'s read may take (header limit '
         'plus body limit, over 1 GiB by default); the kernel\'s receive buffer holds far less.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_19':
        ('NOT equivalent, not tested: the cap on what one candidate\'s read may take (header limit '
         'plus body limit, over 1 GiB by default); the kernel\'s receive buffer holds far less.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_20':
        ('NOT equivalent, not tested: the cap on what one candidate\'s read may take (header limit '
         'plus body limit, over 1 GiB by default); the kernel\'s receive buffer holds far less.'),
    'hello.waitress_internals.xǁHelloServerǁ_read_waiting__mutmut_21':
        ('NOT equivalent, not tested: last_activity None after a read that brought only blank '
         'lines (waitress skips them before a request); a later eviction turn would fail on it.'),
    'hello.waitress_internals.xǁHelloServerǁhandle_accept__mutmut_9':
        ('NOT equivalent, not tested: out of fds mid-turn, the candidates found anew instead of the '
         'turn\'s list, which still holds the ones already taken: one could be taken twice.'),
    'hello.waitress_internals.xǁHelloServerǁ_make_room_for_fds__mutmut_4':
        ('NOT equivalent, not tested: out of fds mid-turn, the candidates found anew instead of the '
         'turn\'s list, which still holds the ones already taken: one could be taken twice.'),
    'hello.waitress_internals.xǁHelloParserǁreceived__mutmut_6':
        ('NOT equivalent, not tested: the 431 line\'s copy of the head grows past 8 KB (memory '
         'only, bounded by the header limit); its first line, the one logged, is the same.'),
    'hello.waitress_internals.xǁHelloParserǁreceived__mutmut_7':
        '`<` or `<=` 8 KB kept: at exactly 8 KB the slice added is empty.',
    'hello.waitress_internals.xǁHelloParserǁreceived__mutmut_11':
        ('the 431 line\'s copy of the head kept to at most 16 KB instead of 8 KB: only its first '
         'line is read.'),
    'hello.logs.xǁLogWriterǁflush__mutmut_6':
        '`<` or `<=` the deadline: they differ only when the clock reads it exactly.',
    'hello.waitress_internals.x_accept_queued_and_stop_listening__mutmut_3':
        ('return or break out of the accept loop: it is the try\'s last statement, and the finally '
         'closes the listener either way.'),
    'hello.waitress_internals.x_accept_queued_and_stop_listening__mutmut_5':
        ('return or break out of the accept loop: it is the try\'s last statement, and the finally '
         'closes the listener either way.'),
    'hello.app.x__openapi_document__mutmut_15':
        ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
         'every JSON reader (the OpenAPI tests parse it).'),
    'hello.app.x__openapi_document__mutmut_17':
        ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
         'every JSON reader (the OpenAPI tests parse it).'),
    'hello.app.x__openapi_document__mutmut_18':
        ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
         'every JSON reader (the OpenAPI tests parse it).'),
    'hello.app.x_create_app__mutmut_5':
        'sort_keys None or False: Flask passes it to json.dumps, which only tests it for truth.',
    'hello.logs.xǁLogWriterǁ__init____mutmut_1':
        'LogWriter\'s default format: every LogWriter hello makes is given its format (server.serve).',
    'hello.logs.xǁLogWriterǁ__init____mutmut_2':
        'LogWriter\'s default format: every LogWriter hello makes is given its format (server.serve).',
    'hello.waitress_internals.xǁHelloServerǁ__init____mutmut_18':
        'bind_socket None or False: waitress only tests it for truth.',
    'hello.server.x__serve__mutmut_10':
        ('propagate None instead of False (both false): a record of waitress or hello stops at '
         'our handler either way.'),
    'hello.server.x__serve__mutmut_11':
        ('propagate True: the record also goes up to the root logger, which has no handler in '
         'hello (nor do Flask or waitress add one), so nothing more is written; the line keeps '
         'one line per record should a library ever call logging.basicConfig.'),
    'hello.server.xǁServerǁdrain__mutmut_18':
        ('`<=` for `<` against the drain deadline: the two differ only when time.monotonic() '
         'returns the deadline\'s float exactly, then by one more 20 ms poll.'),
    'hello.server.x_bind_listener__mutmut_8':
        ('getaddrinfo without type=SOCK_STREAM: glibc lists each address\'s SOCK_STREAM entry '
         'first, and [0] is taken (the test asserts the socket is a stream socket).'),
    'hello.server.x_bind_listener__mutmut_9':
        ('without AI_PASSIVE: it only changes the answer for a host of None (the wildcard), and '
         'hello always passes a host: an address or a name, validated by config.'),
    'hello.server.x_bind_listener__mutmut_17':
        ('socket() without the proto getaddrinfo gave: 0 picks TCP for a stream socket, the same '
         'protocol getaddrinfo names.'),
    'hello.server.x_bind_listener__mutmut_24':
        'SO_REUSEADDR set to 2 instead of 1: any non-zero value turns it on.',
    'hello.server.x_bind_listener__mutmut_31':
        'SO_REUSEPORT set to 2 instead of 1: any non-zero value turns it on.',
    'hello.server.xǁServerǁdrain__mutmut_61':
        ('NOT equivalent, not tested: drained_ms scaled by 1001 instead of 1000, 0.1 % (8 ms of an '
         '8 s drain), under what the tests can tell from scheduling noise.'),
}


def _status(code) -> str:
    from mutmut.stats import status_by_exit_code
    return status_by_exit_code[code]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def _measured_commit() -> str:
    """The commit mutmut recorded when it copied hello/ and tests/ (HEAD otherwise)."""
    try:
        return json.loads((MUTANTS / "mutmut-stats.json").read_text())["git_commit"]
    except (OSError, ValueError, KeyError):
        return _git("rev-parse", "HEAD")


def _results() -> dict[str, str]:
    """mutant name -> outcome (killed, survived, no tests, timeout, ...)."""
    outcome = {}
    for meta in sorted((MUTANTS / "hello").glob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            outcome[name] = _status(code)
    return outcome


def _diff(name: str) -> str:
    shown = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True,
                           check=False, timeout=120).stdout
    return "\n".join(line for line in shown.splitlines()[1:] if line.strip())


def _keep_only_kills() -> None:
    """Before a resumed run: a kill stands, and so does a survivor listed in EQUIVALENT
    with its reason (mutmut drops both when their function changes); every other verdict
    is checked again, against a fresh copy of tests/ and a fresh map of which test runs
    which function."""
    shutil.rmtree(MUTANTS / "tests", ignore_errors=True)
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    for meta in (MUTANTS / "hello").glob("*.py.meta"):
        data = json.loads(meta.read_text())
        data["exit_code_by_key"] = {
            name: code if code is not None and (_status(code) in CAUGHT or name in EQUIVALENT)
            else None for name, code in data["exit_code_by_key"].items()}
        meta.write_text(json.dumps(data, indent=4))


def main(argv: list[str]) -> int:
    again = argv[:1] == ["--again"]
    resume = argv == ["--resume"]
    if len(argv) == 2 and argv[0] == "--report":
        return report([f"by hand: {float(argv[1]):.1f} min"])
    if argv == ["--report"]:  # again, from the results and the runs recorded
        history = RESULTS.with_suffix(".runs")
        return report(history.read_text().splitlines() if history.exists() else ["unknown"])
    if argv and not (again or resume):
        print("usage: bench/mutation.py [--resume | --again [TESTS...] | --report [MINUTES]]",
              file=sys.stderr)
        return 2
    shutil.rmtree(ROOT / ".mutmut-hits", ignore_errors=True)
    children = os.environ.get("MUTATION_CHILDREN", str(os.cpu_count() or 1))
    began = time.monotonic()
    if again:
        only = re.compile(os.environ.get("MUTATION_NAMES", ""))  # a regex: some mutants only
        names = [name for name, status in _results().items()
                 if status not in (*CAUGHT, "not checked") and name not in EQUIVALENT
                 and only.search(name)]
        rerun(names, int(children), argv[1:])
        run = subprocess.CompletedProcess([], 0)
    else:
        if resume:
            _keep_only_kills()
        else:
            shutil.rmtree(MUTANTS, ignore_errors=True)
        run = subprocess.run([str(MUTMUT), "run", "--max-children", children], cwd=ROOT,
                             check=False, timeout=4 * 3600, stdout=subprocess.DEVNULL)
    took = time.monotonic() - began
    history = RESULTS.with_suffix(".runs")
    runs = history.read_text().splitlines() if (again or resume) and history.exists() else []
    kind = ("again (the survivors)" if again else
            f"resumed at {_git('rev-parse', '--short=12', 'HEAD')}" if resume else "full")
    runs.append(f"{kind}: {took / 60:.1f} min")
    history.write_text("\n".join(runs) + "\n")
    if run.returncode != 0 or not MUTANTS.is_dir():
        print(f"mutation: mutmut run exited {run.returncode}", file=sys.stderr)
        return 1
    return report(runs, children)


# The unit tests of a module run first in a re-run (pytest -x stops at the first kill).
FIRST_TESTS = {"server": "logs", "netinfo": "buildinfo"}


def rerun(names: list[str], children: int, tests: list[str]) -> None:
    """Each mutant again, against a fresh copy of tests/: killed (exit 1) or not (0).
    With TESTS (pytest arguments: files, node IDs, --deselect ...), only those run:
    quick when new tests aim at the survivors. They must pass without a mutant (on the
    code mutmut measured, which may be older than the tests), or nothing is re-checked."""
    shutil.copytree(ROOT / "tests", MUTANTS / "tests", dirs_exist_ok=True)
    for name in ("setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, MUTANTS / name)
    python = pathlib.Path(sys.executable)
    if tests:
        clean = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                               cwd=MUTANTS, env={**os.environ, "MUTANT_UNDER_TEST": "",
                                                 "PYTHONPATH": str(MUTANTS)},
                               check=False, timeout=1200, capture_output=True, text=True)
        if clean.returncode != 0:
            sys.exit("mutation: the tests fail without a mutant (deselect those):\n"
                     + "\n".join(clean.stdout.splitlines()[-15:]))

    def check(name: str) -> int:
        module = name.split(".")[1]
        first = f"tests/unit/test_{FIRST_TESTS.get(module, module)}.py"
        suites = [first, "tests/server", "tests/unit"] if (ROOT / first).exists() else \
            ["tests/server", "tests/unit"]
        suites = tests or suites
        env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(MUTANTS)}
        try:
            return subprocess.run([str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   *suites], cwd=MUTANTS, env=env, check=False, timeout=1200,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            return 36  # mutmut's "timeout"

    with concurrent.futures.ThreadPoolExecutor(children) as pool:
        codes = dict(zip(names, pool.map(check, names), strict=True))
    for meta in (MUTANTS / "hello").glob("*.py.meta"):
        data = json.loads(meta.read_text())
        for name in data["exit_code_by_key"].keys() & codes.keys():
            data["exit_code_by_key"][name] = codes[name]
        meta.write_text(json.dumps(data, indent=4))
    for name, code in codes.items():
        print(f"mutation: {name}: {_status(code)}", file=sys.stderr)


def report(runs: list[str], children: str = "1") -> int:
    outcome = _results()
    counts = collections.Counter(outcome.values())
    total = len(outcome)
    killed = sum(counts[status] for status in CAUGHT)
    checked = total - counts["not checked"]
    score = killed / total if total else 0.0
    not_killed = sorted(name for name, status in outcome.items()
                        if status not in (*CAUGHT, "not checked"))
    unexplained = [name for name in not_killed if name not in EQUIVALENT]
    untested = [name for name in not_killed
                if EQUIVALENT.get(name, "").startswith(NOT_EQUIVALENT)]
    equivalent = len(not_killed) - len(unexplained) - len(untested)
    score_with_equivalent = (killed + equivalent) / total if total else 0.0

    lines = [
        "# Mutation score",
        "",
        "`make mutation`: mutmut over `hello/` against `tests/unit` and `tests/server` "
        "(setup.cfg `[mutmut]`). Written by bench/mutation.py; not run in CI.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {_measured_commit()} (mutmut's record when its run began)",
        f"- tool: mutmut {importlib.metadata.version('mutmut')}, Python "
        f"{sys.version.split()[0]}, --max-children {children}",
        f"- run time on {os.cpu_count()} cores: {'; '.join(runs)}",
        f"- mutants: {total}; " + ", ".join(f"{status} {count}"
                                            for status, count in counts.most_common()),
        f"- checked: {checked} of {total}"
        + (" (**partial run**: the mutants not checked are listed as such below)"
           if checked < total else ""),
        "- caught: killed (a test failed) or timeout (the tests used up mutmut's CPU-time "
        "limit); load tests (`-m load`) are skipped under mutation: on a shared machine "
        "their timing would read as kills",
        f"- **score: {killed}/{total} caught = {score:.1%}**; of those checked: "
        f"{killed / checked if checked else 0:.1%} (target {TARGET:.0%}); "
        f"counting the {equivalent} judged equivalent as killed: {score_with_equivalent:.1%}",
        f"- not killed: {len(not_killed)}: {equivalent} equivalent, {len(untested)} not "
        f"equivalent and not tested (each with what a test would need), "
        f"{len(unexplained)} unexplained",
        "",
        "## Checked and not killed",
        "",
    ]
    if not not_killed:
        lines.append("None.")
    for name in not_killed:
        reason = EQUIVALENT.get(name, "not explained yet: a missing test")
        lines += [f"### `{name}`: {outcome[name]}", "", f"Why: {reason}", "", "```diff",
                  _diff(name), "```", ""]
    unchecked = sorted(name for name, status in outcome.items() if status == "not checked")
    if unchecked:
        lines += ["## Not checked", "", ", ".join(f"`{name}`" for name in unchecked), ""]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")
    print(f"mutation: {killed}/{total} killed ({score:.1%}), {len(unexplained)} unexplained; "
          f"see {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
