"""Main-text extraction from HTML: resiliparse against trafilatura on the same real pages.

    python bench/html_extract.py                                  # the Apache HTTP Server manual
    python bench/html_extract.py --root /usr/share/doc/apache2-doc/manual/en --repeat 3

Pages: every HTML page of an installed manual (Debian's `apache2-doc`). Reference text: the page's
`#page-content` block without the language bars, the quick-view sidebar and the "top" links,
which is what a reader would call the page's main text. Quality is bag-of-words precision, recall
and F1 of the extracted text against that reference (the token-level measure of the
article-extraction benchmarks, e.g. Barbaresi's trafilatura evaluation). Speed is pages per second
in one process, the best of `--repeat` runs. Prints a table; the results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.ingest.html_text import EXTRACTORS, extract  # noqa: E402

DEFAULT_ROOT = Path("/usr/share/doc/apache2-doc/manual/en")
BOILERPLATE = ("toplang", "bottomlang", "top", "lang-toggle")
WORD = re.compile(r"\w+", re.U)


def reference_text(html: str) -> str | None:
    import lxml.html

    tree = lxml.html.fromstring(html)
    content = tree.xpath('//div[@id="page-content"]')
    if not content:
        return None
    node = content[0]
    for bad in node.xpath('.//div[@id="quickview"] | .//script | .//style | ' +
                          " | ".join(f'.//*[contains(concat(" ", @class, " "), " {c} ")]' for c in BOILERPLATE)):
        bad.drop_tree()
    return node.text_content()


def f1(extracted: str, reference: str) -> tuple[float, float, float]:
    got, want = Counter(WORD.findall(extracted.lower())), Counter(WORD.findall(reference.lower()))
    common = sum((got & want).values())
    p = common / max(1, sum(got.values()))
    r = common / max(1, sum(want.values()))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pages = []
    for path in sorted(args.root.rglob("*.html")):
        html = path.read_text(encoding="utf-8", errors="replace")
        ref = reference_text(html)
        if ref and len(WORD.findall(ref)) >= 20:
            pages.append((path, html, ref))
    if not pages:
        sys.exit(f"no pages with a #page-content block under {args.root} (apt-get install apache2-doc)")
    print(f"{len(pages)} pages under {args.root}, {sum(len(h) for _, h, _ in pages) / 1e6:.1f} MB of HTML")
    rows = {}
    for name in EXTRACTORS:
        times, texts = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            texts = [extract(html, name).text for _, html, _ in pages]
            times.append(time.perf_counter() - started)
        scores = [f1(text, ref) for text, (_, _, ref) in zip(texts, pages)]
        rows[name] = {
            "pages_s": len(pages) / min(times),
            "precision": statistics.mean(s[0] for s in scores), "recall": statistics.mean(s[1] for s in scores),
            "f1": statistics.mean(s[2] for s in scores), "median_f1": statistics.median(s[2] for s in scores),
            "empty": sum(not t.strip() for t in texts),
        }
    base = rows["trafilatura"]["pages_s"]
    print(f"{'extractor':<12} {'pages/s':>9} {'x trafilatura':>14} {'precision':>10} {'recall':>8} {'F1':>7} "
          f"{'median F1':>10} {'empty':>6}")
    for name, r in rows.items():
        print(f"{name:<12} {r['pages_s']:>9.1f} {r['pages_s'] / base:>14.2f} {r['precision']:>10.3f} "
              f"{r['recall']:>8.3f} {r['f1']:>7.3f} {r['median_f1']:>10.3f} {r['empty']:>6}")


if __name__ == "__main__":
    main()
