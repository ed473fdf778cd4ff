"""Fetching images from user-given URLs: private addresses refused, size and time capped."""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from koclip import webimage
from koclip.errors import InvalidImageError
from koclip.webimage import FetchError, fetch_bytes, fetch_image, is_public


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body))} | {k.replace("_", "-"): v for k, v in headers.items()}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append((self.headers["Host"], self.path))
        if self.path in ("/image.png", "/%EA%B7%B8%EB%A6%BC%201.png?size=%ED%81%B0"):
            self._send(200, _png(), Content_Type="image/png")
        elif self.path == "/redirect":
            self._send(302, Location="/image.png")
        elif self.path == "/redirect-to-private":
            self._send(302, Location="http://10.0.0.1/image.png")
        elif self.path == "/redirect-malformed":
            self._send(302, Location="http://[::1/image.png")
        elif self.path == "/loop":
            self._send(302, Location="/loop")
        elif self.path == "/declared-huge":
            self._send(200, Content_Length=str(50 * 1024 * 1024))
        elif self.path == "/endless":
            self._stream(chunk=b"x" * 16384, pause=0.0, limit=64)  # 1 MB, no Content-Length
        elif self.path == "/slow":
            self._stream(chunk=b"x", pause=0.2, limit=40)  # 8 s of trickle
        elif self.path == "/slow-headers":
            self._trickle(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 60, pause=0.1)  # 6 s, a byte at a time
        else:
            self._send(404)

    def _trickle(self, raw: bytes, pause: float) -> None:
        try:
            for byte in raw:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass

    def _stream(self, chunk: bytes, pause: float, limit: int) -> None:
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(limit):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:  # the client hung up, as it should
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.fixture
def no_connections(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(webimage.socket, "create_connection", refuse)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "ftp://x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http:///no-host",
        "http://example.com:99999/",
    ],
)
def test_refuses_urls_that_are_not_public_http_before_connecting(url, no_connections):
    with pytest.raises(FetchError):
        fetch_bytes(url)


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),
        ("224.0.0.251", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:0a00:0001::", False),  # 6to4 wrapping 10.0.0.1
    ],
)
def test_is_public(address, public):
    assert is_public(address) is public


def test_refuses_a_name_when_any_of_its_addresses_is_private(monkeypatch, no_connections):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80)) for a in ("93.184.215.14", "10.0.0.7")]
    monkeypatch.setattr(webimage.socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(FetchError, match=r"10\.0\.0\.7"):
        fetch_bytes("http://rebind.example/cat.jpg")


def test_loopback_is_refused_unless_allowed(server):
    with pytest.raises(FetchError, match="not a public"):
        fetch_bytes(_url(server, "/image.png"))
    assert fetch_bytes(_url(server, "/image.png"), allow_loopback=True) == _png()


def test_follows_a_redirect_after_vetting_it(server):
    assert fetch_bytes(_url(server, "/redirect"), allow_loopback=True) == _png()


def test_connects_to_the_vetted_address_and_sends_the_host_name(server, monkeypatch):
    port = server.server_address[1]
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    monkeypatch.setattr(webimage.socket, "getaddrinfo", lambda *a, **k: answers)
    assert fetch_bytes(f"http://images.example:{port}/image.png", allow_loopback=True) == _png()
    assert server.requests[-1] == (f"images.example:{port}", "/image.png")


def test_a_korean_host_and_path_are_encoded_for_the_wire(server, monkeypatch):
    port = server.server_address[1]
    asked = []

    def resolve(host, *args, **kwargs):
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(webimage.socket, "getaddrinfo", resolve)
    assert fetch_bytes(f"http://사진.example:{port}/그림 1.png?size=큰", allow_loopback=True) == _png()
    assert asked[0] == "xn--vf4bi0o.example"
    assert server.requests[-1][0] == f"xn--vf4bi0o.example:{port}"


def test_a_redirect_to_a_private_address_is_refused(server):
    with pytest.raises(FetchError, match=r"10\.0\.0\.1"):
        fetch_bytes(_url(server, "/redirect-to-private"), allow_loopback=True)


def test_redirects_are_limited(server):
    with pytest.raises(FetchError, match="redirects"):
        fetch_bytes(_url(server, "/loop"), allow_loopback=True)


def test_a_declared_size_over_the_cap_is_refused_before_reading(server):
    with pytest.raises(FetchError, match="larger than"):
        fetch_bytes(_url(server, "/declared-huge"), allow_loopback=True)


def test_a_streamed_body_over_the_cap_is_cut_off(server):
    with pytest.raises(FetchError, match="larger than"):
        fetch_bytes(_url(server, "/endless"), max_bytes=100_000, allow_loopback=True)


def test_a_slow_server_times_out_within_the_deadline(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match="within"):
        fetch_bytes(_url(server, "/slow"), timeout=1.0, allow_loopback=True)
    assert time.monotonic() - start < 3.0


def test_an_error_status_is_reported(server):
    with pytest.raises(FetchError, match="404"):
        fetch_bytes(_url(server, "/missing"), allow_loopback=True)


def test_fetch_image_opens_the_body_as_rgb(monkeypatch):
    monkeypatch.setattr(webimage, "fetch_bytes", lambda url: _png())
    image = fetch_image("http://example.com/red.png")
    assert image.size == (8, 8) and image.mode == "RGB"


def test_a_body_that_is_not_an_image_is_refused(monkeypatch):
    monkeypatch.setattr(webimage, "fetch_bytes", lambda url: b"<html>not an image</html>")
    with pytest.raises(InvalidImageError, match="not a readable image"):
        fetch_image("http://example.com/page.html")


def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_deadline(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 1 seconds"):
        fetch_bytes(_url(server, "/slow-headers"), timeout=1.0, allow_loopback=True)
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("url", ["http://[::1/", "http://]/", "https://[12345::]/", "http://a]b/", "http://[::1/x]"])
def test_a_malformed_bracketed_host_is_refused_clearly(url, no_connections):
    with pytest.raises(FetchError, match="is not a well-formed URL .*square brackets"):
        fetch_image(url)


def test_a_redirect_to_a_malformed_url_is_refused_clearly(server):
    with pytest.raises(FetchError, match=r"'http://\[::1/image.png' is not a well-formed URL"):
        fetch_bytes(_url(server, "/redirect-malformed"), allow_loopback=True)


@pytest.fixture
def slow_resolver(monkeypatch):
    """Name lookups that take `delay` seconds (15 unless set), then answer with the loopback address."""
    release = threading.Event()
    delay = {"seconds": 15.0}

    def resolve(host, port, *args, **kwargs):
        release.wait(delay["seconds"])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(webimage.socket, "getaddrinfo", resolve)
    yield delay
    release.set()  # lets the lookup left behind finish


def test_the_deadline_covers_a_slow_name_lookup(slow_resolver):
    start = time.monotonic()
    with pytest.raises(FetchError, match="did not answer within 1 seconds: looking up its host took too long"):
        fetch_bytes("http://slow-dns.example/cat.jpg", timeout=1.0)
    assert time.monotonic() - start < 1.5


def test_the_lookup_and_the_download_share_one_deadline(server, slow_resolver):
    slow_resolver["seconds"] = 0.6
    start = time.monotonic()
    with pytest.raises(FetchError, match="within"):  # 0.6 s of lookup, then a body that takes 8 s
        fetch_bytes(f"http://slow-dns.example:{server.server_address[1]}/slow", timeout=1.0, allow_loopback=True)
    assert time.monotonic() - start < 1.5
