"""The edge's own reading of simple request heads (edge/runtime/simple_head.py) against
httptools: every head it takes, httptools accepts and reads the same way, so the shortcut
never admits a request the parser would refuse nor reads one differently."""

from __future__ import annotations

from typing import Any

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsgate.edge.runtime.simple_head import REQUEST_LINE, parse_fields


class _Collect:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.parser: Any = None
        self.read: tuple[bytes, str, bool] | None = None

    def on_headers_complete(self) -> None:
        # (As the edge asks: keep-alive is the parser's judgement of the head just read.)
        p = self.parser
        self.read = (p.get_method(), p.get_http_version(), p.should_keep_alive())

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        self.complete = True


def _fast(head: bytes) -> tuple[Any, ...] | None:
    line = REQUEST_LINE.match(head)
    if line is None:
        return None
    fields = parse_fields(head[line.end() :])
    if fields is None:
        return None
    return (*line.groups(), *fields)


def _agree(head: bytes) -> tuple[Any, ...] | None:
    """The shortcut's reading, after checking httptools reads the head the same way."""
    fast = _fast(head)
    if fast is None:
        return None
    method, url, minor, headers, host, connection = fast
    seen = _Collect()
    parser = seen.parser = httptools.HttpRequestParser(seen)
    parser.feed_data(head)  # raises if httptools refuses what the shortcut took
    assert seen.complete and seen.read is not None
    got_method, got_version, got_keep_alive = seen.read
    assert got_method == method
    assert seen.url == url
    assert got_version == "1." + minor.decode()
    assert seen.headers == headers
    hosts = [v for n, v in headers if n == b"host"]
    assert host == (hosts[0] if hosts else b"")
    keep_alive = connection != b"close" if minor == b"1" else connection == b"keep-alive"
    assert got_keep_alive == keep_alive
    return fast


AB = (
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: api.example.com:8443\r\n"
    b"User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
)


@pytest.mark.parametrize(
    "head",
    [
        AB,
        b"GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nhost:h\r\nX-A:\t a b\tc\r\n\r\n",
        b"DELETE /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"OPTIONS /x HTTP/1.0\r\n\r\n",
        b'GET /"{}|\\^`<> HTTP/1.1\r\nHost: h\r\nCookie: a=b; c=d\r\n\r\n',
    ],
)
def test_simple_heads_read_as_httptools_reads_them(head: bytes) -> None:
    assert _agree(head) is not None


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: h\r\n\r\n",  # a method that may carry a body
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n",  # llhttp: Connection
        b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # long target: counted by it
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nHost: h \r\n\r\n",  # trailing whitespace
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \x80\r\n\r\n",  # obs-text
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
        b"GET /#frag HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",  # absolute form
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",  # two heads
        b"GET / HTTP/1.1\r\nHost: h\r\n",  # unfinished
        b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",  # long: counted by the parser
    ],
)
def test_other_heads_go_to_httptools(head: bytes) -> None:
    assert _fast(head) is None


_METHODS = st.sampled_from([b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"POST", b"get", b"CONNECT"])
_TARGET_CHARS = st.sampled_from([b"/", b"a", b"?", b"=", b"&", b"%", b"#", b" ", b"\t", b"\x00",
                                 b"\x7f", b"\xc3", b'"', b"\\", b"{", b"~"])  # fmt: skip
_NAME_CHARS = st.sampled_from([b"a", b"Z", b"-", b"_", b"!", b"~", b"|", b" ", b"(", b"\x00",
                               b"\xe9", b"@", b"/"])  # fmt: skip
_VALUE_CHARS = st.sampled_from([b"v", b" ", b"\t", b":", b",", b"\x00", b"\x01", b"\x7f", b"\x80",
                                b"\r", b"\n", b";", b"="])  # fmt: skip
