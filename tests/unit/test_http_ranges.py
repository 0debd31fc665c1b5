"""Byte ranges from a web server (system/http.py), against an http.server in a thread on 127.0.0.1:
many ranges per request (multipart/byteranges), parts merged, split or reordered by the server,
stores that take one range per request, resumes after a dropped connection, retries, and answers
that are refused (wrong Content-Range, short bodies, bad boundaries, endless or oversized
headers). Every test checks that each byte given to the sink is the file's, given once."""

import errno
import http.server
import os
import random
import socket
import threading
import time

import pytest

from diffimg.errors import ImageError, InputNotFound, RangesNotHonoured, RemoteError
from diffimg.system import http as dhttp
from diffimg.system.http import Server, Traffic

DATA = random.Random(25).randbytes(300_000)


def _ranges(header: str, size: int) -> list[tuple[int, int]]:
    """(start, end inclusive) of each range a Range header asks for."""
    spec = header.split("=", 1)[1]
    out = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if not first:
            out.append((max(size - int(last), 0), size - 1))
        else:
            out.append((int(first), min(int(last), size - 1)))
    return out


def single(h, start, end, content_range=None, body=None, length=None, extra=()):
    """A 206 answer of one part."""
    body = DATA[start:end + 1] if body is None else body
    h.send_response(206)
    h.send_header("Content-Range", content_range or f"bytes {start}-{end}/{len(DATA)}")
    h.send_header("Content-Length", str(len(body) if length is None else length))
    for name, value in extra:
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


def multipart(h, parts, boundary="THIS_SEPARATES", content_type=None, preamble=b"", body_boundary=None):
    """A 206 multipart/byteranges answer; parts: (start, end) or (start, end, header lines)."""
    body = bytearray(preamble)
    for part in parts:
        start, end = part[:2]
        lines = part[2] if len(part) > 2 else [f"Content-Range: bytes {start}-{end}/{len(DATA)}"]
        body += b"\r\n--" + (body_boundary or boundary).encode() + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n"
        body += "".join(line + "\r\n" for line in lines).encode() + b"\r\n"
        body += DATA[start:end + 1]
    body += b"\r\n--" + (body_boundary or boundary).encode() + b"--\r\n"
    h.send_response(206)
    h.send_header("Content-Type", content_type or f"multipart/byteranges; boundary={boundary}")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(bytes(body))


def whole(h, status=200, body=DATA):
    h.send_response(status)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def honest(h, asked):
    """What nginx does: one part, or each range its part."""
    if len(asked) == 1:
        single(h, *asked[0])
    else:
        multipart(h, asked)


class Site:
    """The server's state: the Range header of each request, connections accepted, and how the
    next requests are answered (answers: a list of behaviours, the last one repeated)."""

    def __init__(self):
        self.log: list[str] = []
        self.connections = 0
        self.answers = [honest]

    def answer(self, h, header):
        behave = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        behave(h, _ranges(header, len(DATA)))


