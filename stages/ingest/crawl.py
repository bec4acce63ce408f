"""A polite crawler for documentation sites, as a source: one work unit per site.

Breadth-first from the seeds, level by level; within a level pages are fetched concurrently but
their results are taken in URL order, so the same site gives the same documents in the same order.
Politeness: robots.txt (RFC 9309), a per-host minimum delay between request starts (raised by a
Crawl-delay) and a per-host cap on requests in flight, retries with exponential backoff (honouring
Retry-After) for timeouts, resets, 429 and 5xx. Scope: the seeds' hosts, optionally path prefixes;
a depth and a page cap. URLs are compared in canonical form, and a page whose
`<link rel=canonical>` names a page already crawled is a duplicate. Private, loopback and
link-local addresses are refused unless `allow_addresses` names them. With `warc_dir`, every
response is also written to a WARC file, which the `warc` source re-reads into the same documents.

Every URL the crawler decides about and that yields no document is a ledger entry:
`robots_disallowed`, `robots_unreachable`, `robots_noindex`, `page_cap`, `http_status:<code>`,
`redirect_loop`, `too_many_redirects`, `redirect_out_of_scope`, `duplicate_url`,
`duplicate_canonical`, `wrong_content_type`, `too_large`, `no_text`, `address_refused:<class>`,
`fetch_error:<what>`. Links out of scope or past the depth cap are not followed and not recorded.

A document's id names its capture (a hash of its WARC record id, itself derived from the URL and
the fetch time), so a crawl of the same site on another day gives new ids: the web is the input,
and it changes. Re-reading the WARC of a crawl gives that crawl's ids again.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from pipeline.source import Source, documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.fetch import Fetched, FetchError, Fetcher
from stages.ingest.robots import ALLOW_ALL, DISALLOW_ALL, RobotsRules, rules_for_status
from stages.ingest.webpage import DROPPED_FIELD, HTML_TYPES, NoDocument, PagePolicy, Response, media_type

RETRY_STATUS = {429, 500, 502, 503, 504}
TRACKING = re.compile(r"^(utm_\w+|gclid|fbclid|mc_[ce]id|jsessionid|phpsessid|sid|sessionid)$", re.I)
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PERCENT = re.compile(r"%([0-9a-fA-F]{2})")


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The form URLs are compared in: scheme and host lower-cased, default port and fragment
    dropped, dot segments resolved, percent-escapes normalised (RFC 3986 6.2.2), tracking and
    session parameters dropped, query parameters sorted. None for a non-http(s) URL."""
    try:
        parts = urlsplit(urljoin(base, url.strip()) if base else url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    scheme = parts.scheme.lower()
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    netloc = host if port in (None, 80 if scheme == "http" else 443) else f"{host}:{port}"
    path = urlsplit(urljoin(f"{scheme}://{netloc}/", parts.path or "/")).path  # resolves ./ and ../
    path = PERCENT.sub(lambda m: chr(int(m.group(1), 16)) if chr(int(m.group(1), 16)) in UNRESERVED
                       else f"%{m.group(1).upper()}", quote(path, safe="/%:@!$&'()*+,;=-._~"))
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not TRACKING.match(k)))
    return urlunsplit((scheme, netloc, path, query, ""))


class HostGate:
    """Per-host politeness: at most `concurrency` requests in flight, and request starts at least
    `delay` seconds apart."""

    def __init__(self, delay: float, concurrency: int):
        self.delay = delay
        self.slots = threading.BoundedSemaphore(concurrency)
        self.lock = threading.Lock()
        self.next_start = 0.0

    def __enter__(self):
        self.slots.acquire()
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.delay
        if start > now:
            time.sleep(start - now)
        return self

    def __exit__(self, *exc):
        self.slots.release()


@dataclass
class Outcome:
    """What fetching one URL gave: the responses of its redirect chain (for the WARC), and the
    final response or the reason there is none."""

    chain: list[Fetched] = field(default_factory=list)
    final: Fetched | None = None
    reason: str | None = None
    detail: str = ""
    body: bytes = b""
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False

    def names_another(self) -> bool:
        """Whether the page declares a canonical URL other than its own."""
        return bool(self.canonical and self.final and self.canonical != canonical_url(self.final.url))


