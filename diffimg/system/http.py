"""Byte ranges of one file on a web server: the standard library's http.client, one kept-alive
connection, many ranges per request.

Any static server that answers Range requests will do (nginx, a cache, an S3-compatible store):
images are served as they are. A request asks for up to MAX_RANGES ranges; the server answers
206 with one part or a multipart/byteranges body (it may merge or reorder ranges: each part is
taken for what its Content-Range says). A server that refuses several ranges at once (400, or 200
with the whole file, as some object stores do) is asked for one range per request from then on;
one that does the same for a single range does not honour ranges at all (RangesNotHonoured,
exit 19). A dropped connection or a 5xx is retried with backoff, asking only for the bytes not
yet received; after RETRIES failures in a row: RemoteError (exit 18). A slow server is given up
(RemoteError), not retried: one that has not sent its status line and headers HEADERS_DEADLINE
seconds after a request, or whose answer (or the whole fetch, across requests and retries)
averages under MIN_RATE once it has run SLOW_AFTER seconds; a watchdog thread shuts the socket
at that moment, whatever a read is waiting for.
"""

import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse

from .. import __version__
from ..errors import ImageError, InputNotFound, RangesNotHonoured, RemoteError

MAX_RANGES = 100               # per request: the Range header stays under 4 KiB
RETRIES = int(os.environ.get("DIFFIMG_HTTP_RETRIES", "6"))    # failures in a row
BACKOFF = (0.5, 1, 2, 4, 8, 15)
TIMEOUT = 30                   # seconds without a byte: the connection is taken for dropped
# bytes/s an answer must average once it has run SLOW_AFTER seconds, and the seconds a status
# line and headers may take (DIFFIMG_HTTP_SLOW_AFTER sets both times: tests lower them)
MIN_RATE = 4096
SLOW_AFTER = HEADERS_DEADLINE = float(os.environ.get("DIFFIMG_HTTP_SLOW_AFTER", "60"))
READ_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(rb"bytes (\d+)-(\d+)/(\d+|\*)")


def is_url(path) -> bool:
    text = path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)
    return text.startswith(("http://", "https://"))


class Traffic:
    """What a Server received: requests made and body bytes read (for benchmarks and -v)."""

    def __init__(self):
        self.requests = 0
        self.bytes = 0


class _Dropped(Exception):
    """The connection failed mid-answer (retried)."""