@pytest.fixture
def site():
    state = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            state.connections += 1

        def do_GET(self):
            header = self.headers.get("Range", "")
            state.log.append(header)
            try:
                state.answer(self, header)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def log_message(self, *args):
            pass

    class Quiet(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass

    server = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/images/base.img"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(dhttp, "BACKOFF", (0,) * 6)
    monkeypatch.setattr(dhttp, "RETRIES", 2)


class Sink:
    """Collects what fetch gives; each byte must be the file's and come once."""

    def __init__(self):
        self.pieces = []
        self.times = bytearray(len(DATA))

    def __call__(self, offset, data):
        data = bytes(data)
        assert data == DATA[offset:offset + len(data)], f"a wrong byte given at {offset}"
        self.pieces.append((offset, len(data)))
        for i in range(offset, offset + len(data)):
            self.times[i] += 1

    def covered(self) -> list[tuple[int, int]]:
        """(start, length) of the runs of bytes given once; any given twice is an error."""
        assert max(self.times, default=0) <= 1, "a byte given twice"
        runs, i = [], 0
        while i < len(self.times):
            if self.times[i]:
                j = i
                while j < len(self.times) and self.times[j]:
                    j += 1
                runs.append((i, j - i))
                i = j
            else:
                i += 1
        return runs


def _spread(count, seed=3, size=300, gap=700):
    rng = random.Random(seed)
    out, at = [], 0
    for _ in range(count):
        at += rng.randrange(1, gap)
        n = rng.randrange(1, size)
        out.append((at, n))
        at += n
    return out


def test_many_ranges_come_in_few_requests_on_one_connection(site):
    ranges = _spread(150)
    traffic = Traffic()
    server = Server(site.url, traffic)
    sink = Sink()
    server.fetch(ranges, sink)
    server.fetch([(5, 10), (290_000, 10_000)], sink)
    server.close()
    asked = sum(n for _, n in ranges) + 10 + 10_000
    assert (sink.covered(), [len(_ranges(h, len(DATA))) for h in site.log], site.connections,
            traffic.requests, traffic.bytes, server.size) == (
        sorted(ranges + [(5, 10), (290_000, 10_000)]), [100, 50, 2], 1, 3, asked, len(DATA))
    assert site.log[2] == "bytes=5-14,290000-299999"


def test_the_tail_is_asked_from_the_end_and_gives_the_size(site):
    server = Server(site.url)
    got = (server.tail(1000), server.size)
    longer = Server(site.url)
    assert (got, longer.tail(len(DATA) + 500), site.log) == (
        (DATA[-1000:], len(DATA)), DATA, ["bytes=-1000", f"bytes=-{len(DATA) + 500}"])


def merged(h, asked):
    """One part over every range asked for, and the gaps between."""
    single(h, asked[0][0], asked[-1][1])


def reversed_parts(h, asked):
    multipart(h, list(reversed(asked)))


def split_parts(h, asked):
    """Each range in two parts, under a quoted boundary."""
    parts = []
    for start, end in asked:
        middle = (start + end) // 2
        parts += [(start, middle), (middle + 1, end)] if end > start else [(start, end)]
    multipart(h, parts, boundary="a quoted:boundary", content_type='multipart/byteranges; '
              'boundary="a quoted:boundary"')


def halves_swapped(h, asked):
    """Each range's second half first: what comes before its range's next byte is not taken
    (and is asked for again)."""
    parts = []
    for start, end in asked:
        middle = (start + end) // 2
        parts += [(middle + 1, end), (start, middle)] if end > start else [(start, end)]
    multipart(h, parts)


def overlapping(h, asked):
    """Parts that overlap each other and run past the ranges (the sink must still get each
    byte once)."""
    multipart(h, [(max(s - 50, 0), min(e + 50, len(DATA) - 1)) for s, e in asked] + list(asked))


@pytest.mark.parametrize("behave, requests", [(merged, 1), (reversed_parts, 1), (split_parts, 1),
                                               (overlapping, 1), (halves_swapped, None)])
def test_parts_merged_split_or_reordered_by_the_server_give_each_range_its_bytes(site, behave, requests):
    site.answers = [behave]
    ranges = _spread(30, seed=9)
    sink = Sink()
    Server(site.url).fetch(ranges, sink)
    assert (sink.covered(), requests or len(site.log)) == (ranges, len(site.log))


@pytest.mark.parametrize("status", [200, 400, 416])
def test_a_store_that_takes_one_range_per_request_is_asked_so_from_then_on(site, status):
    def one_only(h, asked):
        if len(asked) > 1:
            whole(h, status, DATA if status == 200 else b"no")
        else:
            single(h, *asked[0])
    site.answers = [one_only]
    ranges = [(10, 5), (1000, 20), (50_000, 7)]
    sink = Sink()
    server = Server(site.url)
    server.fetch(ranges, sink)
    server.fetch([(70_000, 3), (80_000, 4)], sink)
    assert (sink.covered(), site.log) == (
        ranges + [(70_000, 3), (80_000, 4)],
        ["bytes=10-14,1000-1019,50000-50006", "bytes=10-14", "bytes=1000-1019", "bytes=50000-50006",
         "bytes=70000-70002", "bytes=80000-80003"])


@pytest.mark.parametrize("behave, error, message", [
    (lambda h, asked: whole(h), RangesNotHonoured, "the server sent the whole file where a byte "
     "range was asked for"),
    (lambda h, asked: whole(h, 400, b"bad"), RangesNotHonoured, "the server refused a byte range "
     "request (400)"),
    (lambda h, asked: whole(h, 404, b"gone"), InputNotFound, "no such image on the server"),
    (lambda h, asked: whole(h, 410, b"gone"), InputNotFound, "no such image on the server"),
    (lambda h, asked: whole(h, 416, b""), RemoteError, "the file is shorter than its index says"),
    (lambda h, asked: whole(h, 200, b""), ImageError, "an empty file, not an image"),
    (lambda h, asked: whole(h, 403, b"no"), RemoteError, "the server answered 403 Forbidden"),
])
def test_answers_that_are_no_range_end_at_once(site, behave, error, message):
    site.answers = [behave]
    sink = Sink()
    with pytest.raises(error) as caught:
        Server(site.url).fetch([(100, 10)], sink)
    assert (type(caught.value), message in caught.value.message, site.log, sink.pieces) == (
        error, True, ["bytes=100-109"], [])


def dropped_halfway(h, asked):
    """The first part's headers and half its bytes, then the connection drops."""
    start, end = asked[0]
    h.send_response(206)
    h.send_header("Content-Range", f"bytes {start}-{end}/{len(DATA)}")
    h.send_header("Content-Length", str(end - start + 1))
    h.end_headers()
    h.wfile.write(DATA[start:start + (end - start + 1) // 2])
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)
    h.close_connection = True


def test_a_dropped_connection_resumes_with_the_bytes_not_yet_received(site):
    site.answers = [dropped_halfway, honest]
    sink = Sink()
    server = Server(site.url)
    server.fetch([(1000, 10_000)], sink)
    site.answers = [lambda h, asked: multipart(h, asked[:1]), honest]   # the first range alone
    server.fetch([(20_000, 100), (30_000, 100), (40_000, 100)], sink)
    assert (sink.covered(), site.log, site.connections) == (
        [(1000, 10_000), (20_000, 100), (30_000, 100), (40_000, 100)],
        ["bytes=1000-10999", "bytes=6000-10999",
         "bytes=20000-20099,30000-30099,40000-40099", "bytes=30000-30099,40000-40099"], 2)


def failing(status):
    def behave(h, asked):
        whole(h, status, b"busy")
    return behave


def test_server_errors_are_retried_and_given_up_after_the_retries(site):
    site.answers = [failing(503), failing(500), honest]
    sink = Sink()
    Server(site.url).fetch([(0, 100)], sink)
    got = (sink.covered(), len(site.log))
    site.log.clear()
    site.answers = [failing(429)]
    with pytest.raises(RemoteError) as caught:
        Server(site.url).fetch([(0, 100)], Sink())
    assert (got, caught.value.message, len(site.log)) == (
        ([(0, 100)], 3), f"{site.url}: the server answered 429 Too Many Requests; gave up after "
        "2 retries", 3)


def short(h, asked):
    """Headers that promise the range, 10 of its bytes, then the end of the connection."""
    start, end = asked[0]
    single(h, start, end, body=DATA[start:start + 10], length=end - start + 1)
    h.close_connection = True


def not_asked(h, asked):
    """A well-formed part, of bytes nobody asked for."""
    start, end = asked[0]
    single(h, start + 200, end + 200)


def bad_boundary(h, asked):
    multipart(h, asked, body_boundary="ANOTHER")


def too_many_headers(h, asked):
    start, end = asked[0]
    single(h, start, end, extra=[(f"X-Junk-{i}", "x") for i in range(120)])


def header_too_long(h, asked):
    start, end = asked[0]
    single(h, start, end, extra=[("X-Long", "y" * 70_000)])


@pytest.mark.parametrize("behave, log, covered, why", [
    (short, ["bytes=0-99", "bytes=10-99", "bytes=20-99"], [(0, 30)],
     "connection dropped (IncompleteRead"),
    (not_asked, ["bytes=0-99"] * 3, [], "the server sent none of the bytes asked for"),
    (bad_boundary, ["bytes=0-99,200-299"] * 3, [], "connection dropped"),
    (too_many_headers, ["bytes=0-99"] * 3, [], "connection failed (got more than 100 headers)"),
    (header_too_long, ["bytes=0-99"] * 3, [], "connection failed (got more than 65536 bytes"),
])
def test_answers_that_fail_on_every_try_are_given_up(site, behave, log, covered, why):
    site.answers = [behave]
    ranges = [(0, 100), (200, 100)] if behave is bad_boundary else [(0, 100)]
    sink = Sink()
    with pytest.raises(RemoteError) as caught:
        Server(site.url).fetch(ranges, sink)
    message = caught.value.message
    assert (site.log, sink.covered(), message.startswith(f"{site.url}: {why}"),
            message.endswith("; gave up after 2 retries")) == (log, covered, True, True), message


def _parts_with(lines_of):
    def behave(h, asked):
        multipart(h, [(s, e, lines_of(s, e)) for s, e in asked])
    return behave


def _changing_size(h, asked):
    (s1, e1), (s2, e2) = asked
    multipart(h, [(s1, e1), (s2, e2, [f"Content-Range: bytes {s2}-{e2}/{len(DATA) + 1}"])])


def _oversized(h, asked):
    start, _ = asked[0]
    single(h, start, len(DATA) - 1)        # 300 kB for 10 bytes: still within 2x + 1 MiB


@pytest.mark.parametrize("behave, message, covered", [
    (lambda h, asked: single(h, 0, 99, content_range="bytes 0-99/50"),
     "a part outside the file (0-99)", []),
    (lambda h, asked: single(h, 50, 99, content_range="bytes 99-50/300000", body=DATA[50:100]),
     "a part outside the file (99-50)", []),
    (lambda h, asked: single(h, 0, 99, content_range="bytes 0-99"),
     "a part without a valid Content-Range", []),
    (lambda h, asked: single(h, 0, 99, content_range="octets 0-99/300000"),
     "a part without a valid Content-Range", []),
    (_parts_with(lambda s, e: ["Content-Range: junk"]), "a part without a valid Content-Range", []),
    (_changing_size, "the file changed size while being read (300,000 then 300,001 bytes)",
     [(0, 100)]),
    (lambda h, asked: multipart(h, asked, content_type="multipart/byteranges"),
     "a multipart answer without a boundary", []),
    (_parts_with(lambda s, e: [f"Content-Range: bytes {s}-{e}/{len(DATA)}"]
                 + [f"X-{i}: y" for i in range(40)]), "a multipart answer with junk headers", []),
    (lambda h, asked: multipart(h, asked, preamble=b"blah\r\n" * 20_000),
     "a multipart answer with endless lines", []),
])
def test_malformed_answers_are_refused_at_once(site, behave, message, covered):
    site.answers = [behave]
    sink = Sink()
    with pytest.raises(RemoteError) as caught:
        Server(site.url).fetch([(0, 100), (200, 100)], sink)
    assert (caught.value.message, len(site.log), sink.covered()) == (f"{site.url}: {message}", 1, covered)


def test_an_answer_far_longer_than_asked_for_is_cut_off(site):
    big = bytes(3 << 20)

    def huge(h, asked):
        h.send_response(206)
        h.send_header("Content-Range", f"bytes 0-{len(big) - 1}/{len(big)}")
        h.send_header("Content-Length", str(len(big)))
        h.end_headers()
        h.wfile.write(big)
    site.answers = [huge]
    with pytest.raises(RemoteError) as caught:
        Server(site.url).fetch([(0, 10)], lambda offset, data: None)
    # within twice what was asked plus 1 MiB, a merged answer is taken
    site.answers = [_oversized]
    sink = Sink()
    Server(site.url).fetch([(10, 10)], sink)
    assert (caught.value.message, sink.covered()) == (
        f"{site.url}: the server sent far more than was asked for", [(10, 10)])


def test_a_failing_sink_is_the_callers_error_not_retried(site):
    def full(offset, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as caught:
        Server(site.url).fetch([(0, 100)], full)
    assert (caught.value.errno, site.log) == (errno.ENOSPC, ["bytes=0-99"])


def test_nothing_listening_is_said_at_once_and_a_bad_address_is_no_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.img"
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        Server(url).fetch([(0, 10)], lambda offset, data: None)
    took = time.monotonic() - started
    with pytest.raises(InputNotFound) as bad:
        Server("ftp://example.org/a.img")
    assert (caught.value.message, took < 2, bad.value.message) == (
        f"{url}: nothing answers at 127.0.0.1:{port} (connection refused): check the server's name "
        "and port, and that its web server runs", True, "not an http:// or https:// address: "
        "ftp://example.org/a.img")


def test_a_server_that_never_answers_is_given_up_by_the_watchdog(site, monkeypatch):
    monkeypatch.setattr(dhttp, "HEADERS_DEADLINE", 0.3)
    release = threading.Event()

    def silent(h, asked):
        release.wait(10)
    site.answers = [silent]
    started = time.monotonic()
    try:
        with pytest.raises(RemoteError) as caught:
            Server(site.url).fetch([(0, 10)], lambda offset, data: None)
    finally:
        release.set()
    took = time.monotonic() - started
    assert (caught.value.message, took < 3) == (
        f"{site.url}: no answer within 0.3 s of a request; gave up", True)


def test_urls_are_told_from_paths():
    assert [dhttp.is_url(p) for p in ["http://a/b", b"https://a/b", "/srv/http://x", b"ftp://a",
                                      os.fsencode("HTTP://A")]] == [True, True, False, False, False]
