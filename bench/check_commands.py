"""`sigma check-commands` on a labelled set built from real NL2Bash commands.

    python bench/check_commands.py                              # ../shared/data/nl2bash/dev.jsonl
    python bench/check_commands.py --data pairs.jsonl --out out/check-commands

The set: every distinct NL2Bash command as it is (`real`), and beside each a copy with one option
replaced by a letter that no man page of the command's programs ever writes as an option
(`planted`). The plant is made without the checker: an unquoted word of the command that looks
like an option (`-la`, `--color=auto`, `-name`) is picked by a seeded hash and replaced by `-X`,
where X is a letter that appears in no single-dash word (`-x`, `-xvf`, `-Olevel`) of the rendered
pages of any word of the command that names a page here. The set is written to `set.jsonl`,
checked by `sigma check-commands` (a subprocess, as a user runs it) into `checked.jsonl`, and
scored: the share of planted options caught, the share of real commands passed, and the real
ones that fail, by reason (a program not installed here, another system's options, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import string
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import xxhash

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NL2BASH = ROOT.parent / "shared" / "data" / "nl2bash" / "dev.jsonl"
OPTION_WORD = re.compile(r"^-{1,2}[A-Za-z][\w-]*(=\S*)?$")
SINGLE_DASH = re.compile(r"(?<![\w-])-([A-Za-z0-9]+)")
NAME_WORD = re.compile(r"[A-Za-z_][\w.+-]*")


def unquoted_words(command: str) -> list[tuple[int, int]]:
    """(start, end) of each whitespace-separated word that holds no quote, escape or expansion."""
    out, i, n = [], 0, len(command)
    quote = None
    start = None
    clean = True
    while i <= n:
        c = command[i] if i < n else " "
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote, clean = c, False
            start = i if start is None else start
        elif c in " \t\n;|&()<>`":
            if start is not None and clean:
                out.append((start, i))
            start, clean = None, True
        else:
            if c in "\\$":
                clean = False
            start = i if start is None else start
        i += 1
    return out


def page_letters(pages, name: str, cache: dict) -> set[str] | None:
    """Letters used in single-dash words of the page (and bash builtin entry) of `name`; None: no page."""
    if name not in cache:
        texts = [pages.render(root, path) for root, path in pages.index.get(name, [])[:1]]
        texts += [pages.builtins[name]] if name in pages.builtins else []
        texts = [t for t in texts if t]
        cache[name] = {c for t in texts for word in SINGLE_DASH.findall(t) for c in word} if texts else None
    return cache[name]


def plant(command: str, pages, cache: dict, seed: int = 0) -> tuple[str, str] | None:
    """The command with one option word replaced by `-X` (and X), or None where none can be planted."""
    words = [(s, e) for s, e in unquoted_words(command) if OPTION_WORD.match(command[s:e])]
    found = NAME_WORD.findall(command)
    names = set(found) | {f"{a}-{b}" for a, b in zip(found, found[1:])}  # `git diff`: the git-diff page
    used = [page_letters(pages, n, cache) for n in sorted(names)]
    used = [u for u in used if u is not None]
    if not words or not used:
        return None
    free = sorted(set(string.ascii_letters) - set().union(*used))
    if not free:
        return None
    h = xxhash.xxh64_intdigest(f"{seed}\x00{command}".encode())
    start, end = words[h % len(words)]
    letter = free[(h // len(words)) % len(free)]
    return command[:start] + f"-{letter}" + command[end:], f"-{letter}"


def build_set(data: Path, out: Path, seed: int) -> dict:
    from stages.verify.man_options import man_pages

    pages = man_pages()
    commands = list(dict.fromkeys(json.loads(line)["cmd"] for line in data.open() if line.strip()))
    cache: dict = {}
    rows, unplanted = [], 0
    for i, command in enumerate(commands):
        rows.append({"id": f"real-{i}", "command": command, "label": "real"})
        planted = plant(command, pages, cache, seed)
        if planted is None:
            unplanted += 1
        else:
            rows.append({"id": f"planted-{i}", "command": planted[0], "label": "planted", "planted": planted[1],
                         "original": command})
    (out / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"commands": len(commands), "planted": len(rows) - len(commands), "unplanted": unplanted}


def category(verdict: str) -> str:
    return verdict.split(":", 1)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=NL2BASH, help="JSON lines with `cmd` (NL2Bash's form)")
    parser.add_argument("--out", type=Path, default=Path("out/check-commands"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=3, help="examples printed per failure reason")
    args = parser.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"{args.data} is missing: NL2Bash's dev.jsonl is needed (../shared/data/nl2bash)")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = build_set(args.data, args.out, args.seed)
    built = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.sigma_command", "check-commands", str(args.out / "set.jsonl"),
                    "--output", str(args.out / "checked.jsonl")], check=True, cwd=ROOT)
    checked_s = time.perf_counter() - started
    rows = [json.loads(line) for line in (args.out / "checked.jsonl").open()]
    real = [r for r in rows if r["label"] == "real"]
    verdict_of = {r["command"]: r["verdict"] for r in real}
    planted = [r for r in rows if r["label"] == "planted"]
    clean = [r for r in planted if verdict_of[r["original"]] == "ok"]  # any problem found is the plant
    passed = [r for r in real if r["verdict"] == "ok"]
    installed = [r for r in real if not r["verdict"].startswith("unknown_program")]
    caught = [r for r in clean if r["verdict"] != "ok"]
    named = [r for r in clean if r["verdict"].endswith(f":{r['planted']}")]
    print(f"\n{summary['commands']:,} distinct NL2Bash commands; {summary['planted']:,} with a planted option "
          f"({summary['unplanted']:,} have no unquoted option word or no page here); set built in {built:.0f} s, "
          f"checked in {checked_s:.0f} s ({checked_s / len(rows) * 1000:.1f} ms a command)")
    print("\n| | commands | ok | not ok | share |")
    print("|---|---:|---:|---:|---:|")
    print(f"| real commands | {len(real):,} | {len(passed):,} | {len(real) - len(passed):,} | "
          f"passed {len(passed) / len(real):.3f} |")
    print(f"| real commands whose programs all have a page here | {len(installed):,} | {len(passed):,} | "
          f"{len(installed) - len(passed):,} | passed {len(passed) / len(installed):.3f} |")
    print(f"| planted, in a command that passes as it is | {len(clean):,} | {len(clean) - len(caught):,} | "
          f"{len(caught):,} | caught {len(caught) / len(clean):.3f} (the verdict names the planted option: "
          f"{len(named) / len(clean):.3f}) |")
    print(f"| planted, every command | {len(planted):,} | {sum(r['verdict'] == 'ok' for r in planted):,} | "
          f"{sum(r['verdict'] != 'ok' for r in planted):,} | caught {sum(r['verdict'] != 'ok' for r in planted) / len(planted):.3f} |")
    fails = Counter(category(r["verdict"]) for r in real if r["verdict"] != "ok")
    print("\nreal commands that fail, by reason: " + ", ".join(f"{k} {n}" for k, n in fails.most_common()))
    for kind in ("unknown_program", "unknown_option", "unparsable"):
        counts = Counter(r["verdict"] for r in real if category(r["verdict"]) == kind)
        print(f"\n{kind}: " + ", ".join(f"{v.split(':', 1)[-1]} {n}" for v, n in counts.most_common(30)))
        for verdict, _ in counts.most_common(args.examples if kind != "unknown_program" else 0):
            example = next(r for r in real if r["verdict"] == verdict)
            print(f"    {verdict}: {example['command'][:140]}")
    missed = [r for r in clean if r["verdict"] == "ok"]
    print(f"\nplanted options missed: {len(missed)}")
    for r in missed[: args.examples * 5]:
        print(f"    {r['planted']}: {r['command'][:140]}")
    other = [r for r in caught if r not in named]
    print(f"caught for another reason than the planted option: {len(other)}: "
          + ", ".join(f"{r['verdict']}" for r in other[:10]))


if __name__ == "__main__":
    main()
