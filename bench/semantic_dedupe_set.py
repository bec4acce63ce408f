"""Build a labelled set of meaning-level duplicates of system text, the kind MinHash misses, with
hard negatives beside them. Deterministic: the same inputs give the same set.

Families (all from real data):
- `nl2bash`: NL2Bash's dev split (`../shared/data/nl2bash/dev.jsonl`): one document per
  (description, command) as a question and its answer. Descriptions of one command form a
  duplicate group (the same answer asked in other words, up to 4 a group); hard negatives are
  descriptions with most of their words in common with a group's but a different command (the
  command's tokens share at most a third), each a group of its own. Commands that differ only in
  quoting, spacing or an implied `.` count as one (`find -type f` is `find . -type f`).
- `config`: this machine's `key value` configuration files (comments dropped) and a copy of each
  with every value's numbers and booleans rewritten, as one template filled in twice; one file a
  folder, since sibling files (systemd units of one package) are often one template themselves.
  The other families' documents and the other configs are the negatives here.

Only duplicate pairs whose word 3-gram Jaccard is below `--max-jaccard` are kept (MinHash at its
default threshold cannot see them); the negatives are kept whatever their overlap.

    python bench/semantic_dedupe_set.py --out bench/data/semantic_dedupe_set.jsonl.gz
    python bench/semantic_dedupe_set.py --seed 17 --exclude bench/data/semantic_dedupe_set.jsonl.gz \
        --out bench/data/semantic_dedupe_set2.jsonl.gz    # a held-out set: none of the first's groups
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import hashlib
import json
import os
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NL2BASH = ROOT.parent / "shared" / "data" / "nl2bash" / "dev.jsonl"
CONFIG_GLOBS = ["/etc/*.conf", "/etc/*/*.conf", "/etc/*/*/*.conf", "/etc/ssh/*_config", "/usr/lib/systemd/*.conf",
                "/usr/lib/systemd/system/*.service"]
WORD = re.compile(r"\w+")
KEY_VALUE = re.compile(r"^(\s*[\w.\-/\[\]]+\s*[=:\s]\s*)(\S.*)$")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i: i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def qa(nl: str, cmd: str) -> str:
    return f"{nl}\n\n    $ {cmd}\n"


def command_key(cmd: str) -> str:
    """Spellings of one command that differ only in quoting, spacing or an implied `.` are one."""
    key = re.sub(r"[\'\"\u201c\u201d\u2018\u2019]", "", cmd)
    key = re.sub(r"(^|\s)\./(?=\s|$)", r"\1.", key)
    key = re.sub(r"^find\s+-", "find . -", key.strip())
    return " ".join(key.split())


def group_of(key: str) -> str:
    return "nl2bash/" + hashlib.sha1(key.encode()).hexdigest()[:12]


def nl2bash(path: Path, groups: int, max_jaccard: float, rng: random.Random, excluded: set[str]) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys_of_nl = collections.defaultdict(set)
    for r in rows:
        keys_of_nl[r["nl"].strip().lower()].add(command_key(r["cmd"]))
    # a request answered by two commands is one meaning with two answers: neither side is a negative
    rows = [r for r in rows if len(keys_of_nl[r["nl"].strip().lower()]) == 1]
    by_key: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if r["nl"].strip().lower() not in {x["nl"].strip().lower() for x in by_key[command_key(r["cmd"])]}:
            by_key[command_key(r["cmd"])].append(r)
    multi = sorted(c for c, rs in by_key.items() if len(rs) >= 2)
    rng.shuffle(multi)
    nl_words = {i: set(words(r["nl"])) for i, r in enumerate(rows)}
    key_tokens = {c: set(c.split()) for c in by_key}
    docs, used = [], {c for c in by_key if group_of(c) in excluded}  # nor as negatives
    for key in multi:
        if len([d for d in docs if d["edit"] == "paraphrase"]) >= groups:
            break
        if group_of(key) in excluded:
            continue
        texts = [qa(r["nl"], r["cmd"]) for r in by_key[key][:4]]
        kept = [texts[0]] + [t for t in texts[1:] if jaccard(shingles(texts[0]), shingles(t)) < max_jaccard]
        if len(kept) < 2:
            continue
        group = group_of(key)
        used.add(key)
        for k, text in enumerate(kept):
            docs.append({"id": f"{group}/{k}", "text": text, "kind": "qa", "group": group,
                         "edit": "" if k == 0 else "paraphrase", "family": "nl2bash"})
        # the hard negative: the description nearest in words whose command does something else
        mine = set(words(by_key[key][0]["nl"]))
        best, best_j = None, 0.0
        for i, r in enumerate(rows):
            other = command_key(r["cmd"])
            if other in used or jaccard(key_tokens[key], key_tokens[other]) > 1 / 3:
                continue
            j = jaccard(mine, nl_words[i])
            if j > best_j:
                best, best_j = i, j
        if best is not None and best_j >= 0.4:
            r = rows[best]
            used.add(command_key(r["cmd"]))
            neg = group_of(command_key(r["cmd"]))
            docs.append({"id": f"{neg}/neg", "text": qa(r["nl"], r["cmd"]), "kind": "qa", "group": neg,
                         "edit": "", "family": "nl2bash", "negative_of": group})
    return docs


def config_lines(path: str) -> list[str] | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", ";"))]
    return lines if 4 <= len(lines) <= 80 and sum(bool(KEY_VALUE.match(ln)) for ln in lines) >= 0.6 * len(lines) \
        else None


def revalue(value: str, rng: random.Random) -> str:
    """Another value of the same shape: its numbers and booleans replaced, its words kept."""
    bools = {"yes": "no", "no": "yes", "true": "false", "false": "true", "on": "off", "off": "on"}

    def one(m: re.Match) -> str:
        tok = m.group(0)
        if tok.lower() in bools:
            return bools[tok.lower()]
        if tok.isdigit():
            return str(rng.randint(1, 10 ** max(1, len(tok))))
        return re.sub(r"\d+", lambda d: str(rng.randint(0, 10 ** len(d.group(0)))), tok)
    return WORD.sub(one, value)


def configs(max_jaccard: float, rng: random.Random, limit: int, excluded: set[str]) -> list[dict]:
    files = sorted({os.path.realpath(p) for g in CONFIG_GLOBS for p in glob.glob(g) if os.path.isfile(p)})
    found, seen = {}, set()
    for p in files:
        lines = config_lines(p)
        if lines and tuple(lines) not in seen:  # one copy of files installed twice
            seen.add(tuple(lines))
            found[p] = lines
    docs, sources = [], sorted(found)
    rng.shuffle(sources)
    taken, folders = 0, set()
    for path in sources:
        if taken >= limit:
            break
        if os.path.dirname(path) in folders or "config" + path in excluded:  # siblings: often one template
            continue
        lines = found[path]
        original = "\n".join(lines) + "\n"
        filled = "\n".join(m.group(1) + revalue(m.group(2), rng) if (m := KEY_VALUE.match(ln)) else ln
                           for ln in lines) + "\n"
        if filled == original or jaccard(shingles(original, 2), shingles(filled, 2)) >= max_jaccard:
            continue
        group = "config" + path
        docs += [{"id": f"{group}#0", "text": original, "kind": "config", "group": group, "edit": "",
                  "family": "config"},
                 {"id": f"{group}#1", "text": filled, "kind": "config", "group": group, "edit": "revalue",
                  "family": "config"}]
        taken += 1
        folders.add(os.path.dirname(path))
    return docs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSONL (.gz to compress)")
    ap.add_argument("--nl2bash", default=str(NL2BASH))
    ap.add_argument("--groups", type=int, default=300, help="NL2Bash duplicate groups")
    ap.add_argument("--configs", type=int, default=60, help="configuration templates filled twice")
    ap.add_argument("--max-jaccard", type=float, default=0.5,
                    help="keep duplicate pairs under this word 3-gram Jaccard")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--exclude", nargs="*", default=[],
                    help="labelled sets whose groups (commands, config files) this one must not reuse")
    args = ap.parse_args()
    excluded = {json.loads(line)["group"] for path in args.exclude
                for line in gzip.open(path, "rt", encoding="utf-8") if line.strip()}
    docs = nl2bash(Path(args.nl2bash), args.groups, args.max_jaccard, random.Random(args.seed), excluded)
    docs += configs(args.max_jaccard, random.Random(args.seed + 1), args.configs, excluded)
    body = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs).encode()
    Path(args.out).write_bytes(gzip.compress(body, mtime=0) if args.out.endswith(".gz") else body)
    groups = collections.Counter(d["group"] for d in docs)
    dup_pairs = sum(n * (n - 1) // 2 for n in groups.values())
    negatives = sum("negative_of" in d for d in docs)
    print(f"{len(docs)} documents, {len(groups)} groups, {dup_pairs} duplicate pairs, {negatives} hard negatives "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