class _SinkFailed(Exception):
    """The caller's sink failed (its OSError, raised as it is once out of the answer)."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class Server:
    """One file (url) on one server."""

    def __init__(self, url: str, traffic: Traffic | None = None):
        self.url = url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputNotFound(f"not an http:// or https:// address: {url}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conn = None
        self._single = False          # the server takes one range per request only
        self._answered = False        # the server has answered once (a refusal then is a restart)
        self.size: int | None = None  # the file's length, from the first answer
        self.traffic = traffic or Traffic()

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self):
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=TIMEOUT,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT)
        return self._conn

    def tail(self, length: int) -> bytes:
        """The file's last length bytes (and its size, kept in self.size)."""
        failures = 0
        started = time.monotonic()
        while True:
            parts = []
            try:
                self._ask(b"bytes=-%d" % length, lambda start, data, parts=parts:
                          parts.append((start, data)), asked=length)
                break
            except _Dropped as exc:
                self._give_up_if_slow(started, 0, str(exc))
                failures = self._failed(failures, str(exc))
        data = b"".join(d for _, d in sorted(parts))
        if len(data) != min(length, self.size or 0):
            raise RemoteError(f"{self.url}: the server sent {len(data)} bytes of the last {length}")
        return data

    def fetch(self, ranges, sink):
        """Each (start, length) of ranges (sorted, not overlapping), its bytes given to
        sink(offset, data) in order within each range, every byte exactly once."""
        left = [[start, length] for start, length in ranges if length > 0]
        failures = 0
        started, total = time.monotonic(), sum(n for _, n in left)
        problem = None
        while left:
            # however the server splits its answers (a byte each, slowly), the whole fetch must
            # average MIN_RATE once it has run SLOW_AFTER seconds
            self._give_up_if_slow(started, total - sum(r[1] for r in left), problem)
            batch = left[:1 if self._single else MAX_RANGES]
            got = {id(r): 0 for r in batch}
            spans = {(r[0], r[0] + r[1]): r for r in batch}

            def give(offset, data):
                try:
                    sink(offset, data)
                except OSError as exc:       # the caller's (a full disk): not the connection's
                    raise _SinkFailed(exc) from None

            def take(offset, data, spans=spans, got=got):
                for (start, end), r in spans.items():
                    if start + got[id(r)] == offset and offset + len(data) <= end:
                        give(offset, data)
                        got[id(r)] += len(data)
                        return
                # a part the server merged or split differently: give each range its share
                self._split(offset, data, spans, got, give)

            header = b"bytes=" + b",".join(b"%d-%d" % (s, s + n - 1) for s, n in batch)
            problem = None
            try:
                self._ask(header, take, several=len(batch) > 1,
                          asked=sum(n for _, n in batch))
            except _Dropped as exc:
                problem = str(exc)
            except _SinkFailed as exc:
                self.close()
                raise exc.error from None
            if problem is None and not any(got.values()):
                problem = "the server sent none of the bytes asked for"
            # (an answer that brings nothing counts as a failure)
            failures = 0 if problem is None else self._failed(failures, problem)
            for r in batch:
                r[0] += got[id(r)]
                r[1] -= got[id(r)]
            left = [r for r in left if r[1] > 0]

    def _give_up_if_slow(self, started: float, received: int, dropped: str | None = None):
        """RemoteError when a fetch that began at started has run SLOW_AFTER seconds and
        averaged under MIN_RATE (received bytes so far); dropped: the last failure, when the
        connection failed (then that is said, not a slow server)."""
        elapsed = time.monotonic() - started
        if elapsed > SLOW_AFTER and received < MIN_RATE * elapsed:
            self.close()
            why = (f"the connection keeps failing ({dropped})" if dropped else
                   f"the server sends under {MIN_RATE // 1024} KiB/s")
            raise RemoteError(f"{self.url}: {why}; gave up")

    def _failed(self, failures: int, problem: str) -> int:
        """One more failure in a row: wait before the next try (BACKOFF), or give up after
        RETRIES of them (RemoteError); the new count."""
        failures += 1
        if failures > RETRIES:
            raise RemoteError(f"{self.url}: {problem}; gave up after {RETRIES} retries")
        time.sleep(BACKOFF[min(failures, len(BACKOFF)) - 1])
        return failures

    def _never_there(self, exc: Exception):
        """A host name that resolves to nothing, or a port where nothing listens, before the
        server ever answered: a typo in the address, said at once (RemoteError), not retried
        for half a minute. Once it has answered, a refusal is a restart, retried."""
        where = f"{self._host}:{self._port or (443 if self._https else 80)}"
        if isinstance(exc, socket.gaierror):
            raise RemoteError(f"{self.url}: no host {self._host} ({_reason(exc)}): check the "
                              "server's name in the address") from None
        if isinstance(exc, ConnectionRefusedError) and not self._answered:
            raise RemoteError(f"{self.url}: nothing answers at {where} (connection refused): check "
                              "the server's name and port, and that its web server runs") from None

    @staticmethod
    def _split(offset, data, spans, got, give):
        view = memoryview(data)
        end = offset + len(data)
        for (start, stop), r in sorted(spans.items()):
            at = start + got[id(r)]
            if at < stop and offset <= at < end:
                piece = bytes(view[at - offset:min(stop, end) - offset])
                give(at, piece)
                got[id(r)] += len(piece)

    def _ask(self, header: bytes, take, several: bool = False, asked: int = 0):
        """One GET with Range: header, its parts given to take(offset, data). _Dropped for a
        failure worth retrying. An answer may hold at most twice the bytes asked for (a server
        may merge ranges across gaps) plus 1 MiB, and 64 KiB of part headers and lines: a
        server that sends on and on is cut off (RemoteError)."""
        self._body_left = 2 * asked + (1 << 20)
        self._lines_left = 65536 + 256 * header.count(b",")
        self._started, self._received = time.monotonic(), 0
        conn = self._connection()
        self.traffic.requests += 1
        # bytes sent a few at a time (each within TIMEOUT) would hold a read for ever: the
        # watchdog shuts the socket once the answer is too slow (_Watchdog)
        watchdog = _Watchdog(self, conn)
        try:
            try:
                conn.putrequest("GET", self._target, skip_accept_encoding=True)
                conn.putheader("Range", header.decode())
                conn.putheader("Accept-Encoding", "identity")
                conn.putheader("User-Agent", f"diffimg/{__version__}")
                conn.endheaders()
                response = conn.getresponse()
                watchdog.headers_done = True
                self._answered = True
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                watchdog.give_up()
                self._never_there(exc)
                raise _Dropped(f"connection failed ({_reason(exc)})") from None
            try:
                self._answer(response, take, several)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                watchdog.give_up()
                raise _Dropped(f"connection dropped ({_reason(exc)})") from None
        finally:
            watchdog.stop()
        if response.will_close:
            self.close()

    def _answer(self, response, take, several: bool):
        status = response.status
        if status == 206:
            kind = response.getheader("Content-Type", "")
            if kind.lower().startswith("multipart/byteranges"):
                boundary = re.search(r'boundary="?([^";]+)"?', kind)
                if boundary is None:
                    raise RemoteError(f"{self.url}: a multipart answer without a boundary")
                self._parts(response, boundary.group(1).encode(), take)
            else:
                start, end = self._range(response.getheader("Content-Range", "").encode())
                self._body(response, start, end - start + 1, take)
                if response.length == 0:
                    response.read()        # (what read1 leaves open: the connection is kept)
                else:
                    self.close()           # more than the part, or no length: not reused
            return
        body_follows = status not in (204, 304)
        if body_follows:
            response.close()               # never read a whole file we did not ask for
            self.close()
        if status in (200, 400, 416) and several:
            self._single = True            # some stores take one range per request only
            raise _Dropped("the server takes one range per request")
        if status == 200 and response.getheader("Content-Length") == "0":
            raise ImageError(f"{self.url}: an empty file, not an image")
        if status == 200:
            raise RangesNotHonoured(f"{self.url}: the server sent the whole file where a byte "
                                    "range was asked for: it does not honour Range requests; "
                                    "serve the images from one that does (nginx, Apache)")
        if status == 400:
            raise RangesNotHonoured(f"{self.url}: the server refused a byte range request (400)")
        if status in (404, 410):
            raise InputNotFound(f"no such image on the server: {self.url} ({status})")
        if status == 416:
            raise RemoteError(f"{self.url}: the file is shorter than its index says (416); was it "
                              "replaced while being read?")
        if status >= 500 or status == 429:
            raise _Dropped(f"the server answered {status} {response.reason}")
        raise RemoteError(f"{self.url}: the server answered {status} {response.reason}")

    def _range(self, header: bytes) -> tuple[int, int]:
        m = _CONTENT_RANGE.fullmatch(header.strip())
        if m is None:
            raise RemoteError(f"{self.url}: a part without a valid Content-Range")
        start, end = int(m.group(1)), int(m.group(2))
        if m.group(3) != b"*":
            total = int(m.group(3))
            if self.size is None:
                self.size = total
            elif total != self.size:
                raise RemoteError(f"{self.url}: the file changed size while being read "
                                  f"({self.size:,} then {total:,} bytes)")
        if end < start or (self.size is not None and end >= self.size):
            raise RemoteError(f"{self.url}: a part outside the file ({start}-{end})")
        return start, end

    def _body(self, response, start: int, length: int, take):
        self._body_left -= length
        if self._body_left < 0:
            self.close()
            raise RemoteError(f"{self.url}: the server sent far more than was asked for")
        while length > 0:
            data = response.read1(min(length, READ_SIZE))    # (what one recv brings)
            if not data:
                raise http.client.IncompleteRead(b"")
            self._slow_check(len(data))
            self.traffic.bytes += len(data)
            take(start, data)
            start += len(data)
            length -= len(data)

    def _slow_check(self, n: int):
        """A server trickling bytes (each read within TIMEOUT, but at a crawl) is given up once
        its answer has run SLOW_AFTER seconds below MIN_RATE on average (the watchdog also
        shuts the socket then, while a read waits)."""
        self._received += n
        elapsed = time.monotonic() - self._started
        if elapsed > SLOW_AFTER and self._received < MIN_RATE * elapsed:
            self.close()
            raise RemoteError(f"{self.url}: the server sends under {MIN_RATE // 1024} KiB/s; "
                              "gave up")

    def _parts(self, response, boundary: bytes, take):
        delimiter = b"--" + boundary

        def readline():
            line = response.readline(4096)
            self._slow_check(len(line))
            self._lines_left -= len(line)
            if self._lines_left < 0:
                self.close()
                raise RemoteError(f"{self.url}: a multipart answer with endless lines")
            return line
        while True:
            line = readline()
            if not line:
                raise http.client.IncompleteRead(b"")
            line = line.rstrip(b"\r\n")
            if line == delimiter + b"--":
                response.read(4096)        # the epilogue, if any: a longer one ends the connection
                if not response.isclosed():
                    self.close()
                return
            if line != delimiter:
                continue                   # the preamble, or the CRLF after a part
            headers = {}
            while (line := readline().rstrip(b"\r\n")):
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
                if len(headers) > 32:
                    raise RemoteError(f"{self.url}: a multipart answer with junk headers")
            start, end = self._range(headers.get(b"content-range", b""))
            self._body(response, start, end - start + 1, take)


