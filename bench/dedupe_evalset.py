"""Build a labelled near-duplicate evaluation set from this machine's real documents.

Sources (all real): man pages (English sections 1, 5, 8), generated `gcloud` reference pages,
Linux kernel documentation (`linux-doc-6.1`), configuration files (`/etc`, systemd units) and
loghub logs (50-line chunks). Every source document gets edited copies with controlled edits at
known rates; the source and its copies form one duplicate group. Hard negatives sit beside them
as groups of their own: sibling `gcloud` commands (same command group, shared boilerplate),
kernel documents from the same directory, other units and configs of the same family, log chunks
of the same system with different events (loghub's ground-truth event ids), and translations.

Edits (seeded per document, rates as fractions):
  word_sub / word_del / word_ins r   replace / delete / insert r of the words
  line_move f                        move f of the lines elsewhere
  line_del / line_dup f              delete f of the lines / repeat f of them elsewhere
  values k                           change k values in a config (numbers, yes/no, on/off)
  revalue                            logs: new timestamps, ids, numbers, hex and addresses

The output is JSONL, one document a line: id, text, kind, group (duplicate group), edit (the ops
applied; "" for a source), split (dev or test, by group family, so near relatives never straddle).

    python bench/dedupe_evalset.py --out eval.jsonl [--linuxdoc DIR] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.ingest.man import ManSource  # noqa: E402

SPLIT_WORDS = re.compile(r"(\s+)")
NUMBER = re.compile(r"\d+")
VALUES = re.compile(r"0x[0-9a-fA-F]+|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b|\d+")  # hex, ids, numbers
BOOL_WORDS = {"yes": "no", "no": "yes", "true": "false", "false": "true", "on": "off", "off": "on"}
WORD_OPS = ("word_sub", "word_del", "word_ins")
LINE_OPS = ("line_move", "line_del", "line_dup")
WORD_RATES = (0.005, 0.01, 0.02)
LINE_RATES = (0.02, 0.05, 0.1)


# -- edits -------------------------------------------------------------------------------------


def edit_words(text: str, op: str, rate: float, rng: random.Random) -> str:
    parts = SPLIT_WORDS.split(text)
    words = [i for i in range(0, len(parts), 2) if parts[i]]
    if not words:
        return text
    for i in rng.sample(words, max(1, round(rate * len(words)))):
        donor = parts[rng.choice(words)] or "x"
        if op == "word_sub":
            parts[i] = donor
        elif op == "word_del":
            parts[i] = ""
        else:
            parts[i] = parts[i] + " " + donor
    return "".join(parts)


def edit_lines(text: str, op: str, rate: float, rng: random.Random) -> str:
    lines = text.split("\n")
    full = [i for i, line in enumerate(lines) if line.strip()]
    if len(full) < 2:
        return text
    chosen = set(rng.sample(full, max(1, round(rate * len(full)))))
    if op == "line_del":
        return "\n".join(line for i, line in enumerate(lines) if i not in chosen)
    kept = [line for i, line in enumerate(lines) if op == "line_dup" or i not in chosen]
    for i in sorted(chosen):
        kept.insert(rng.randrange(len(kept) + 1), lines[i])
    return "\n".join(kept)


def edit_values(text: str, k: int, rng: random.Random) -> str:
    """Change k values in a config: a number, or a yes/no-like word after `=`, `:` or a space."""
    spots = [m for m in re.finditer(r"(?m)^(\s*[\w.\-/]+\s*(?:=|:|\s)\s*)(\S+)", text)
             if not m.group(1).lstrip().startswith(("#", ";"))]
    if not spots:
        return text
    out, last = [], 0
    for m in sorted(rng.sample(spots, min(k, len(spots))), key=lambda m: m.start()):
        value = m.group(2)
        if NUMBER.fullmatch(value):
            new = str(int(value) + rng.randint(1, 9))
        elif value.lower() in BOOL_WORDS:
            new = BOOL_WORDS[value.lower()]
        else:
            new = value + rng.choice(["-alt", "2", ".bak", "_new"])
        out += [text[last: m.start(2)], new]
        last = m.end(2)
    return "".join(out) + text[last:]


def revalue_log(text: str, rng: random.Random) -> str:
    """The same events at another time with other ids: every number, hex number and hex id
    redrawn, of the same length and form."""
    def redraw(m: re.Match) -> str:
        v = m.group(0)
        if v.startswith("0x"):
            return "0x" + "".join(rng.choice("0123456789abcdef") for _ in v[2:])
        return "".join(rng.choice("0123456789" if v.isdigit() else "0123456789abcdef") for _ in v)

    return VALUES.sub(redraw, text)


def variant(text: str, kind: str, k: int, seed: str) -> tuple[str, str]:
    """The k-th edited copy of a document: (text, ops)."""
    rng = random.Random(zlib.crc32(f"{seed}/{k}".encode()))
    ops = []
    if kind == "log":
        text, ops = revalue_log(text, rng), ["revalue"]
        if rng.random() < 0.5:
            op, rate = rng.choice(LINE_OPS), rng.choice(LINE_RATES)
            text, ops = edit_lines(text, op, rate, rng), ops + [f"{op} {rate}"]
        return text, "; ".join(ops)
    if kind == "config":
        n = rng.choice([1, 2, 3])
        text, ops = edit_values(text, n, rng), [f"values {n}"]
        if rng.random() < 0.3:
            text, ops = edit_lines(text, "line_move", 0.05, rng), ops + ["line_move 0.05"]
        return text, "; ".join(ops)
    for _ in range(rng.choice([1, 1, 2])):
        if rng.random() < 0.6:
            op, rate = rng.choice(WORD_OPS), rng.choice(WORD_RATES)
            text = edit_words(text, op, rate, rng)
        else:
            op, rate = rng.choice(LINE_OPS), rng.choice(LINE_RATES)
            text = edit_lines(text, op, rate, rng)
        ops.append(f"{op} {rate}")
    return text, "; ".join(ops)


# -- real documents ----------------------------------------------------------------------------


def render_man(paths: list[str], man_root: str) -> dict[str, str]:
    source = ManSource("eval", roots=[man_root])
    out = {}
    for result in source.read([[man_root, "", p] for p in paths]):
        for row in result.kept.select(["uri", "text"]).to_pylist():
            out[row["uri"][len("file://"):]] = row["text"]
    return out


def man_name(path: str, man_root: str) -> str:
    return os.path.relpath(path, man_root).removesuffix(".gz")


def pick(items: list, n: int, rng: random.Random) -> list:
    items = sorted(items)
    return rng.sample(items, min(n, len(items)))


def man_sources(man_root: str, n: int, rng: random.Random):
    paths = []
    for sec in ("man1", "man5", "man8"):
        d = os.path.join(man_root, sec)
        paths += [os.path.join(d, f) for f in sorted(os.listdir(d)) if not f.startswith("gcloud")
                  and not os.path.islink(os.path.join(d, f)) and 1500 < os.path.getsize(os.path.join(d, f)) < 12000]
    chosen = pick(paths, n, rng)
    texts = render_man(chosen, man_root)
    for p in chosen:
        if p in texts:
            name = man_name(p, man_root)
            yield {"family": f"man:{name}", "name": name, "text": texts[p], "kind": "doc"}


def translation_sources(man_root: str, n: int, rng: random.Random):
    """An English page and its German or French translation: different documents."""
    pairs = []
    for lang in ("de", "fr"):
        d = os.path.join(man_root, lang, "man1")
        if os.path.isdir(d):
            pairs += [(os.path.join(man_root, "man1", f), os.path.join(d, f)) for f in sorted(os.listdir(d))
                      if os.path.isfile(os.path.join(man_root, "man1", f)) and not os.path.islink(os.path.join(d, f))
                      and os.path.getsize(os.path.join(d, f)) < 12000]
    chosen = pick(pairs, n, rng)
    texts = render_man([p for pair in chosen for p in pair], man_root)
    for en, tr in chosen:
        if en in texts and tr in texts:
            family = f"translation:{man_name(en, man_root)}"
            yield {"family": family, "name": man_name(en, man_root), "text": texts[en], "kind": "doc"}
            yield {"family": family, "name": man_name(tr, man_root), "text": texts[tr], "kind": "doc"}


def gcloud_sources(man_root: str, families: int, siblings: int, rng: random.Random):
    """Sibling commands of one GA command group (no alpha/beta tracks: those repeat a command)."""
    d = os.path.join(man_root, "man1")
    pages = [f for f in sorted(os.listdir(d)) if f.startswith("gcloud_") and "_alpha_" not in f
             and "_beta_" not in f and not os.path.islink(os.path.join(d, f))]
    groups: dict[str, list[str]] = {}
    for f in pages:
        groups.setdefault(f.rsplit("_", 1)[0], []).append(f)
    big = [g for g, members in groups.items() if len(members) >= siblings]
    for group in pick(big, families, rng):
        chosen = [os.path.join(d, f) for f in pick(groups[group], siblings, rng)]
        texts = render_man(chosen, man_root)
        for p in chosen:
            if p in texts:
                yield {"family": f"gcloud:{group}", "name": man_name(p, man_root), "text": texts[p], "kind": "doc"}


def linuxdoc_sources(docroot: str, dirs: int, per_dir: int, rng: random.Random):
    by_dir: dict[str, list[str]] = {}
    for p in glob.glob(os.path.join(docroot, "**", "*.rst.gz"), recursive=True):
        size = os.path.getsize(p)
        if 1500 < size < 9000:
            by_dir.setdefault(os.path.dirname(p), []).append(p)
    for d in pick([d for d, fs in by_dir.items() if len(fs) >= per_dir], dirs, rng):
        for p in pick(by_dir[d], per_dir, rng):
            text = gzip.decompress(Path(p).read_bytes()).decode("utf-8", "replace")
            name = "linux-doc/" + os.path.relpath(p, docroot).removesuffix(".gz")
            yield {"family": f"linux-doc:{os.path.relpath(d, docroot)}", "name": name, "text": text, "kind": "doc"}


def config_sources(n: int, rng: random.Random):
    files = [p for p in glob.glob("/etc/**/*.conf", recursive=True) if os.path.isfile(p) and not os.path.islink(p)]
    files += glob.glob("/lib/systemd/system/*.service")
    files = [p for p in files if os.access(p, os.R_OK) and 400 < os.path.getsize(p) < 20000]
    for p in pick(files, n, rng):
        try:
            text = Path(p).read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        family = f"config:systemd:{zlib.crc32(p.encode()) % 8}" if p.endswith(".service") else f"config:{p}"
        yield {"family": family, "name": p.lstrip("/"), "text": text, "kind": "config"}


def log_sources(loghub: str, per_system: int, rng: random.Random):
    """Chunks of 50 lines whose event-id sets (loghub's ground truth) overlap little."""
    for log in sorted(glob.glob(os.path.join(loghub, "*", "*_2k.log"))):
        system = os.path.basename(os.path.dirname(log))
        lines = Path(log).read_text("utf-8", "replace").splitlines()
        with open(log + "_structured.csv", encoding="utf-8", errors="replace") as f:
            events = [row["EventId"] for row in csv.DictReader(f)]
        chunks = [(k, set(events[k: k + 50])) for k in range(0, min(len(lines), len(events)), 50)]
        chosen: list[tuple[int, set]] = []
        for k, ev in rng.sample(chunks, len(chunks)):
            if all(len(ev & other) / len(ev | other) < 0.3 for _, other in chosen):
                chosen.append((k, ev))
            if len(chosen) == per_system:
                break
        for k, _ in chosen:
            yield {"family": f"log:{system}", "name": f"loghub/{system}/{k // 50:03d}",
                   "text": "\n".join(lines[k: k + 50]) + "\n", "kind": "log"}


def ensure_linuxdoc(work: str) -> str | None:
    found = glob.glob(os.path.join(work, "usr/share/doc/linux-doc-*/Documentation"))
    if found:
        return found[0]
    os.makedirs(work, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", "linux-doc-6.1"], cwd=work, check=True, capture_output=True)
        deb = sorted(glob.glob(os.path.join(work, "linux-doc-6.1_*.deb")))[-1]
        subprocess.run(["dpkg", "-x", deb, work], check=True)
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        print(f"kernel docs unavailable ({exc}); building without them", file=sys.stderr)
        return None
    return glob.glob(os.path.join(work, "usr/share/doc/linux-doc-*/Documentation"))[0]


def build(args) -> list[dict]:
    rng = random.Random(args.seed)
    s = args.scale
    sources = []
    sources += list(man_sources(args.man_root, round(120 * s), rng))
    sources += list(translation_sources(args.man_root, round(16 * s), rng))
    sources += list(gcloud_sources(args.man_root, round(40 * s), 3, rng))
    docroot = args.linuxdoc or ensure_linuxdoc(os.path.join(tempfile.gettempdir(), "sigma-linuxdoc"))
    if docroot:
        sources += list(linuxdoc_sources(docroot, round(24 * s), 2, rng))
    sources += list(config_sources(round(60 * s), rng))
    sources += list(log_sources(args.loghub, 2, rng))
    docs, seen = [], set()
    for src in sources:
        text_key = " ".join(src["text"].split())
        if src["name"] in seen or text_key in seen:  # picked twice, or a page that is a copy of another
            continue
        seen.update((src["name"], text_key))
        family_hash = zlib.crc32(src["family"].encode())
        split = "test" if family_hash % 2 else "dev"
        group = src["name"]
        docs.append({"id": group, "text": src["text"], "kind": src["kind"], "group": group, "edit": "",
                     "split": split})
        copies = 1 if src["family"].startswith("translation:") else 2
        for k in range(1, copies + 1):
            text, ops = variant(src["text"], src["kind"], k, f"{args.seed}/{group}")
            docs.append({"id": f"{group}#v{k}", "text": text, "kind": src["kind"], "group": group, "edit": ops,
                         "split": split})
    return docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output JSONL (.gz to compress)")
    ap.add_argument("--man-root", default="/usr/share/man")
    ap.add_argument("--loghub", default=str(ROOT.parent / "shared" / "data" / "loghub"))
    ap.add_argument("--linuxdoc", help="extracted Documentation/ of linux-doc-6.1 (default: download it)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the number of sources")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--split", choices=["dev", "test", "all"], default="all")
    args = ap.parse_args()
    docs = [d for d in build(args) if args.split == "all" or d["split"] == args.split]
    opener = gzip.open if args.out.endswith(".gz") else open
    with opener(args.out, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    groups = {d["group"] for d in docs}
    print(f"{len(docs)} documents in {len(groups)} groups -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
