"""The synthesis checks on labelled sets made here: real items beside planted wrong ones.

    python bench/synthesis_checks.py                  # all three sets; ../shared/data/loghub for logs
    python bench/synthesis_checks.py --only config

- config (`annotate_config`, `stages/verify/config_keys.py`): this machine's configuration files
  (`/etc`, systemd units). Real items name a setting of the file, read without the checker: the
  first name on a line that is not a comment (`Port`, `[mysqld]`, `worker_connections`) or an XML
  tag; planted items name a setting of another file that the file's text never contains, a value
  of the file named as if it were a setting (`yes`, `bash`), or a real setting misspelt by one
  letter (`PermitRootLogins`).
- log (`explain_log`, `stages/verify/log_values.py`): excerpts of 8 lines of Loghub's 12 systems.
  Real sentences name the excerpt's component and a value from its lines (an address, an id, a
  number of 3 digits or more) or no value at all; planted ones put a component or a value of
  another system, absent from the excerpt, in the same sentence, or a value of the excerpt with
  its last digit changed (`10.251.73.221` for `10.251.73.220`).
- man (`man_qa`, `stages/verify/man_answers.py`): this machine's section 1 pages. Real answers
  name an option from the page's option list, bare and in a command; planted ones replace it with
  a letter no single-dash word of the page uses, or a long option the page never writes.

Each set prints items, planted, and the check's precision and recall on the planted items (an
item flagged is a positive), with the real items it flagged and the planted ones it missed.
"""

from __future__ import annotations

import csv
import random
import re
import string
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
CONFIG_GLOBS = ["/etc/**/*.conf", "/etc/**/*.cnf", "/etc/**/*_config", "/etc/**/*.ini", "/etc/**/*.json",
                "/etc/**/*.yaml", "/etc/**/*.yml", "/etc/**/*.toml", "/lib/systemd/system/*.service"]
LINE_NAME = re.compile(r"^\s*\[?\s*([A-Za-z_][\w.\-]*)")
XML_TAG = re.compile(r"<([A-Za-z_][\w\-]*)[\s>/]")
SINGLE_DASH = re.compile(r"(?<![\w-])-([A-Za-z0-9]+)")


def score(name: str, items: list[tuple[bool, bool, str]], examples: int) -> None:
    """items: (planted, flagged, description)."""
    planted = [i for i in items if i[0]]
    flagged = [i for i in items if i[1]]
    hits = [i for i in planted if i[1]]
    precision = len(hits) / len(flagged) if flagged else 1.0
    recall = len(hits) / len(planted) if planted else 1.0
    print(f"\n{name}: {len(items):,} items, {len(planted):,} planted; flagged {len(flagged):,}: "
          f"precision {precision:.3f}, recall {recall:.3f}")
    print(f"| {name} | {len(items) - len(planted):,} | {len(planted):,} | {precision:.3f} | {recall:.3f} |")
    for label, group in (("real, flagged", [i for i in items if not i[0] and i[1]]),
                         ("planted, missed", [i for i in planted if not i[1]])):
        print(f"  {label}: {len(group)}")
        for _, _, text in group[:examples]:
            print(f"    {text[:160]}")


def config_set(rng: random.Random, per_file: int) -> list[tuple[bool, bool, str]]:
    from stages.verify.config_keys import unknown_setting

    files = []
    for pattern in CONFIG_GLOBS:
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError):
                continue
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", ";", "//", "!"))]
            names = XML_TAG.findall(text) if text.lstrip().startswith("<") else [
                m.group(1) for m in map(LINE_NAME.match, lines) if m]
            names = list(dict.fromkeys(n for n in names if len(n) > 1))
            if names:
                files.append((str(path), text, names))
    items = []
    for i, (path, text, names) in enumerate(files):
        folded, lowered = text.lower(), {n.lower() for n in names}
        others = [n for j, (_, _, other) in enumerate(files) if j != i for n in other[:5]]
        wrong = [n for n in dict.fromkeys(others) if n.lower() not in folded]
        values = [w for w in dict.fromkeys(re.findall(r"[=\s]([A-Za-z][A-Za-z_]{2,})\b", "\n".join(
            ln for ln in text.splitlines() if not ln.lstrip().startswith(("#", ";", "<")))))
                  if w.lower() not in lowered]
        misspelt = [f"{n}s" if not n.endswith("s") else n[:-1] for n in names if len(n) > 3]
        misspelt = [n for n in misspelt if n.lower() not in lowered]
        for name in rng.sample(names, min(per_file, len(names))):
            items.append((False, unknown_setting([name], path, text) is not None, f"{path}: {name}"))
        for group in (wrong, values, misspelt):
            for name in rng.sample(group, min(per_file, len(group))):
                items.append((True, unknown_setting([name], path, text) is not None, f"{path}: {name}"))
    print(f"config: {len(files)} files with settings", flush=True)
    return items


def _values(text: str) -> list[str]:
    from stages.variable_mask import mask

    words = [w.strip("()[]{},;:.'\"/") for w in text.split()]
    return [w for w in words if len(w) >= 3 and mask(w) != w and not re.fullmatch(r"\d{1,2}", w)]