class _Watchdog:
    """For one request on conn: shuts its socket (and names why, for give_up) when no status
    line and headers came within HEADERS_DEADLINE, or when the answer's body has run SLOW_AFTER
    seconds averaging under MIN_RATE (server._received, counted as reads return)."""

    def __init__(self, server: Server, conn):
        self.headers_done = False
        self.reason = None
        self._server, self._conn = server, conn
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        thread = threading.Thread(target=self._watch, daemon=True)
        thread.start()

    def _watch(self):
        server = self._server
        while True:
            elapsed = time.monotonic() - server._started
            if not self.headers_done:
                due, why = HEADERS_DEADLINE, (f"no answer within {HEADERS_DEADLINE:g} s of a "
                                              "request")
            else:
                due = max(SLOW_AFTER, server._received / MIN_RATE)
                why = f"the server sends under {MIN_RATE // 1024} KiB/s"
            if elapsed >= due:
                with self._lock:
                    if not self._stopped.is_set():
                        self.reason = why
                        _shut(self._conn)
                return
            if self._stopped.wait(min(due - elapsed, SLOW_AFTER / 8) + 0.01):
                return

    def give_up(self):
        """RemoteError when the watchdog shut the socket (a failure that is not retried)."""
        if self.reason is not None:
            raise RemoteError(f"{self._server.url}: {self.reason}; gave up")

    def stop(self):
        with self._lock:
            self._stopped.set()


def _shut(conn):
    with contextlib.suppress(OSError, AttributeError):
        conn.sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