class CrawlSource(Source):
    """Crawls documentation sites from `seeds`; see the module docstring for the rules."""

    kind = "crawl"

    def __init__(self, name: str, seeds: list[str], path_prefixes: list[str] | None = None, max_depth: int = 3,
                 max_pages: int = 1000, delay_s: float = 1.0, max_concurrency: int = 2, retries: int = 2,
                 backoff_s: float = 1.0, max_backoff_s: float = 60, timeout_s: float = 10,
                 max_page_mb: float = 8, max_redirects: int = 5, content_types: list[str] | None = None,
                 allow_addresses: list[str] | None = None, user_agent: str = "sigma-crawler/0.1",
                 warc_dir: str | None = None, extractor: str = "resiliparse", kind: str = "doc",
                 max_crawl_delay_s: float = 30):
        super().__init__(name)
        if max_concurrency < 1 or max_depth < 0 or max_pages < 0 or retries < 0:
            raise ValueError("max_concurrency >= 1, max_depth, max_pages and retries >= 0")
        self.seeds = seeds
        self.path_prefixes = path_prefixes or []
        self.max_depth, self.max_pages = max_depth, max_pages
        self.delay_s, self.max_concurrency = delay_s, max_concurrency
        self.retries, self.backoff_s, self.max_backoff_s = retries, backoff_s, max_backoff_s
        self.max_redirects, self.max_crawl_delay_s = max_redirects, max_crawl_delay_s
        self.policy = PagePolicy(extractor, content_types or PagePolicy().content_types,
                                 int(max_page_mb * (1 << 20)), kind)
        self.fetcher = Fetcher(user_agent, timeout_s, self.policy.max_bytes, allow_addresses)
        self.user_agent = user_agent
        self.warc_dir = warc_dir

    def plan(self) -> list:
        sites: dict[str, list[str]] = {}
        for seed in self.seeds:
            url = canonical_url(seed)
            if url is None:
                raise ValueError(f"not an http(s) URL: {seed!r}")
            sites.setdefault(urlsplit(url).hostname, []).append(url)
        return [[host, sorted(set(urls))] for host, urls in sorted(sites.items())]

    def read(self, payload: list) -> Iterator[Result]:
        host, seeds = payload
        yield from _SiteCrawl(self, host, seeds).run()