def log_set(rng: random.Random, excerpts: int) -> list[tuple[bool, bool, str]]:
    from stages.verify.log_values import unknown_mention

    systems = {}
    for folder in sorted(LOGHUB.iterdir()) if LOGHUB.is_dir() else []:
        found, log = list(folder.glob("*_structured.csv")), folder / f"{folder.name}_2k.log"
        if found and log.exists():
            with found[0].open(newline="") as f:
                systems[folder.name] = (list(csv.DictReader(f)), log.read_text(errors="replace").splitlines())
    if not systems:
        raise SystemExit(f"no Loghub data under {LOGHUB}")
    items = []
    for name, (rows, log_lines) in systems.items():
        other_rows = [r for other, (rs, _) in systems.items() if other != name for r in rs[:200]]
        for _ in range(excerpts):
            start = rng.randrange(0, min(len(rows), len(log_lines)) - 8)
            lines = rows[start : start + 8]
            raw = "\n".join(log_lines[start : start + 8])  # the excerpt as the model sees it
            component = next((r.get("Component", "") for r in lines if r.get("Component")), "")
            values = _values("\n".join(r["Content"] for r in lines))
            foreign_values = [v for r in rng.sample(other_rows, 40) for v in _values(r["Content"]) if v not in raw]
            foreign_components = [r.get("Component", "") for r in rng.sample(other_rows, 40)
                                  if r.get("Component") and r["Component"].lower() not in raw.lower()]
            real = ["Nothing in these lines points to a failure; the service carried on as usual."]
            if component:
                real.append(f"These messages were written by {component}, reporting the normal course of its work.")
            if values:
                real.append(f"The line with {rng.choice(values)} shows the event the rest repeat.")
            for sentence in real:
                items.append((False, unknown_mention(sentence, raw) is not None, f"{name}: {sentence}"))
            if foreign_components and component:
                sentence = f"These messages were written by {rng.choice(foreign_components)}, reporting the normal course of its work."
                items.append((True, unknown_mention(sentence, raw) is not None, f"{name}: {sentence}"))
            if foreign_values:
                sentence = f"The line with {rng.choice(foreign_values)} shows the event the rest repeat."
                items.append((True, unknown_mention(sentence, raw) is not None, f"{name}: {sentence}"))
            near = [v[:-1] + str((int(v[-1]) + 1) % 10) for v in values if v[-1].isdigit()]
            near = [v for v in near if v not in raw]
            if near:
                sentence = f"The line with {rng.choice(near)} shows the event the rest repeat."
                items.append((True, unknown_mention(sentence, raw) is not None, f"{name}: {sentence}"))
    return items


def man_set(rng: random.Random, pages: int) -> list[tuple[bool, bool, str]]:
    from stages.verify.commands import CommandChecker
    from stages.verify.man_answers import unknown_in_answer
    from stages.verify.man_options import head_options, list_heads, man_pages, options_of_text

    manpages = man_pages()
    checker = CommandChecker(pages=manpages)
    names = sorted(n for n, found in manpages.index.items() if any("/man1/" in p for _, p in found) and
                   not n.startswith("gcloud"))
    items = []
    for name in rng.sample(names, min(pages, len(names))):
        text = manpages.render(*manpages.index[name][0])
        if not text:
            continue
        options = options_of_text(name, text)
        listed = [o for h in list_heads(text) for o, kind in head_options(h).items() if kind == "none"]
        if not listed:
            continue
        used = {c for w in SINGLE_DASH.findall(text) for c in w}
        free = sorted(set(string.ascii_letters) - used)
        option = rng.choice(listed)
        real = [f"Use {option} for that.", f"For example: `{name} {option} FILE`."]
        wrong = []
        if free:
            letter = f"-{rng.choice(free)}"
            wrong += [f"Use {letter} for that.", f"For example: `{name} {letter} FILE`."]
        long_word = f"--{rng.choice(['recursive-all', 'colour-mode', 'no-verify-sums', 'fast-path', 'dry-runs'])}"
        if long_word not in text:
            wrong.append(f"Use {long_word} for that.")
        longs = [o for o in options.arity if o.startswith("--") and len(o) > 4]
        if longs:  # a real long option misspelt: one letter more
            misspelt = rng.choice(longs) + "x"
            if options.long_option(misspelt) is None or misspelt not in text:
                wrong.append(f"Use {misspelt} for that.")
        for planted, group in ((False, real), (True, wrong)):
            for answer in group:
                items.append((planted, unknown_in_answer(answer, name, options, checker) is not None, f"{name}: {answer}"))
    return items


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["config", "log", "man"], action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-file", type=int, default=3, help="config: real and planted items per file")
    parser.add_argument("--excerpts", type=int, default=25, help="log: excerpts per Loghub system")
    parser.add_argument("--pages", type=int, default=300, help="man: pages sampled")
    parser.add_argument("--examples", type=int, default=8)
    args = parser.parse_args(argv)
    wanted = args.only or ["config", "log", "man"]
    print("| check | real items | planted items | precision | recall |\n|---|---:|---:|---:|---:|")
    for name, build in (("config", lambda r: config_set(r, args.per_file)), ("log", lambda r: log_set(r, args.excerpts)),
                        ("man", lambda r: man_set(r, args.pages))):
        if name in wanted:
            started = time.perf_counter()
            items = build(random.Random(args.seed))
            score(name, items, args.examples)
            print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
