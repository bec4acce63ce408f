"""One HTTP GET, made safe to point at the open web: the address is checked before connecting,
the connection goes to the address that was checked (no second DNS answer in between), and the
response is refused early when its type or size is wrong.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

ADDRESS_CLASSES = ("private", "loopback", "link_local")
READ_CHUNK = 64 * 1024


class FetchError(Exception):
    """A fetch that got no usable response; `reason` is machine-readable, `retry` says whether
    trying again later may help."""

    def __init__(self, reason: str, detail: str, retry: bool = False):
        super().__init__(detail)
        self.reason, self.retry = reason, retry


@dataclass
class Fetched:
    url: str
    status: int
    phrase: str
    headers: list[tuple[str, str]]  # as sent, less Transfer-Encoding (the body is de-chunked)
    raw_body: bytes  # as sent (content encoding kept), for the WARC record
    date: str  # WARC-Date: when the response began
    address: str

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def body(self) -> bytes:
        """The payload with its content encoding undone."""
        encoding = (self.header("content-encoding") or "identity").lower().strip()
        if encoding in ("identity", ""):
            return self.raw_body
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                return zlib.decompress(self.raw_body, 47 if encoding != "deflate" else zlib.MAX_WBITS)
            except zlib.error as exc:
                raise FetchError("unreadable:content_encoding", f"bad {encoding} body: {exc}") from None
        raise FetchError("unreadable:content_encoding", f"unsupported content encoding {encoding!r}")


def address_class(ip: str) -> str | None:
    """`loopback`, `link_local` or `private` (incl. unique-local, CGNAT, reserved), or None for a
    public address."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_private or addr.is_reserved or addr.is_multicast or addr.is_unspecified or not addr.is_global:
        return "private"
    return None


class _PinnedConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float, tls: bool):
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        if self.tls:
            self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


class Fetcher:
    def __init__(self, user_agent: str, timeout_s: float = 10, max_bytes: int = 8 << 20,
                 allow_addresses: list[str] | None = None, max_seconds: float = 60):
        unknown = set(allow_addresses or []) - set(ADDRESS_CLASSES)
        if unknown:
            raise ValueError(f"allow_addresses takes {', '.join(ADDRESS_CLASSES)}, not {', '.join(sorted(unknown))}")
        self.user_agent, self.timeout_s, self.max_bytes = user_agent, timeout_s, max_bytes
        self.allow = set(allow_addresses or [])
        self.max_seconds = max_seconds

    def resolve(self, host: str, port: int) -> str:
        """The first address of `host` that the policy allows; refused if any is not allowed
        (a name that resolves to both a public and a private address is refused)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("fetch_error:dns", f"{host}: {exc}", retry=exc.errno == socket.EAI_AGAIN) from None
        addresses = sorted({info[4][0] for info in infos})
        for ip in addresses:
            cls = address_class(ip)
            if cls and cls not in self.allow:
                raise FetchError(f"address_refused:{cls}", f"{host} resolves to {ip}, a {cls.replace('_', '-')} "
                                 "address; allow_addresses lets a job crawl those")
        return addresses[0]

    def get(self, url: str, accept=None) -> Fetched:
        """GET `url` without following redirects. `accept(content_type)` decides, from the headers,
        whether a 2xx body is wanted; a refused one is not read (`wrong_content_type`)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("unsupported_url", f"not an http(s) URL: {url}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        address = self.resolve(parts.hostname, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = _PinnedConnection(parts.hostname, port, address, self.timeout_s, tls)
        started = time.monotonic()
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            conn.request("GET", path, headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity",
                                               "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"})
            resp = conn.getresponse()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() != "transfer-encoding"]
            content_type = resp.getheader("Content-Type")
            if 200 <= resp.status < 300 and accept is not None and not accept(content_type):
                raise FetchError("wrong_content_type", f"{content_type or 'no content type'} at {url}")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                raise FetchError("too_large", f"Content-Length {length}, over the cap of {self.max_bytes}")
            chunks, size = [], 0
            while True:
                chunk = resp.read(READ_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError("too_large", f"over the cap of {self.max_bytes} bytes")
                if time.monotonic() - started > self.max_seconds:
                    raise FetchError("fetch_error:too_slow", f"still reading after {self.max_seconds} s", retry=True)
                chunks.append(chunk)
            return Fetched(url, resp.status, resp.reason, headers, b"".join(chunks), date, address)
        except FetchError:
            raise
        except (TimeoutError, socket.timeout):
            raise FetchError("fetch_error:timeout", f"no answer within {self.timeout_s} s", retry=True) from None
        except ConnectionRefusedError as exc:
            raise FetchError("fetch_error:connection_refused", str(exc), retry=True) from None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                http.client.IncompleteRead) as exc:
            raise FetchError("fetch_error:connection_reset", f"{type(exc).__name__}: {exc}", retry=True) from None
        except ssl.SSLError as exc:
            raise FetchError("fetch_error:tls", str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError("fetch_error:io", f"{type(exc).__name__}: {exc}", retry=True) from None
        finally:
            conn.close()