class _SiteCrawl:
    def __init__(self, source: CrawlSource, host: str, seeds: list[str]):
        self.s, self.host, self.seeds = source, host, seeds
        self.gate = HostGate(source.delay_s, source.max_concurrency)
        self.robots: dict[str, RobotsRules | FetchError] = {}
        self.robots_lock = threading.Lock()
        self.docs: list[dict] = []
        self.bad: list[dict] = []
        self.warc = None

    # -- rules ---------------------------------------------------------------------------

    def in_scope(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.hostname != self.host:
            return False
        return not self.s.path_prefixes or any(parts.path.startswith(p) for p in self.s.path_prefixes)

    def robots_for(self, url: str) -> RobotsRules | FetchError:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self.robots_lock:
            return self._robots_of(origin)

    def _robots_of(self, origin: str) -> RobotsRules | FetchError:
        if origin not in self.robots:
            outcome = self.fetch_chain(f"{origin}/robots.txt", check_robots=False, accept=None, record=False)
            if outcome.final is None:
                if outcome.reason.startswith("address_refused"):
                    self.robots[origin] = FetchError(outcome.reason, outcome.detail)
                else:  # RFC 9309 2.3.1.2: too many redirects is "unavailable" (allow); errors disallow
                    self.robots[origin] = ALLOW_ALL if "redirect" in outcome.reason else DISALLOW_ALL
            else:
                try:
                    text = outcome.final.body()[:500 * 1024].decode("utf-8", "replace")
                except FetchError:
                    text = ""
                rules = rules_for_status(outcome.final.status, text, self.s.user_agent)
                self.robots[origin] = rules
                if rules.crawl_delay:  # may slow the crawl down, never speed it up
                    self.gate.delay = max(self.gate.delay, min(rules.crawl_delay, self.s.max_crawl_delay_s))
        return self.robots[origin]

    def disallowed(self, url: str) -> tuple[str, str] | None:
        rules = self.robots_for(url)
        if isinstance(rules, FetchError):
            return rules.reason, str(rules)
        if rules.disallow_all:
            return "robots_unreachable", "robots.txt could not be fetched: RFC 9309 says assume all disallowed"
        if not rules.allowed(url):
            return "robots_disallowed", f"robots.txt disallows {urlsplit(url).path} for {self.s.user_agent}"
        return None

    # -- fetching ------------------------------------------------------------------------

    def fetch_one(self, url: str, accept) -> Fetched:
        """One URL with retries: timeouts, resets, 429 and 5xx are tried again after a backoff."""
        attempt = 0
        while True:
            try:
                with self.gate:
                    fetched = self.s.fetcher.get(url, accept)
            except FetchError as exc:
                if not exc.retry or attempt >= self.s.retries:
                    raise
                wait = self.s.backoff_s * 2 ** attempt
            else:
                if fetched.status not in RETRY_STATUS or attempt >= self.s.retries:
                    return fetched
                wait = max(self.s.backoff_s * 2 ** attempt, _retry_after(fetched.header("retry-after")))
            time.sleep(min(wait, self.s.max_backoff_s))
            attempt += 1

    def fetch_chain(self, url: str, check_robots: bool = True, accept=None, record: bool = True) -> Outcome:
        """Fetch `url`, following redirects within scope and robots, up to the redirect cap."""
        outcome, seen = Outcome(), [url]
        while True:
            try:
                fetched = self.fetch_one(url, accept)
            except FetchError as exc:
                outcome.reason, outcome.detail = exc.reason, str(exc)
                return outcome
            if record:
                outcome.chain.append(fetched)
            location = fetched.header("location")
            if not (300 <= fetched.status < 400 and location):
                outcome.final = fetched
                return outcome
            target = canonical_url(location, url)
            if target is None or (check_robots and not self.in_scope(target)):
                outcome.reason, outcome.detail = "redirect_out_of_scope", f"{url} redirects to {location}"
                return outcome
            if target in seen:
                outcome.reason, outcome.detail = "redirect_loop", " -> ".join(seen + [target])
                return outcome
            if len(seen) > self.s.max_redirects:
                outcome.reason, outcome.detail = "too_many_redirects", f"over {self.s.max_redirects}: {seen[0]}"
                return outcome
            refused = self.disallowed(target) if check_robots else None
            if refused:
                outcome.reason, outcome.detail = refused
                return outcome
            seen.append(target)
            url = target

    # -- the crawl -----------------------------------------------------------------------

    def run(self) -> Iterator[Result]:
        path = tmp = None
        if self.s.warc_dir:
            from warcio.warcwriter import WARCWriter

            os.makedirs(self.s.warc_dir, exist_ok=True)
            tag = hashlib.blake2b(f"{self.s.name}\x00{self.host}".encode(), digest_size=4).hexdigest()
            path = os.path.join(self.s.warc_dir, f"{self.s.name}-{self.host}-{tag}.warc.gz")
            tmp = path + ".tmp"
            self._warc_file = open(tmp, "wb")
            self.warc = WARCWriter(self._warc_file, gzip=True)
            self.warc.write_record(self.warc.create_warcinfo_record(os.path.basename(path), {
                "software": self.s.user_agent, "format": "WARC File Format 1.0", "robots": "obey"}))
        try:
            yield from self._crawl()
        finally:
            if self.warc is not None:
                self._warc_file.close()
        if tmp:
            os.replace(tmp, path)

    def _crawl(self) -> Iterator[Result]:
        seen: set[str] = set(self.seeds)
        done: dict[str, str] = {}  # canonical URL -> the URL whose document holds it
        level, depth, pages = list(self.seeds), 0, 0
        accept = self.s.policy.accepts_type
        with ThreadPoolExecutor(self.s.max_concurrency) as pool:
            while level:
                todo = []
                for url in sorted(level):
                    refused = self.disallowed(url)
                    if refused:
                        self.drop(url, *refused)
                    elif pages >= self.s.max_pages:
                        self.drop(url, "page_cap", f"the crawl reached max_pages={self.s.max_pages}")
                    else:
                        todo.append(url)
                        pages += 1
                found: list[str] = []
                outcomes = list(zip(todo, pool.map(lambda u: self.fetch_page(u, accept), todo)))
                # pages that name another page as canonical go last, so the page they name wins
                for url, outcome in sorted(outcomes, key=lambda x: (x[1].names_another(), x[0])):
                    found += self.take(url, outcome, depth, done, seen)
                level = [u for u in found if u not in done]
                depth += 1
                yield Result(documents(self.docs), unreadable_table(self.bad))
                self.docs, self.bad = [], []

    def fetch_page(self, url: str, accept) -> Outcome:
        """Fetch `url` and read the links and directives of the page it gives (in a worker)."""
        outcome = self.fetch_chain(url, accept=accept)
        final = outcome.final
        if final is None:
            return outcome
        try:
            outcome.body = final.body()
        except FetchError as exc:
            outcome.final, outcome.reason, outcome.detail = None, exc.reason, str(exc)
            return outcome
        if media_type(final.header("content-type")) in HTML_TYPES and 200 <= final.status < 300:
            outcome.links, outcome.canonical, outcome.noindex, outcome.nofollow = _page_links(outcome.body, final)
        return outcome

    def take(self, url: str, outcome: Outcome, depth: int, done: dict, seen: set) -> list[str]:
        """Record one URL's outcome (and its responses in the WARC); return its page's new links."""
        for fetched in outcome.chain[:-1] if outcome.final is not None else outcome.chain:
            self.write_warc(fetched)
        if outcome.final is None:
            self.drop(url, outcome.reason, outcome.detail)
            return []
        final = outcome.final
        refused = self.decide(url, outcome, done, seen)
        offset = self.write_warc(final, refused)
        if refused:
            self.drop(url, *refused)
            if refused[0] != "robots_noindex":
                return []
        else:
            extra = {"warc_file": os.path.basename(self.warc_name()), "warc_offset": offset} if offset is not None else {}
            response = Response(final.url, final.date, _record_id(final), final.status, final.headers, outcome.body,
                                extra)
            try:
                self.docs.append(self.s.policy.document(response, "crawl"))
            except NoDocument as exc:
                self.drop(url, exc.reason, str(exc))
        if outcome.nofollow or depth >= self.s.max_depth:
            return []
        new = []
        for link in outcome.links:
            if link not in seen and self.in_scope(link):
                seen.add(link)
                new.append(link)
        return new

    def decide(self, url: str, outcome: Outcome, done: dict, seen: set) -> tuple[str, str] | None:
        """Whether the page the crawl reached is one it already has (by URL or by canonical) or
        one it may not index; marks its URLs as done otherwise."""
        final_url = canonical_url(outcome.final.url) or outcome.final.url
        if final_url in done:
            return "duplicate_url", f"{url} is {final_url}, crawled as {done[final_url]}"
        done[final_url] = url
        seen.add(final_url)
        canonical = outcome.canonical
        if canonical and canonical != final_url and self.in_scope(canonical):
            if canonical in done:
                return "duplicate_canonical", f"declares {canonical}, crawled as {done[canonical]}"
            done[canonical] = url
            seen.add(canonical)
        if outcome.noindex:
            return "robots_noindex", "<meta name=robots> or X-Robots-Tag says noindex"
        return None

    def drop(self, url: str, reason: str, detail: str) -> None:
        self.bad.append(unreadable("crawl", url, reason, detail, self.s.policy.kind))

    def warc_name(self) -> str:
        return self._warc_file.name[: -len(".tmp")]

    def write_warc(self, fetched: Fetched, refused: tuple[str, str] | None = None) -> int | None:
        """Append a response record; a response the crawl took no document from says why in an
        extension field, so re-reading the WARC gives the crawl's documents and no others."""
        if self.warc is None:
            return None
        import io

        from warcio.statusandheaders import StatusAndHeaders

        offset = self._warc_file.tell()
        http_headers = StatusAndHeaders(f"{fetched.status} {fetched.phrase}", list(fetched.headers),
                                        protocol="HTTP/1.1")
        fields = {"WARC-Date": fetched.date, "WARC-Record-ID": _record_id(fetched), "WARC-IP-Address": fetched.address}
        if refused:
            fields[DROPPED_FIELD] = f"{refused[0]} {refused[1]}"
        record = self.warc.create_warc_record(fetched.url, "response", payload=io.BytesIO(fetched.raw_body),
                                              http_headers=http_headers, warc_headers_dict=fields)
        self.warc.write_record(record)
        return offset


def _record_id(fetched: Fetched) -> str:
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{fetched.url} {fetched.date}')}>"


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


def _page_links(body: bytes, fetched: Fetched) -> tuple[list[str], str | None, bool, bool]:
    """(links in page order, the canonical URL, noindex, nofollow) of an HTML page."""
    from resiliparse.parse.html import HTMLTree

    from stages.ingest.html_text import decode_html

    html, _ = decode_html(body, fetched.header("content-type"))
    doc = HTMLTree.parse(html).document
    base = fetched.url
    node = doc.query_selector("base[href]")
    if node is not None:
        base = urljoin(base, node.getattr("href") or "")
    robots = doc.query_selector('meta[name="robots"]')
    directives = (robots.getattr("content") or "").lower() if robots is not None else ""
    header = (fetched.header("x-robots-tag") or "").lower()
    noindex = "noindex" in directives or "noindex" in header or "none" in directives
    nofollow = "nofollow" in directives or "nofollow" in header or "none" in directives
    canonical = None
    node = doc.query_selector('link[rel="canonical"]')
    if node is not None and node.getattr("href"):
        canonical = canonical_url(node.getattr("href"), base)
    links = []
    for a in doc.query_selector_all("a[href]"):
        if "nofollow" in (a.getattr("rel") or "").lower():
            continue
        url = canonical_url(a.getattr("href"), base)
        if url is not None:
            links.append(url)
    return links, canonical, noindex, nofollow
