"""WARC and WET files written by warcio from real HTML pages, whole and damaged."""

import io
import json

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from stages.ingest.warc import WarcSource

PAGES = ["getting-started.html", "caching.html", "configuring.html", "dso.html", "env.html", "filter.html",
         "handler.html", "logs.html", "mpm.html", "urlmapping.html"]


def _write(path, apache_manual, gzip=True, extra=()):
    """One response record per page; `extra` adds (url, status, content type, body) responses.
    Returns the offset of each record."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gzip)
    offsets = []
    items = [(f"https://httpd.example/docs/{p}", 200, "text/html; charset=utf-8",
              (apache_manual / "en" / p).read_bytes()) for p in PAGES] + list(extra)
    for url, status, content_type, body in items:
        headers = StatusAndHeaders(f"{status} X", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                                   ("Server", "Apache")], protocol="HTTP/1.1")
        offsets.append(out.tell())
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    path.write_bytes(out.getvalue())
    return offsets


def test_a_corrupt_gzip_record_in_the_middle_is_a_ledger_entry_and_the_rest_are_kept(tmp_path, apache_manual):
    path = tmp_path / "crawl.warc.gz"
    offsets = _write(path, apache_manual)
    data = bytearray(path.read_bytes())
    for i in range(offsets[4] + 300, offsets[4] + 340):  # inside the deflate stream of record 5
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    docs, dropped = WarcSource("w", [str(path)]).read_all()
    assert [d["uri"].rsplit("/", 1)[1] for d in docs] == PAGES[:4] + PAGES[5:]
    assert len(dropped) == 1 and dropped[0]["reason"] == "unreadable:corrupt_record"
    assert dropped[0]["uri"] == f"{path}#{offsets[4]}"
    doc = docs[0]
    meta = json.loads(doc["meta"])
    assert meta["url"] == "https://httpd.example/docs/getting-started.html" and meta["status"] == 200
    assert meta["http_headers"]["server"] == "Apache" and meta["fetch_date"].startswith("20")
    assert meta["warc_file"] == "crawl.warc.gz" and meta["warc_offset"] == offsets[0]
    assert meta["extractor"] == "resiliparse" and meta["title"].startswith("Getting Started")
    assert doc["kind"] == "web" and doc["source"] == "warc"
    assert "Apache HTTP Server" in doc["text"] and "<div" not in doc["text"]


def test_damaged_plain_warc_records(tmp_path, apache_manual):
    """Uncompressed: a garbled header, a flipped body byte (caught by the digest), a Content-Length
    that runs into the next record, and a truncated end."""
    path = tmp_path / "plain.warc"
    offsets = _write(path, apache_manual, gzip=False)
    data = bytearray(path.read_bytes())
    data[offsets[2]:offsets[2] + 8] = b"GARBAGE!"  # record 3: no WARC/1.x line
    body_start = data.index(b"\r\n\r\n", data.index(b"<html", offsets[5]))
    data[body_start - 10] ^= 0x01  # record 6: one bit of the page flipped
    header = data[offsets[7]:offsets[8]]
    length = int(header.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    data[offsets[7]:offsets[8]] = header.replace(f"Content-Length: {length}".encode(),
                                                 f"Content-Length: {length + 40}".encode(), 1)  # record 8
    data = data[: len(data) - 500]  # record 10 ends early
    path.write_bytes(bytes(data))
    docs, dropped = WarcSource("w", [str(path)]).read_all()
    assert [d["uri"].rsplit("/", 1)[1] for d in docs] == [PAGES[i] for i in (0, 1, 3, 4, 6, 8)]
    reasons = [(d["reason"], d["uri"].rsplit("/", 1)[-1]) for d in dropped]
    assert reasons == [("unreadable:corrupt_record", f"plain.warc#{offsets[2]}"),
                       ("unreadable:digest_mismatch", PAGES[5]),
                       ("unreadable:corrupt_record", f"plain.warc#{offsets[7]}"),
                       ("unreadable:truncated_record", f"plain.warc#{offsets[9]}")]


def test_responses_that_are_not_pages(tmp_path, apache_manual):
    png = (apache_manual / "images" / "feather.png").read_bytes()
    extra = [("https://httpd.example/missing", 404, "text/html", b"<html><body><p>Not Found</p></body></html>"),
             ("https://httpd.example/feather.png", 200, "image/png", png),
             ("https://httpd.example/empty.html", 200, "text/html", b"<html><body><script>x()</script></body></html>")]
    path = tmp_path / "mixed.warc.gz"
    _write(path, apache_manual, extra=extra)
    docs, dropped = WarcSource("w", [f"file://{tmp_path}/"]).read_all()  # a URI, as for object stores
    assert len(docs) == len(PAGES)
    assert {d["uri"]: d["reason"] for d in dropped} == {
        "https://httpd.example/missing": "http_status:404", "https://httpd.example/feather.png": "wrong_content_type",
        "https://httpd.example/empty.html": "no_text"}


def test_wet_conversion_records(tmp_path):
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    texts = {"https://a.example/": "Configuring the resolver\nEdit /etc/resolv.conf and restart the service.\n",
             "https://b.example/x": "Kernel parameters live in /etc/sysctl.d and are applied by sysctl --system.\n"}
    for url, text in texts.items():
        writer.write_record(writer.create_warc_record(
            url, "conversion", payload=io.BytesIO(text.encode()), warc_content_type="text/plain",
            warc_headers_dict={"WARC-Refers-To": "<urn:uuid:0>"}))
    (tmp_path / "x.warc.wet.gz").write_bytes(out.getvalue())
    docs, dropped = WarcSource("wet", [str(tmp_path / "x.warc.wet.gz")]).read_all()
    assert not dropped
    assert {d["uri"]: d["text"] for d in docs} == texts
    assert json.loads(docs[0]["meta"])["warc_type"] == "conversion"


@pytest.mark.parametrize("name", ["notes.txt", "x.warc.gz"])
def test_plan_lists_warc_files_only(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    plan = WarcSource("w", [str(tmp_path)]).plan()
    assert plan == ([[str(tmp_path / name)]] if name.endswith(".warc.gz") else [])


def test_quick_form_reads_warc_files():
    from jobs.curate import input_for_path

    assert input_for_path("crawl.warc.gz") == {"type": "warc", "paths": ["crawl.warc.gz"]}
    assert input_for_path("CC-MAIN-1.warc.wet.gz")["type"] == "warc"
