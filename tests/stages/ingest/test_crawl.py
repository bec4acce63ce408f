"""The crawler against a real documentation tree on 127.0.0.1 (see conftest.py): robots, scope,
politeness, failures, redirects, caps, canonical URLs, address refusal, and WARC output that
re-ingests to the same documents."""

import json

import pytest

from stages.ingest.crawl import CrawlSource, canonical_url
from stages.ingest.robots import ALLOW_ALL, DISALLOW_ALL, parse_robots, rules_for_status
from stages.ingest.warc import WarcSource

PREFIXES = ["/start.html", "/manual/en/programs/", "/manual/en/mod/", "/slow/", "/fail/", "/loop/", "/moved.html",
            "/big.html", "/manual.pdf", "/copy/"]
DELAY = 0.1


def _path(url):
    return "/" + url.split("/", 3)[3]


@pytest.fixture(scope="module")
def crawled(shared_doc_site, tmp_path_factory):
    """One crawl of the site, shared by the tests that look at it from different sides."""
    site = shared_doc_site
    warc_dir = tmp_path_factory.mktemp("crawl") / "warc"
    source = CrawlSource("docs", [f"{site.base}/start.html"], path_prefixes=PREFIXES, max_depth=2,
                         delay_s=DELAY, max_concurrency=2, retries=1, backoff_s=0.1, timeout_s=1, max_page_mb=1,
                         allow_addresses=["loopback"], warc_dir=str(warc_dir))
    docs, dropped = source.read_all()
    return site, source, docs, dropped, warc_dir


def test_crawl_obeys_robots_scope_and_depth_and_survives_bad_pages(crawled):
    site, _, docs, dropped, _ = crawled
    kept = {_path(d["uri"]): d for d in docs}
    reasons = {_path(d["uri"]): d["reason"] for d in dropped}
    assert {"/start.html", "/manual/en/programs/index.html", "/manual/en/programs/ab.html",
            "/manual/en/programs/apachectl.html", "/manual/en/mod/mod_alias.html", "/slow/ok.html",
            "/fail/flaky.html"} <= set(kept)
    assert "benchmarking your Apache Hypertext" in kept["/manual/en/programs/ab.html"]["text"]
    assert kept["/start.html"]["source"] == "crawl" and kept["/start.html"]["kind"] == "doc"
    meta = json.loads(kept["/manual/en/programs/ab.html"]["meta"])
    assert meta["status"] == 200 and meta["http_headers"]["content-type"].startswith("text/html")
    assert meta["title"].startswith("ab - Apache HTTP server benchmarking tool") and meta["fetch_date"]
    assert reasons == {
        "/manual/en/mod/core.html": "robots_disallowed",
        "/slow/timeout.html": "fetch_error:timeout",
        "/fail/500.html": "http_status:500",
        "/fail/reset.html": "fetch_error:connection_reset",
        "/fail/missing.html": "http_status:404",
        "/loop/a.html": "redirect_loop",
        "/moved.html": "duplicate_url",  # redirects to the programs index, crawled already
        "/big.html": "too_large",
        "/manual.pdf": "wrong_content_type",
        "/copy/ab.html": "duplicate_canonical",  # names programs/ab.html, which wins
        # the programs index links into the module reference; robots.txt closes it
        **{p: "robots_disallowed" for p in reasons if p.startswith("/manual/en/mod/") and p != "/manual/en/mod/mod_alias.html"},
    }
    requested = site.paths()
    assert requested.count("/robots.txt") == 1
    assert not [p for p in requested if p.startswith("/manual/en/mod/") and p != "/manual/en/mod/mod_alias.html"]
    assert all(p == "/robots.txt" or any(p.startswith(x) for x in PREFIXES) for p in requested)
    assert "/outside/scope.html" not in requested
    # depth 2: the programs pages were read, their links (to other manual sections) were not followed
    assert not [p for p in requested if p.startswith("/manual/en/programs/") and p.count("/") > 4]
    assert requested.count("/fail/flaky.html") == 2 and requested.count("/fail/500.html") == 2
    assert requested.count("/slow/timeout.html") == 2  # retried once, then given up
    assert {e["agent"] for e in site.log} == {"sigma-crawler/0.1"}
    assert len(docs) == len({d["id"] for d in docs})