_NAMES = st.one_of(
    st.sampled_from(
        [b"Host", b"host", b"Connection", b"Content-Length", b"Accept", b"X-A", b"Proxy-Connection"]
    ),
    st.lists(_NAME_CHARS, min_size=0, max_size=6).map(b"".join),
)
_VALUES = st.one_of(
    st.sampled_from([b"keep-alive", b"Keep-Alive", b"close", b"h", b"*/*", b""]),
    st.lists(_VALUE_CHARS, min_size=0, max_size=8).map(b"".join),
)
_FIELD_LINE = st.tuples(
    _NAMES, st.sampled_from([b":", b": ", b":\t", b" :", b""]), _VALUES,
    st.sampled_from([b"\r\n", b"\r\n", b"\n"]),
).map(b"".join)  # fmt: skip
_WILD = st.tuples(
    _METHODS,
    st.sampled_from([b" ", b"  "]),
    st.lists(_TARGET_CHARS, min_size=0, max_size=8).map(lambda cs: b"/" + b"".join(cs)),
    st.sampled_from([b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", b" HTTP/1.2\r\n", b" HTTP/1.1\n"]),
    st.lists(_FIELD_LINE, max_size=5).map(b"".join),
    st.sampled_from([b"\r\n", b"\r\n", b"\n", b""]),
).map(b"".join)
# Mostly well-formed heads, so that many reach the shortcut.
_GOOD_CHARS = st.sampled_from([b"v", b"K", b" ", b"\t", b":", b",", b"/", b"*"])
_GOOD_VALUE = st.lists(_GOOD_CHARS, max_size=6).map(lambda cs: b"x" + b"".join(cs) + b"y")
_GOOD_FIELD = st.tuples(
    st.sampled_from(
        [
            b"Host",
            b"HOST",
            b"Connection",
            b"Accept",
            b"X-A",
            b"a!b~c",
            b"Cookie",
            b"Proxy-Connection",
        ]
    ),
    st.sampled_from([b":", b": ", b":\t", b":  "]),
    st.one_of(_GOOD_VALUE, st.sampled_from([b"keep-alive", b"Keep-Alive", b"close", b"h:1"])),
).map(lambda t: b"".join(t) + b"\r\n")
_GOOD = st.tuples(
    st.sampled_from([b"GET ", b"HEAD ", b"DELETE ", b"OPTIONS "]),
    st.lists(st.sampled_from([b"a", b"/", b"?", b"=", b"%", b"~", b'"']), max_size=6).map(
        lambda cs: b"/" + b"".join(cs)
    ),
    st.sampled_from([b" HTTP/1.1\r\n", b" HTTP/1.0\r\n"]),
    st.lists(_GOOD_FIELD, max_size=5).map(b"".join),
    st.just(b"\r\n"),
).map(b"".join)
_HEADS = st.one_of(_WILD, _GOOD)


@settings(max_examples=2000, deadline=None)
@given(_HEADS)
def test_whatever_the_shortcut_takes_httptools_reads_the_same(head: bytes) -> None:
    _agree(head)


def test_the_generated_heads_reach_both_outcomes() -> None:
    # (So the property above is not vacuous: the generator makes heads of both kinds.)
    taken = refused = 0

    @settings(max_examples=800, deadline=None, database=None)
    @given(_HEADS)
    def count(head: bytes) -> None:
        nonlocal taken, refused
        if _fast(head) is None:
            refused += 1
        else:
            taken += 1

    count()
    assert taken >= 50 and refused >= 50, (taken, refused)


def test_a_connection_s_heads_are_forwarded_as_sent_when_they_repeat_and_when_they_change() -> None:
    # The parsed fields of a repeated head are reused; a changed one is read again. (Names
    # are forwarded lowercased, as the httptools path forwards them.)
    from tests.edge.test_request_garbage import RESPONSE
    from tests.edge.test_request_limits import Edge

    with Edge() as edge:
        one = b"GET /1 HTTP/1.1\r\nHost: api.example.com\r\nX-A: a\r\n\r\n"
        two = b"GET /2 HTTP/1.1\r\nHost: api.example.com\r\nX-B: b\r\n\r\n"
        spoof = b"GET /3 HTTP/1.1\r\nHost: api.example.com\r\ncf-cert-verified: true\r\n\r\n"
        for head, path, has, lacks in (
            (one, b"/1", b"x-a: a", b"x-b"),
            (one, b"/1", b"x-a: a", b"x-b"),
            (two, b"/2", b"x-b: b", b"x-a"),
            (one, b"/1", b"x-a: a", b"x-b"),
            (spoof, b"/3", b"cf-cert-verified: true", b"x-a"),
        ):
            edge.send(head)
            sent = edge.origin_out.take()
            assert sent.startswith(b"GET " + path + b" HTTP/1.1\r\n"), sent
            assert lacks not in sent
            if head is spoof:
                # The client's copy is gone; the edge's own header says true (a valid cert).
                assert sent.count(b"cf-cert-verified") == 1, sent
            else:
                assert has in sent, sent
            edge.origin.data_received(RESPONSE)
            assert edge.received().startswith(b"HTTP/1.1 200")


def test_a_long_target_alone_in_its_read_gets_431_as_through_httptools() -> None:
    from tests.edge.test_request_limits import Edge

    with Edge() as edge:
        edge.first_request()
        edge.send(b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        assert edge.origin_out.take() == b""
        assert edge.received().startswith(b"HTTP/1.1 431")


def test_proxy_connection_close_ends_the_connection_as_through_httptools() -> None:
    from tests.edge.test_request_garbage import RESPONSE
    from tests.edge.test_request_limits import Edge

    with Edge() as edge:
        edge.first_request()
        edge.send(b"GET /p HTTP/1.1\r\nHost: api.example.com\r\nProxy-Connection: close\r\n\r\n")
        assert edge.origin_out.take().startswith(b"GET /p")
        edge.origin.data_received(RESPONSE)
        assert edge.received().startswith(b"HTTP/1.1 200")
        assert edge.conn.closing
