"""Fetching an image from a URL a user typed, without letting that URL reach private networks.

The host is resolved here and every address it resolves to is checked; the connection then goes
to that vetted address, so a second DNS answer cannot swap in another one (DNS rebinding).
Redirects are followed by hand, each hop checked the same way. Downloads are capped in size and
in total time: the name lookup runs on a thread that is waited for until the deadline only, and a
watchdog shuts the connection's socket at the deadline, so no phase (the lookup, connecting, the
TLS handshake, a header sent a byte at a time, the body) can outlast it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import quote, urljoin, urlsplit

from PIL import Image

from koclip.errors import KoCLIPError
from koclip.images import open_image

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT_S = 10.0
MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
_URL_SAFE = "/%:@!$&'()*+,;=~?"  # characters left as they are when percent-encoding a path or query


class FetchError(KoCLIPError):
    """A URL that is refused, unreachable, too slow, too large, or does not answer with content."""


def is_public(address: str) -> bool:
    """Whether an IP address belongs to the public internet (not loopback, private, link-local...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id such as %eth0
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address can carry an IPv4 one that the network routes to (::ffff:10.0.0.1, 6to4).
        candidates += [embedded for embedded in (ip.ipv4_mapped, ip.sixtofour) if embedded is not None]
    return all(
        c.is_global
        and not (c.is_private or c.is_loopback or c.is_link_local)
        and not (c.is_multicast or c.is_reserved or c.is_unspecified)
        for c in candidates
    )


@dataclasses.dataclass(frozen=True)
class _Hop:
    """One request: where it goes, with the addresses it may connect to already vetted."""

    scheme: str
    host: str  # ASCII (IDNA), for the Host header and the TLS certificate check
    port: int
    addresses: tuple[str, ...]
    target: str  # the percent-encoded path and query


def _malformed(url: str, exc: ValueError) -> FetchError:
    return FetchError(
        f"{url[:100]!r} is not a well-formed URL ({exc}); an IPv6 address goes in square "
        "brackets, as in http://[2001:db8::1]/cat.jpg"
    )


def _resolve(host: str, port: int, deadline: float) -> list[tuple]:
    """`socket.getaddrinfo` for `host`, waited for until `deadline` only: a lookup cannot be
    interrupted, so a slow one is left to finish on its own daemon thread."""
    answer: concurrent.futures.Future = concurrent.futures.Future()

    def lookup() -> None:
        try:
            answer.set_result(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the waiting thread, which raises it
            answer.set_exception(exc)

    threading.Thread(target=lookup, name=f"look up {host[:40]}", daemon=True).start()
    try:
        return answer.result(timeout=max(deadline - time.monotonic(), 0.0))
    except concurrent.futures.TimeoutError:  # not yet the built-in TimeoutError on Python 3.10
        raise TimeoutError from None


def _vet(url: str, allow_loopback: bool, deadline: float) -> _Hop:
    """Check a URL and resolve its host by `deadline`; refuse it unless every address is public."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # brackets that do not hold an IP address: "http://[::1/", "http://]/"
        raise _malformed(url, exc) from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http:// and https:// URLs can be fetched, not {url[:100]!r}")
    if not parts.hostname:
        raise FetchError(f"the URL {url[:100]!r} names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname.encode("idna").decode("ascii")
        infos = _resolve(host, port, deadline)
    except (ValueError, socket.gaierror) as exc:  # a bad port or name (UnicodeError is a ValueError)
        raise FetchError(f"cannot resolve the host of {url[:100]!r} ({exc})") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        loopback_allowed = allow_loopback and ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
        if not (is_public(address) or loopback_allowed):
            raise FetchError(
                f"{parts.hostname!r} resolves to {address}, which is not a public internet address; "
                "only images on the public web can be fetched"
            )
    target = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_URL_SAFE)
    return _Hop(parts.scheme, host, port, addresses, target)


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to vetted addresses only, sending the URL's host name in the Host header."""

    def __init__(self, hop: _Hop, timeout: float):
        super().__init__(hop.host, hop.port, timeout=timeout)
        self.addresses = hop.addresses
        self.opened: list[socket.socket] = []  # every socket, for the watchdog to shut
        self.expired = False

    def connect(self) -> None:
        error: OSError | None = None
        for address in self.addresses:  # in resolver order, as socket.create_connection does
            if self.expired:
                break
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
                self.opened.append(self.sock)
                return
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    def expire(self) -> None:
        """Shut every socket of this connection: whatever is blocked on it returns at once."""
        self.expired = True
        for sock in self.opened:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _PinnedHTTPS(_PinnedHTTP):
    """As `_PinnedHTTP`, with TLS whose certificate is checked against the URL's host name."""

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)
        self.opened.append(self.sock)


def fetch_bytes(
    url: str,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_S,
    allow_loopback: bool = False,  # only for tests against a local server
) -> bytes:
    """The body of `url`, after at most MAX_REDIRECTS vetted redirects, within `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        try:
            hop = _vet(url, allow_loopback, deadline)
        except TimeoutError:
            raise FetchError(
                f"{url[:100]} did not answer within {timeout:.0f} seconds: looking up its host took too long"
            ) from None
        connection_type = _PinnedHTTPS if hop.scheme == "https" else _PinnedHTTP
        connection = connection_type(hop, timeout=max(deadline - time.monotonic(), 0.01))
        watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), connection.expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request("GET", hop.target, headers={"User-Agent": "koclip", "Accept": "image/*"})
            sock = connection.sock  # the connection lets go of it once the response says it will close
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                try:
                    url = urljoin(url, location)
                except ValueError as exc:
                    raise _malformed(location, exc) from None
                continue
            if response.status != 200:
                raise FetchError(f"the server answered {response.status} {response.reason} for {url[:100]}")
            return _read_capped(connection, sock, response, max_bytes, deadline)
        except (OSError, http.client.HTTPException) as exc:
            if connection.expired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
                raise FetchError(f"{url[:100]} did not answer within {timeout:.0f} seconds") from None
            raise FetchError(f"could not fetch {url[:100]} ({exc})") from None
        finally:
            watchdog.cancel()
            connection.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects; stopped at {url[:100]}")


def _read_capped(
    connection: _PinnedHTTP, sock: socket.socket, response: http.client.HTTPResponse, max_bytes: int, deadline: float
) -> bytes:
    """Stream the body, stopping as soon as it passes `max_bytes` or the deadline."""
    too_large = FetchError(f"the image is larger than the {max_bytes / 2**20:.0f} MiB limit")
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)  # a slow trickle must not outlast the deadline
        chunk = response.read1(_CHUNK)
        if connection.expired:  # the watchdog ended the read: what came is not the whole body
            raise TimeoutError
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            raise too_large


def fetch_image(url: str) -> Image.Image:
    """An RGB image from a public http(s) URL; refused like any other image if it is not one."""
    return open_image(fetch_bytes(url))