def test_crawl_keeps_to_the_per_host_delay(crawled):
    site = crawled[0]
    starts = sorted(e["start"] for e in site.log)
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]))
    assert len(starts) > 20
    # server-side times jitter by a few ms either way: the median and the span are robust to it
    assert gaps[len(gaps) // 2] >= DELAY * 0.9
    assert starts[-1] - starts[0] >= (len(starts) - 1) * DELAY - 0.05


def test_crawl_keeps_to_the_concurrency_cap(make_doc_site):
    site = make_doc_site(latency=0.15)  # pages slower than the delay: the cap is what binds
    source = CrawlSource("docs", [f"{site.base}/manual/en/programs/index.html"], path_prefixes=["/manual/en/programs/"],
                         max_pages=8, delay_s=0.01, max_concurrency=2, allow_addresses=["loopback"])
    docs, _ = source.read_all()
    assert len(docs) == 8
    assert max(e["in_flight"] for e in site.log) == 2


def test_crawl_warc_reingests_to_the_same_documents(crawled):
    _, _, docs, _, warc_dir = crawled
    files = list(warc_dir.glob("*.warc.gz"))
    assert len(files) == 1 and not list(warc_dir.glob("*.tmp"))
    again, dropped = WarcSource("again", [str(warc_dir)], kind="doc").read_all()

    def comparable(rows):
        return sorted((d["id"], d["uri"], d["kind"], d["text"], d["meta"]) for d in rows)

    assert comparable(again) == comparable(docs)
    # the responses that gave no document are in the WARC too, and say so again on re-reading
    assert {"http_status:500", "http_status:404", "http_status:302", "http_status:301", "duplicate_url",
            "duplicate_canonical"} <= {d["reason"] for d in dropped}


def test_private_loopback_and_link_local_addresses_are_refused_by_default(doc_site):
    source = CrawlSource("docs", [f"{doc_site.base}/start.html", "http://10.20.30.40/docs/",
                                  "http://169.254.169.254/latest/meta-data/", f"http://localhost:{doc_site.base.rsplit(':', 1)[1]}/"],
                         delay_s=0, retries=0, timeout_s=1)
    docs, dropped = source.read_all()
    assert docs == []
    reasons = {d["uri"]: d["reason"] for d in dropped}
    assert reasons[f"{doc_site.base}/start.html"] == "address_refused:loopback"
    assert reasons["http://10.20.30.40/docs/"] == "address_refused:private"
    assert reasons["http://169.254.169.254/latest/meta-data/"] == "address_refused:link_local"
    assert reasons[f"http://localhost:{doc_site.base.rsplit(':', 1)[1]}/"] == "address_refused:loopback"
    assert doc_site.log == []  # nothing was even asked


def test_page_cap(doc_site):
    source = CrawlSource("docs", [f"{doc_site.base}/manual/en/programs/index.html"],
                         path_prefixes=["/manual/en/programs/"], max_pages=3, delay_s=0, allow_addresses=["loopback"])
    docs, dropped = source.read_all()
    assert len(docs) == 3
    assert dropped and {d["reason"] for d in dropped} == {"page_cap"}
    assert len([p for p in doc_site.paths() if p != "/robots.txt"]) == 3


def test_robots_rules_follow_rfc_9309():
    text = """User-agent: *\nDisallow: /private/\nAllow: /private/public*.html$\nDisallow: /*.cgi\n
User-agent: sigma-crawler\nUser-agent: other\nDisallow: /only-us/\nCrawl-delay: 2\n"""
    mine = parse_robots(text, "sigma-crawler/0.1")
    assert not mine.allowed("http://h/only-us/x") and mine.allowed("http://h/private/x")  # its own group only
    assert mine.crawl_delay == 2
    anyone = parse_robots(text, "nobody")
    assert not anyone.allowed("http://h/private/secret.html")
    assert anyone.allowed("http://h/private/public-page.html")  # the longer rule wins
    assert not anyone.allowed("http://h/private/public-page.html?x=1")  # `$` anchors the end
    assert not anyone.allowed("http://h/bin/run.cgi?a=b") and anyone.allowed("http://h/robots.txt")
    tie = parse_robots("User-agent: *\nDisallow: /a\nAllow: /a\n", "x")
    assert tie.allowed("http://h/a/b")  # allow wins a tie
    assert parse_robots("User-agent: *\nDisallow:\n", "x").allowed("http://h/anything")
    assert rules_for_status(404, "", "x") is ALLOW_ALL and rules_for_status(503, "", "x") is DISALLOW_ALL


def test_canonical_urls():
    assert canonical_url("HTTP://Example.ORG:80/a/./b/../c.html#frag") == "http://example.org/a/c.html"
    assert canonical_url("https://example.org:443") == "https://example.org/"
    assert canonical_url("/x?b=2&a=1&utm_source=feed", "http://h:8080/y/") == "http://h:8080/x?a=1&b=2"
    assert canonical_url("http://h/%7euser/a%2fb") == "http://h/~user/a%2Fb"
    assert canonical_url("mailto:someone@example.org") is None and canonical_url("javascript:void(0)") is None
