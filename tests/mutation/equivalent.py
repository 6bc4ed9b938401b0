"""Why each mutant that no test kills is left alive: its behaviour is the original's
(equivalent), or, marked NOT_EQUIVALENT, what a test would need that is out of reach.

Keyed by what a person recognises and what does not change when code moves: the
function (`Class.method` or `function`) and the line as written and as mutated
(stripped; lines joined by a newline when a mutant changes several). tests/mutation/run.py
reads each survivor's diff (`mutmut show`) and looks it up here. When the line itself
changes, its reason no longer matches and the survivor shows up unexplained in the
report: read it again then. Grouped by the module the function was in when judged.
"""

from __future__ import annotations

from typing import NamedTuple

NOT_EQUIVALENT = "NOT equivalent, not tested"  # how the reason of one a test could kill begins


class Survivor(NamedTuple):
    function: str
    before: str
    after: str
    why: str


NEVER_LOGGED = ('the initial status is never logged: a WSGI app calls start_response before its '
                'body is iterated, which sets it.')
SAME_STATUS_CODE = ('the first token of a WSGI status line (`204 No Content`) is the same however'
                    ' it is split.')

SURVIVORS = [
    # hello/app.py
    Survivor('_openapi_document',
             'return json.dumps(document, indent=2).encode()',
             'return json.dumps(document, indent=None).encode()',
             ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
              'every JSON reader (the OpenAPI tests parse it).')),
    Survivor('_openapi_document',
             'return json.dumps(document, indent=2).encode()',
             'return json.dumps(document, ).encode()',
             ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
              'every JSON reader (the OpenAPI tests parse it).')),
    Survivor('_openapi_document',
             'return json.dumps(document, indent=2).encode()',
             'return json.dumps(document, indent=3).encode()',
             ('the indentation of /openapi.json: whitespace between JSON tokens, the same document to '
              'every JSON reader (the OpenAPI tests parse it).')),
    Survivor('create_app',
             'app.json.sort_keys = False',
             'app.json.sort_keys = None',
             'sort_keys None or False: Flask passes it to json.dumps, which only tests it for truth.'),
    # hello/buildinfo.py
    Survivor('_stamp',
             'with open(os.path.join(bundle, STAMP_NAME), encoding="utf-8") as stamp:',
             'with open(os.path.join(bundle, STAMP_NAME), encoding=None) as stamp:',
             ('the stamp is JSON that build/binary writes in ASCII (version, commit hex, dates): every'
              ' encoding Python would pick reads it the same.')),
    Survivor('_stamp',
             'with open(os.path.join(bundle, STAMP_NAME), encoding="utf-8") as stamp:',
             'with open(os.path.join(bundle, STAMP_NAME), ) as stamp:',
             ('the stamp is JSON that build/binary writes in ASCII (version, commit hex, dates): every'
              ' encoding Python would pick reads it the same.')),
    Survivor('_stamp',
             'with open(os.path.join(bundle, STAMP_NAME), encoding="utf-8") as stamp:',
             'with open(os.path.join(bundle, STAMP_NAME), encoding="UTF-8") as stamp:',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('is_frozen',
             'return bool(getattr(sys, "frozen", False))',
             'return bool(getattr(sys, "frozen", None))',
             'a missing sys.frozen as None or False: bool() of either is False.'),
    # hello/cli.py
    Survivor('_check_env',
             'with open(args.file, encoding="utf-8") as lines:',
             'with open(args.file, encoding="UTF-8") as lines:',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('main',
             'if getattr(args, "json", False):',
             'if getattr(args, "json", None):',
             "getattr's default None or False for `--json`: only tested for truth."),
    # hello/config.py
    Survivor('_delay_range',
             'low, sep, high = text.partition("-")',
             'low, sep, high = text.rpartition("-")',
             ("partition or rpartition at '-': a duration has no '-', so with one '-' they split alike"
              ' and with more both fail.')),
    Survivor('_header',
             'name, sep, value = _utf8(text).decode("utf-8").partition(":")',
             'name, sep, value = _utf8(text).decode("UTF-8").partition(":")',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('_networks',
             'return tuple(ipaddress.ip_network(part.strip(), strict=False)',
             'return tuple(ipaddress.ip_network(part.strip(), strict=None)',
             'strict=None or False: ipaddress only tests it for truth.'),
    Survivor('_utf8',
             'return text.encode("utf-8")',
             'return text.encode("UTF-8")',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    # hello/forwarded.py
    Survivor('_forwarded_chain',
             'hops.append(match.group(1) if match else "")',
             'hops.append(match.group(1) if match else "XXXX")',
             ("a hop without for= becomes '' or 'XXXX': neither is an address, so the walk stops there"
              ' either way.')),
    Survivor('client_address',
             'if not networks or not _trusted(_address(peer or ""), networks):',
             'if not networks or not _trusted(_address(peer or "XXXX"), networks):',
             "no REMOTE_ADDR becomes '' or 'XXXX': neither is an address, so neither is trusted."),
    Survivor('ForwardedMiddleware.__call__',
             'if not _trusted(_address(environ.get("REMOTE_ADDR") or ""), self.networks):',
             'if not _trusted(_address(environ.get("REMOTE_ADDR") or "XXXX"), self.networks):',
             "no REMOTE_ADDR becomes '' or 'XXXX': neither is an address, so neither is trusted."),
    # hello/healthcheck.py
    Survivor('_get',
             'return False, f"{url}: no complete answer within {timeout:g}s", b""',
             'return False, f"{url}: no complete answer within {timeout:g}s", b"XXXX"',
             'the body returned with a failure: probe() reads it only after a success.'),
    Survivor('_get',
             'return False, f"{url}: {error.strerror or error}", b""',
             'return False, f"{url}: {error.strerror or error}", b"XXXX"',
             'the body returned with a failure: probe() reads it only after a success.'),
    Survivor('_get',
             'return False, f"{url}: bad HTTP answer ({error})", b""',
             'return False, f"{url}: bad HTTP answer ({error})", b"XXXX"',
             'the body returned with a failure: probe() reads it only after a success.'),
    Survivor('parse_url',
             'parts.hostname.encode("idna")  # what the resolver will do: \'a..b\' fails here',
             'parts.hostname.encode("IDNA")  # what the resolver will do: \'a..b\' fails here',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('probe',
             ('version_url = urllib.parse.urlunsplit(parse_url(url)._replace(path="/version", '
              'query=""))'),
             ('version_url = urllib.parse.urlunsplit(parse_url(url)._replace(path="/version", '
              'query=None))'),
             "query None or '': urlunsplit only tests it for truth."),
    Survivor('_DeadlineSocket._left',
             'if left <= 0:',
             'if left < 0:',
             ('`left <= 0` or `< 0`: they differ only when the clock reads the deadline exactly, and '
              'then settimeout(0) makes the read fail at once: exit 1 either way.')),
    Survivor('_DeadlineSocket.recv_into',
             'return super().recv_into(*args, **kwargs)',
             'return super().recv_into(*args, )',
             'keyword arguments dropped: http.client passes none.'),
    Survivor('_DeadlineSocket.sendall',
             'return super().sendall(*args, **kwargs)',
             'return super().sendall(*args, )',
             'keyword arguments dropped: http.client passes none.'),
    # hello/logs.py
    Survivor('AccessLogMiddleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(None, 1)[0])',
             SAME_STATUS_CODE),
    Survivor('AccessLogMiddleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(" ", )[0])',
             SAME_STATUS_CODE),
    Survivor('AccessLogMiddleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(" ", 2)[0])',
             SAME_STATUS_CODE),
    Survivor('AccessLogMiddleware.__call__',
             'seen = {"status": 0, "bytes": 0}',
             'seen = {"XXstatusXX": 0, "bytes": 0}',
             NEVER_LOGGED),
    Survivor('AccessLogMiddleware.__call__',
             'seen = {"status": 0, "bytes": 0}',
             'seen = {"STATUS": 0, "bytes": 0}',
             NEVER_LOGGED),
    Survivor('AccessLogMiddleware.__call__',
             'seen = {"status": 0, "bytes": 0}',
             'seen = {"status": 1, "bytes": 0}',
             NEVER_LOGGED),
    Survivor('LogWriter.__init__',
             ('def __init__(self, log_format: str = "json", out=None, err=None, queued: bool = '
              'False):'),
             ('def __init__(self, log_format: str = "XXjsonXX", out=None, err=None, queued: bool '
              '= False):'),
             ("LogWriter's default format: every LogWriter hello makes is given its format "
              '(server.serve).')),
    Survivor('LogWriter.__init__',
             ('def __init__(self, log_format: str = "json", out=None, err=None, queued: bool = '
              'False):'),
             ('def __init__(self, log_format: str = "JSON", out=None, err=None, queued: bool = '
              'False):'),
             ("LogWriter's default format: every LogWriter hello makes is given its format "
              '(server.serve).')),
    Survivor('LogWriter.flush',
             'and time.monotonic() < deadline):',
             'and time.monotonic() <= deadline):',
             '`<` or `<=` the deadline: they differ only when the clock reads it exactly.'),
    # hello/metrics.py
    Survivor('Middleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(None, 1)[0])',
             SAME_STATUS_CODE),
    Survivor('Middleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(" ", )[0])',
             SAME_STATUS_CODE),
    Survivor('Middleware.__call__',
             'seen["status"] = int(status.split(" ", 1)[0])',
             'seen["status"] = int(status.split(" ", 2)[0])',
             SAME_STATUS_CODE),
    Survivor('Middleware.__call__',
             'body = ()',
             'body = None',
             'the body before the app answers, () or None: neither has a close() to call.'),
    Survivor('Middleware.__call__',
             'method = environ.get("REQUEST_METHOD", "")',
             'method = environ.get("REQUEST_METHOD", None)',
             ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside METHODS'
              ' is counted as "other" alike.')),
    Survivor('Middleware.__call__',
             'method = environ.get("REQUEST_METHOD", "")',
             'method = environ.get("REQUEST_METHOD", )',
             ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside METHODS'
              ' is counted as "other" alike.')),
    Survivor('Middleware.__call__',
             'method = environ.get("REQUEST_METHOD", "")',
             'method = environ.get("REQUEST_METHOD", "XXXX")',
             ('with REQUEST_METHOD missing (a WSGI server always sets it), any default outside METHODS'
              ' is counted as "other" alike.')),
    Survivor('Registry.exposition',
             'for bound, count in zip(BUCKETS, counts, strict=False):',
             'for bound, count in zip(BUCKETS, counts, strict=None):',
             'zip strict=None or False: tested for truth; the lists are the same length anyway.'),
    Survivor('Registry.exposition',
             'for bound, count in zip(BUCKETS, counts, strict=False):',
             'for bound, count in zip(BUCKETS, counts, ):',
             'zip without strict= is strict=False.'),
    Survivor('Registry.finished',
             'counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 1))',
             'counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 2))',
             ('one spare slot that nothing reads: the exposition zips the counts with the bounds, '
              "which stops at the last bound, and +Inf is the list's last item either way.")),
    # hello/netinfo.py
    Survivor('_ipv4',
             'struct.pack("256s", name.encode()[:15]))',
             'struct.pack("256s", name.encode()[:16]))',
             ('`[:16]` or `[:15]`: Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the '
              'NUL).')),
    Survivor('_ipv4',
             'with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:',
             'with socket.socket(socket.SOCK_DGRAM) as sock:',
             ('`socket.socket(SOCK_DGRAM)` is family 2 (AF_INET), type stream: SIOCGIFADDR answers on '
              'any IPv4 socket.')),
    Survivor('_ipv4',
             'with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:',
             'with socket.socket(socket.AF_INET, ) as sock:',
             'a stream instead of a datagram IPv4 socket: SIOCGIFADDR answers on either.'),
    Survivor('_ipv6',
             'with open("/proc/net/if_inet6", encoding="ascii") as table:',
             'with open("/proc/net/if_inet6", encoding=None) as table:',
             'encoding None or ascii: /proc/net/if_inet6 is hex digits and names, ASCII in any locale.'),
    Survivor('_ipv6',
             'with open("/proc/net/if_inet6", encoding="ascii") as table:',
             'with open("/proc/net/if_inet6", ) as table:',
             'encoding None or ascii: /proc/net/if_inet6 is hex digits and names, ASCII in any locale.'),
    Survivor('_ipv6',
             'with open("/proc/net/if_inet6", encoding="ascii") as table:',
             'with open("/proc/net/if_inet6", encoding="ASCII") as table:',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    # hello/ownprobe.py
    Survivor('_ask',
             '"User-Agent: hello-healthcheck\\r\\n\\r\\n".encode("ascii"))',
             '"User-Agent: hello-healthcheck\\r\\n\\r\\n".encode("ASCII"))',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('_ask',
             'if remaining <= 0:',
             'if remaining < 0:',
             '`<= 0` or `< 0` time left: they differ only when the clock reads the deadline exactly.'),
    Survivor('_ask',
             'chunk = conn.recv(1024)',
             'chunk = conn.recv(1025)',
             'reading 1024 or 1025 bytes at a time: the loop reads until the line ends either way.'),
    Survivor('_ask',
             'return head.split(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             'return head.split(b"\\r\\n", )[0].decode("latin-1"), owned',
             ('how the status line is cut from the head: probe_own reads only its first two words, '
              'which every variant keeps.')),
    Survivor('_ask',
             'return head.split(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             'return head.rsplit(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             ('how the status line is cut from the head: probe_own reads only its first two words, '
              'which every variant keeps.')),
    Survivor('_ask',
             'return head.split(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             'return head.split(b"XX\\r\\nXX", 1)[0].decode("latin-1"), owned',
             ('how the status line is cut from the head: probe_own reads only its first two words, '
              'which every variant keeps.')),
    Survivor('_ask',
             'return head.split(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             'return head.split(b"\\r\\n", 2)[0].decode("latin-1"), owned',
             ('how the status line is cut from the head: probe_own reads only its first two words, '
              'which every variant keeps.')),
    Survivor('_ask',
             'return head.split(b"\\r\\n", 1)[0].decode("latin-1"), owned',
             'return head.split(b"\\r\\n", 1)[0].decode("LATIN-1"), owned',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('_hex_endpoint6',
             'packed = socket.inet_pton(socket.AF_INET6, "::ffff:" + address)',
             'packed = socket.inet_pton(socket.AF_INET6, "::FFFF:" + address)',
             "'::ffff:' or '::FFFF:': inet_pton reads hex digits in either case."),
    Survivor('_socket_inode',
             'with open(table, encoding="ascii") as rows:',
             'with open(table, encoding=None) as rows:',
             "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces."),
    Survivor('_socket_inode',
             'with open(table, encoding="ascii") as rows:',
             'with open(table, ) as rows:',
             "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces."),
    Survivor('_socket_inode',
             'with open(table, encoding="ascii") as rows:',
             'with open(table, encoding="ASCII") as rows:',
             "encoding ascii, ASCII or the locale's: /proc/net/tcp is hex digits and spaces."),
    Survivor('_socket_inode',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=True):',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=None):',
             'zip strict= True, False, None or none: both tuples have two items.'),
    Survivor('_socket_inode',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=True):',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), ):',
             'zip strict= True, False, None or none: both tuples have two items.'),
    Survivor('_socket_inode',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=True):',
             'for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=False):',
             'zip strict= True, False, None or none: both tuples have two items.'),
    Survivor('probe_own',
             'if time.monotonic() >= deadline:',
             'if time.monotonic() > deadline:',
             '`>=` or `>` the deadline: they differ only when the clock reads it exactly.'),
    # hello/server.py
    Survivor('_serve',
             'logger.propagate = False',
             'logger.propagate = None',
             ('propagate None instead of False (both false): a record of waitress or hello stops at '
              'our handler either way.')),
    Survivor('_serve',
             'logger.propagate = False',
             'logger.propagate = True',
             ('propagate True: the record also goes up to the root logger, which has no handler in '
              'hello (nor do Flask or waitress add one), so nothing more is written; the line keeps '
              'one line per record should a library ever call logging.basicConfig.')),
    Survivor('bind_listener',
             'sock = socket.socket(family, kind, proto)',
             'sock = socket.socket(family, kind, )',
             ('socket() without the proto getaddrinfo gave: 0 picks TCP for a stream socket, the same '
              'protocol getaddrinfo names.')),
    Survivor('bind_listener',
             'sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
             'sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 2)',
             'SO_REUSEADDR set to 2 instead of 1: any non-zero value turns it on.'),
    Survivor('bind_listener',
             'sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)',
             'sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 2)',
             'SO_REUSEPORT set to 2 instead of 1: any non-zero value turns it on.'),
    Survivor('bind_listener',
             'host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]',
             'host, port, flags=socket.AI_PASSIVE)[0]',
             ("getaddrinfo without type=SOCK_STREAM: glibc lists each address's SOCK_STREAM entry "
              'first, and [0] is taken (the test asserts the socket is a stream socket).')),
    Survivor('bind_listener',
             'host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]',
             'host, port, type=socket.SOCK_STREAM, )[0]',
             ('without AI_PASSIVE: it only changes the answer for a host of None (the wildcard), and '
              'hello always passes a host: an address or a name, validated by config.')),
    Survivor('Server.__init__',
             'expose_tracebacks=False,',
             'expose_tracebacks=None,',
             'expose_tracebacks None or False: waitress only tests it for truth.'),
    Survivor('Server.__init__',
             'clear_untrusted_proxy_headers=not settings.trusted_proxies,',
             'clear_untrusted_proxy_headers=None,',
             ('clear_untrusted_proxy_headers: waitress reads it only when its own trusted_proxy is '
              'set, and hello never sets that (ForwardedMiddleware does the job).')),
    Survivor('Server.__init__',
             ('expose_tracebacks=False, # with --trusted-proxies, ForwardedMiddleware drops them '
              'for untrusted peers'),
             '',
             "expose_tracebacks=False dropped: it is waitress's default."),
    Survivor('Server.__init__',
             'self._signal_name = ""',
             'self._signal_name = None',
             'the initial signal name is never read: on_signal sets it before drain() logs it.'),
    Survivor('Server.__init__',
             'expose_tracebacks=False,',
             'expose_tracebacks=True,',
             ('expose_tracebacks=True: waitress shows a traceback only when the WSGI app itself '
              'raises, and Flask (never in debug mode) turns every exception into its own 500 first.')),
    Survivor('Server.__init__',
             'clear_untrusted_proxy_headers=not settings.trusted_proxies,',
             'clear_untrusted_proxy_headers=settings.trusted_proxies,',
             ('clear_untrusted_proxy_headers: waitress reads it only when its own trusted_proxy is '
              'set, and hello never sets that (ForwardedMiddleware does the job).')),
    Survivor('Server.__init__',
             'self._loop = threading.Thread(target=self.waitress.run, name="hello-loop",',
             'self._loop = threading.Thread(target=self.waitress.run, name=None,',
             "the loop thread's name shows only in a debugger or a py-spy dump; nothing reads it."),
    Survivor('Server.__init__',
             ('self._loop = threading.Thread(target=self.waitress.run, name="hello-loop", '
              'daemon=True)'),
             'self._loop = threading.Thread(target=self.waitress.run, daemon=True)',
             "the loop thread's name shows only in a debugger or a py-spy dump; nothing reads it."),
    Survivor('Server.__init__',
             'self._signal_name = ""',
             'self._signal_name = "XXXX"',
             'the initial signal name is never read: on_signal sets it before drain() logs it.'),
    Survivor('Server.__init__',
             'self._loop = threading.Thread(target=self.waitress.run, name="hello-loop",',
             'self._loop = threading.Thread(target=self.waitress.run, name="XXhello-loopXX",',
             "the loop thread's name shows only in a debugger or a py-spy dump; nothing reads it."),
    Survivor('Server.__init__',
             'self._loop = threading.Thread(target=self.waitress.run, name="hello-loop",',
             'self._loop = threading.Thread(target=self.waitress.run, name="HELLO-LOOP",',
             "the loop thread's name shows only in a debugger or a py-spy dump; nothing reads it."),
    Survivor('Server.drain',
             'while waitress_internals.busy_connections(server) and time.monotonic() < deadline:',
             'while waitress_internals.busy_connections(server) and time.monotonic() <= deadline:',
             ('`<=` for `<` against the drain deadline: the two differ only when time.monotonic() '
              "returns the deadline's float exactly, then by one more 20 ms poll.")),
    Survivor('Server.drain',
             'self.writer.event("stopped", drained_ms=round((time.monotonic() - started) * 1000),',
             'self.writer.event("stopped", drained_ms=round((time.monotonic() - started) * 1001),',
             ('NOT equivalent, not tested: drained_ms scaled by 1001 instead of 1000, 0.1 % (8 ms of '
              'an 8 s drain), under what the tests can tell from scheduling noise.')),
    Survivor('_ErrorsToWriter.emit',
             'left_out = self._left_out.pop(key, 0)',
             'left_out = self._left_out.pop(key, None)',
             '`left_out` 0 or None when there is none: it is only tested for truth.'),
    # hello/waitress_internals.py
    Survivor('accept_queued_and_stop_listening',
             'break',
             'return',
             ("return or break out of the accept loop: it is the try's last statement, and the finally"
              ' closes the listener either way.')),
    Survivor('HelloChannel.__init__',
             'self.served_any = False',
             'self.served_any = None',
             '`served_any` None or False: it is only tested for truth.'),
    Survivor('HelloChannel.handle_read',
             'self.connected = False',
             'self.connected = None',
             '`connected` None or False: waitress only tests it for truth.'),
    Survivor('HelloChannel.received',
             'break',
             'return',
             ('waitress sends as it writes (its send_bytes is 1), so each loop answer is on the wire '
              'already; what _send_now adds is closing a `Connection: close` probe in this turn, and '
              'such a request ends its pipeline, so it is never in a batch cut at '
              'LOOP_ANSWERS_PER_READ nor in a read that answered nothing.')),
    Survivor('HelloChannel.received',
             'if answered and self.connected:',
             'if answered or self.connected:',
             ('waitress sends as it writes (its send_bytes is 1), so each loop answer is on the wire '
              'already; what _send_now adds is closing a `Connection: close` probe in this turn, and '
              'such a request ends its pipeline, so it is never in a batch cut at '
              'LOOP_ANSWERS_PER_READ nor in a read that answered nothing.')),
    Survivor('HelloChannel.received',
             'self.loop_service_pending = False',
             'self.loop_service_pending = None',
             '`loop_service_pending` None or False: it is only tested for truth.'),
    Survivor('HelloParser._request_line_of',
             'return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("latin-1")',
             'return method.decode("LATIN-1"), uri.split(b"?", 1)[0].decode("latin-1")',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('HelloParser._request_line_of',
             'return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("latin-1")',
             'return method.decode("latin-1"), uri.split(b"?", )[0].decode("latin-1")',
             ("a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
              "more' holds alike.")),
    Survivor('HelloParser._request_line_of',
             'return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("latin-1")',
             'return method.decode("latin-1"), uri.split(b"?", 2)[0].decode("latin-1")',
             ("a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
              "more' holds alike.")),
    Survivor('HelloParser._request_line_of',
             'return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("latin-1")',
             'return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("LATIN-1")',
             "a codec's name in another case or spelling: Python looks codecs up case-insensitively."),
    Survivor('HelloParser._request_line_of',
             'line = start.lstrip().split(b"\\r\\n", 1)  # waitress, too, skips leading whitespace',
             'line = start.lstrip().split(b"\\r\\n", )  # waitress, too, skips leading whitespace',
             ("a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
              "more' holds alike.")),
    Survivor('HelloParser._request_line_of',
             'line = start.lstrip().split(b"\\r\\n", 1)  # waitress, too, skips leading whitespace',
             'line = start.lstrip().split(b"\\r\\n", 2)  # waitress, too, skips leading whitespace',
             ("a split's maxsplit changed or dropped: only the first part is used, and 'two parts or "
              "more' holds alike.")),
    Survivor('HelloParser._transfer_codings',
             'if coding.strip(b" \\t")]',
             'if coding.strip(b"XX \\tXX")]',
             ("only the number of `chunked` codings is read from the list: a coding of X's kept or "
              'dropped changes no count.')),
    Survivor('HelloParser.received',
             'self._start += data[:_FIRST_LINE_KEPT - len(self._start)]',
             'self._start += data[:_FIRST_LINE_KEPT + len(self._start)]',
             ("the 431 line's copy of the head kept to at most 16 KB instead of 8 KB: only its first "
              'line is read.')),
    Survivor('HelloParser.received',
             'if len(self._start) < _FIRST_LINE_KEPT and self.head_done_at is None:',
             'if len(self._start) < _FIRST_LINE_KEPT or self.head_done_at is None:',
             ("NOT equivalent, not tested: the 431 line's copy of the head grows past 8 KB (memory "
              'only, bounded by the header limit); its first line, the one logged, is the same.')),
    Survivor('HelloParser.received',
             'if len(self._start) < _FIRST_LINE_KEPT and self.head_done_at is None:',
             'if len(self._start) <= _FIRST_LINE_KEPT and self.head_done_at is None:',
             '`<` or `<=` 8 KB kept: at exactly 8 KB the slice added is empty.'),
    Survivor('HelloServer.__init__',
             'bind_socket=False)',
             'bind_socket=None)',
             'bind_socket None or False: waitress only tests it for truth.'),
    Survivor('HelloServer._evictable',
             'if not channel.requests and not channel.total_outbufs_len), key=waited)',
             'if not channel.requests or not channel.total_outbufs_len), key=waited)',
             ('`and` or `or`: a connection holding a request is skipped again by _pop_still_evictable,'
              ' which checks the same before it takes one.')),
    Survivor('HelloServer._make_room_for_fds',
             ('stalest = self._pop_still_evictable(self._evictable() if evictable is None else '
              'evictable)'),
             ('stalest = self._pop_still_evictable(self._evictable() if (evictable is None) or '
              'True else evictable)'),
             ('NOT equivalent, not tested: out of fds mid-turn, the candidates found anew instead of '
              "the turn's list, which still holds the ones already taken: one could be taken twice.")),
    Survivor('HelloServer._past_deadline',
             'return time.time() - channel.creation_time > self.header_timeout',
             'return time.time() - channel.creation_time >= self.header_timeout',
             ('`>` or `>=` the header deadline: they differ only when a float clock reading equals it '
              'exactly.')),
    Survivor('HelloServer._read_waiting',
             'data = channel.socket.recv(self.adj.recv_bytes, socket.MSG_DONTWAIT)',
             'data = channel.socket.recv(socket.MSG_DONTWAIT)',
             ('the read size or MSG_DONTWAIT: the loop reads until nothing more waits, and the socket '
              'is non-blocking already (waitress sets it).')),
    Survivor('HelloServer._read_waiting',
             'data = channel.socket.recv(self.adj.recv_bytes, socket.MSG_DONTWAIT)',
             'data = channel.socket.recv(self.adj.recv_bytes, )',
             ('the read size or MSG_DONTWAIT: the loop reads until nothing more waits, and the socket '
              'is non-blocking already (waitress sets it).')),
    Survivor('HelloServer._read_waiting',
             'return True',
             'return False',
             ("read_waiting's verdict on a socket with no whole request (nothing more waiting, broken,"
              ' half-closed, or a body that could not spill): True or False, the candidate holds no '
              'request and is evicted alike.')),
    Survivor('HelloServer._read_waiting',
             'return False',
             'return True',
             ("read_waiting's verdict on a socket with no whole request (nothing more waiting, broken,"
              ' half-closed, or a body that could not spill): True or False, the candidate holds no '
              'request and is evicted alike.')),
    Survivor('HelloServer._read_waiting',
             'budget -= len(data)',
             'budget = len(data)',
             ("NOT equivalent, not tested: the cap on what one candidate's read may take (header limit"
              " plus body limit, over 1 GiB by default); the kernel's receive buffer holds far less.")),
    Survivor('HelloServer._read_waiting',
             'budget -= len(data)',
             'budget += len(data)',
             ("NOT equivalent, not tested: the cap on what one candidate's read may take (header limit"
              " plus body limit, over 1 GiB by default); the kernel's receive buffer holds far less.")),
    Survivor('HelloServer._read_waiting',
             'channel.last_activity = time.time()',
             'channel.last_activity = None',
             ('NOT equivalent, not tested: last_activity None after a read that brought only blank '
              'lines (waitress skips them before a request); a later eviction turn would fail on it.')),
    Survivor('HelloServer._read_waiting',
             ('while budget > 0 and channel.connected and not channel.requests \\ and not '
              'channel.total_outbufs_len:'),
             ('while budget > 0 and channel.connected and not channel.requests or not '
              'channel.total_outbufs_len:'),
             ("how the read loop's conditions combine: it ends once the candidate holds a request (or "
              'sends nothing more), and the candidate is then judged by the same conditions, so it is '
              'evicted or kept alike; only how much of a pipeline is read early differs.')),
    Survivor('HelloServer._read_waiting',
             'while budget > 0 and channel.connected and not channel.requests \\',
             'while budget > 0 and channel.connected or not channel.requests \\',
             ("how the read loop's conditions combine: it ends once the candidate holds a request (or "
              'sends nothing more), and the candidate is then judged by the same conditions, so it is '
              'evicted or kept alike; only how much of a pipeline is read early differs.')),
    Survivor('HelloServer._read_waiting',
             'while budget > 0 and channel.connected and not channel.requests \\',
             'while budget > 0 or channel.connected and not channel.requests \\',
             ("how the read loop's conditions combine: it ends once the candidate holds a request (or "
              'sends nothing more), and the candidate is then judged by the same conditions, so it is '
              'evicted or kept alike; only how much of a pipeline is read early differs.')),
    Survivor('HelloServer._read_waiting',
             'while budget > 0 and channel.connected and not channel.requests \\',
             'while budget >= 0 and channel.connected and not channel.requests \\',
             ("NOT equivalent, not tested: the cap on what one candidate's read may take (header limit"
              " plus body limit, over 1 GiB by default); the kernel's receive buffer holds far less.")),
    Survivor('HelloServer._read_waiting',
             'while budget > 0 and channel.connected and not channel.requests \\',
             'while budget > 1 and channel.connected and not channel.requests \\',
             ("NOT equivalent, not tested: the cap on what one candidate's read may take (header limit"
              " plus body limit, over 1 GiB by default); the kernel's receive buffer holds far less.")),
    Survivor('HelloServer.handle_accept',
             'self._make_room_for_fds(evictable)',
             'self._make_room_for_fds(None)',
             ('NOT equivalent, not tested: out of fds mid-turn, the candidates found anew instead of '
              "the turn's list, which still holds the ones already taken: one could be taken twice.")),
    Survivor('LoggedErrorTask.execute',
             'self.response_headers.append(("Retry-After", "1"))',
             'self.response_headers.append(("RETRY-AFTER", "1"))',
             ('header name case: waitress title-cases every response header name it writes '
              '(waitress/task.py build_response_header).')),
    Survivor('LoggedErrorTask.execute',
             'writer = getattr(self.channel.server, "hello_writer", None)',
             'writer = getattr(self.channel.server, "hello_writer", )',
             ("getattr's default dropped: HelloServer always sets hello_writer (None without an access"
              ' log).')),
    Survivor('LoggedErrorTask.execute',
             'self.response_headers.append(("X-Content-Type-Options", "nosniff"))',
             'self.response_headers.append(("x-content-type-options", "nosniff"))',
             ('header name case: waitress title-cases every response header name it writes '
              '(waitress/task.py build_response_header).')),
    Survivor('LoggedErrorTask.execute',
             'self.response_headers.append(("X-Content-Type-Options", "nosniff"))',
             'self.response_headers.append(("X-CONTENT-TYPE-OPTIONS", "nosniff"))',
             ('header name case: waitress title-cases every response header name it writes '
              '(waitress/task.py build_response_header).')),
    Survivor('LoggedErrorTask.execute',
             'method, path = getattr(request, "too_large_line", None) or (None, None)',
             'method, path = getattr(request, "too_large_line", ) or (None, None)',
             "getattr's default dropped: HelloParser always sets too_large_line."),
    Survivor('LoggedErrorTask.execute',
             'status=int(self.status.split(" ", 1)[0]),',
             'status=int(self.status.split(None, 1)[0]),',
             ("the first token of a status line ('413 Request Entity Too Large') is the same however "
              'it is split.')),
    Survivor('LoggedErrorTask.execute',
             'status=int(self.status.split(" ", 1)[0]),',
             'status=int(self.status.split(" ", )[0]),',
             ("the first token of a status line ('413 Request Entity Too Large') is the same however "
              'it is split.')),
    Survivor('LoggedErrorTask.execute',
             'status=int(self.status.split(" ", 1)[0]),',
             'status=int(self.status.split(" ", 2)[0]),',
             ("the first token of a status line ('413 Request Entity Too Large') is the same however "
              'it is split.')),
    Survivor('LoggedErrorTask.execute',
             'bytes=self.content_length or 0,',
             'bytes=self.content_length or 1,',
             ("`content_length or 0` or `or 1`: waitress's error answers always have a body, so it is "
              'never 0.')),
    Survivor('LoggedErrorTask.execute',
             'remote=self.channel.addr[0] if self.channel.addr else None)',
             'remote=self.channel.addr[0] if (self.channel.addr) or True else None)',
             'a TCP channel always has an address: the test of it is never false.'),
    Survivor('LoggedErrorTask.execute',
             'self.response_headers.append(("Retry-After", "1"))',
             'self.response_headers.append(("retry-after", "1"))',
             ('header name case: waitress title-cases every response header name it writes '
              '(waitress/task.py build_response_header).')),
]


def key(function: str, before: str, after: str) -> tuple[str, str, str]:
    return function, before.strip(), after.strip()


REASONS = {key(each.function, each.before, each.after): each.why for each in SURVIVORS}
