"""A real documentation site on 127.0.0.1: the Apache HTTP Server manual as Debian installs it
(`apt-get install apache2-doc`), behind a robots.txt that forbids part of it, with slow, failing,
looping, oversized and wrongly typed pages beside it. The server logs every request it answers."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

APACHE_MANUAL = Path("/usr/share/doc/apache2-doc/manual")

ROBOTS = """\
# the module reference is off limits, except one page
User-agent: *
Disallow: /manual/en/mod/
Allow: /manual/en/mod/mod_alias.html

User-agent: some-other-bot
Disallow: /
"""

START = """<!DOCTYPE html><html><head><title>Start</title></head><body>
<h1>Documentation start page</h1>
<p>Links into the Apache HTTP Server manual and to pages that misbehave on purpose.</p>
<ul>
<li><a href="/manual/en/programs/index.html">Server programs</a></li>
<li><a href="/manual/en/mod/mod_alias.html">mod_alias (allowed by robots.txt)</a></li>
<li><a href="/manual/en/mod/core.html">core (disallowed by robots.txt)</a></li>
<li><a href="/slow/ok.html">a slow page</a></li>
<li><a href="/slow/timeout.html">a page slower than the timeout</a></li>
<li><a href="/fail/500.html">always 500</a></li>
<li><a href="/fail/flaky.html">503 once, then fine</a></li>
<li><a href="/fail/reset.html">connection reset</a></li>
<li><a href="/fail/missing.html">404</a></li>
<li><a href="/loop/a.html">redirect loop</a></li>
<li><a href="/moved.html">redirect to the programs index</a></li>
<li><a href="/big.html">too large</a></li>
<li><a href="/manual.pdf">a PDF</a></li>
<li><a href="/copy/ab.html">a copy that names its canonical page</a></li>
<li><a href="/manual/en/programs/ab.html#options">a fragment of a page</a></li>
<li><a href="https://example.org/elsewhere.html">another site</a></li>
<li><a href="/outside/scope.html">outside the path prefixes</a></li>
</ul></body></html>
"""

PAGE = "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>"


class DocSite:
    def __init__(self, root: Path, latency: float = 0.0):
        self.root = root
        self.latency = latency  # seconds before each manual page is answered
        self.log: list[dict] = []  # one entry per request: path, start, end, in_flight
        self.lock = threading.Lock()
        self.in_flight = 0
        self.flaky_seen = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with site.lock:
                    site.in_flight += 1
                    self.entry = {"path": self.path, "start": time.monotonic(), "in_flight": site.in_flight,
                                  "agent": self.headers.get("User-Agent")}
                    site.log.append(self.entry)
                try:
                    site.answer(self)
                finally:
                    site.leave(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients that gave up on a slow page leave a broken pipe behind

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [e["path"] for e in self.log]

    def leave(self, h):
        """The request stops counting as in flight. Called before the last byte is sent, so the
        server's count never exceeds what the client has open."""
        with self.lock:
            if "end" not in h.entry:
                self.in_flight -= 1
                h.entry["end"] = time.monotonic()

    def send(self, h, status: int, body: bytes, content_type="text/html; charset=utf-8", headers=()):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body[:-1])
        h.wfile.flush()
        self.leave(h)
        h.wfile.write(body[-1:])

    def answer(self, h):
        path = h.path.split("?", 1)[0]
        page = lambda title, body: PAGE.format(title=title, body=body).encode()  # noqa: E731
        if path == "/robots.txt":
            return self.send(h, 200, ROBOTS.encode(), "text/plain")
        if path == "/start.html":
            return self.send(h, 200, START.encode())
        if path == "/slow/ok.html":
            time.sleep(0.4)
            return self.send(h, 200, page("Slow but fine", "This page takes a while to arrive, within the timeout."))
        if path == "/slow/timeout.html":
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:  # until then, or until the client hangs up
                ready, _, _ = select.select([h.connection], [], [], 0.02)
                if ready and not h.connection.recv(1, socket.MSG_PEEK):
                    h.close_connection = True
                    return None
            return self.send(h, 200, page("Too slow", "Nobody waits this long."))
        if path == "/fail/500.html":
            return self.send(h, 500, page("Error", "Internal server error"))
        if path == "/fail/flaky.html":
            with self.lock:
                self.flaky_seen += 1
                first = self.flaky_seen == 1
            if first:
                return self.send(h, 503, page("Busy", "try later"), headers=[("Retry-After", "0")])
            return self.send(h, 200, page("Flaky page", "This page answered on the second try, after a 503."))
        if path == "/fail/reset.html":
            h.close_connection = True
            h.connection.shutdown(2)  # no status line: the client sees the connection go away
            return None
        if path == "/loop/a.html":
            return self.send(h, 302, b"", headers=[("Location", "/loop/b.html")])
        if path == "/loop/b.html":
            return self.send(h, 302, b"", headers=[("Location", "a.html")])
        if path == "/moved.html":
            return self.send(h, 301, b"", headers=[("Location", "/manual/en/programs/index.html")])
        if path == "/big.html":
            return self.send(h, 200, b"<html><body>" + b"<p>big</p>" * 300_000 + b"</body></html>")
        if path == "/manual.pdf":
            return self.send(h, 200, b"%PDF-1.4 not really", "application/pdf")
        if path == "/copy/ab.html":
            body = (self.root / "en/programs/ab.html").read_bytes().replace(
                b"<head>", b'<head><link rel="canonical" href="/manual/en/programs/ab.html">', 1)
            return self.send(h, 200, body)
        if path.startswith("/manual/"):
            time.sleep(self.latency)
            target = (self.root / path[len("/manual/"):]).resolve()
            if target.is_file() and self.root.resolve() in target.parents:
                kind = "text/html; charset=utf-8" if target.suffix == ".html" else "application/octet-stream"
                return self.send(h, 200, target.read_bytes(), kind)
        return self.send(h, 404, page("Not found", f"{json.dumps(path)} is not here"))


@pytest.fixture(scope="module")
def apache_manual() -> Path:
    if not (APACHE_MANUAL / "en" / "programs" / "index.html").exists():
        pytest.skip(f"{APACHE_MANUAL} is missing: apt-get install apache2-doc")
    return APACHE_MANUAL


@pytest.fixture
def doc_site(apache_manual):
    site = DocSite(apache_manual)
    yield site
    site.close()


@pytest.fixture(scope="module")
def shared_doc_site(apache_manual):
    """One site for a module's tests that share one crawl of it."""
    site = DocSite(apache_manual)
    yield site
    site.close()


@pytest.fixture
def make_doc_site(apache_manual):
    """A factory for sites with options (`latency`), closed after the test."""
    sites = []

    def make(**options) -> DocSite:
        sites.append(DocSite(apache_manual, **options))
        return sites[-1]

    yield make
    for site in sites:
        site.close()
