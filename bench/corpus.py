"""A synthetic-but-realistic corpus for scale runs: real system text (Loghub logs, NL2Bash pairs,
/usr/share/doc files, /etc configs) cut into documents and mutated (word edits at a small rate,
some exact copies), written as JSONL shards of `{"id", "text", "kind"}`.

    python bench/corpus.py --docs 1000000 --out corpus-1m
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def real_documents(limit_bytes: int = 64 << 20) -> list[tuple[str, str]]:
    """(kind, text) pairs from what this machine and ../shared/data hold."""
    docs = []
    for log in sorted(SHARED.glob("loghub/*/*_2k.log")):
        lines = log.read_text(errors="replace").splitlines()
        docs += [("log", "\n".join(lines[i:i + 20])) for i in range(0, len(lines), 20)]
    nl2bash = SHARED / "nl2bash" / "dev.jsonl"
    if nl2bash.exists():
        for line in nl2bash.read_text().splitlines():
            pair = json.loads(line)
            docs.append(("qa", f"{pair['nl']}\n$ {pair['cmd']}"))
    size = 0
    for root, kind in (("/usr/share/doc", "doc"), ("/etc", "config")):
        for directory, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                path = os.path.join(directory, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > 200_000 or name.endswith(".gz"):
                        continue
                    text = open(path, encoding="utf-8").read()
                except (OSError, UnicodeDecodeError):
                    continue
                if len(text) > 100 and size < limit_bytes:
                    docs.append((kind, text[:20_000]))
                    size += len(text[:20_000])
    return docs


def mutate(text: str, rng: random.Random, rate: float) -> str:
    words = text.split(" ")
    for _ in range(max(1, int(len(words) * rate))):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.4:
            words[i] = rng.choice(words)
        elif op < 0.7 and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(words))
    return " ".join(words)


def write_corpus(n: int, out: Path, seed: int = 0, shards: int = 8, rate: float = 0.02,
                 copies: float = 0.05) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    pool = real_documents()
    rng = random.Random(seed)
    files = [open(out / f"part-{i:03d}.jsonl", "w") for i in range(shards)]
    previous = []
    for i in range(n):
        if previous and rng.random() < copies:
            kind, text = rng.choice(previous)
        else:
            kind, text = pool[rng.randrange(len(pool))]
            text = mutate(text, rng, rate)
            if len(previous) < 10_000:
                previous.append((kind, text))
            else:
                previous[rng.randrange(len(previous))] = (kind, text)
        files[i % shards].write(json.dumps({"id": f"doc-{i:08d}", "text": text, "kind": kind}) + "\n")
    for f in files:
        f.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    write_corpus(args.docs, args.out, args.seed, args.shards)
    print(args.out)


if __name__ == "__main__":
    main()
