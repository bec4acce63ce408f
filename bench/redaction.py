"""Redaction coverage on labelled sets written from gitleaks' and detect-secrets' published
formats (`bench/redaction_set.py`; committed: `bench/data/redaction_seed1.jsonl.gz`, the set the
rules were developed on, and `redaction_seed2.jsonl.gz`, held out), against detect-secrets (the
peer) in the same run, and against an earlier revision of the redactor (`--baseline-rev`).

    python bench/redaction.py --baseline-rev main --repeat 3 --text '../shared/data/loghub/*/*.log' '/etc/*.conf'

Per set and tool: recall per family (a planted value counts as found only when findings cover
all of it), overall recall, and the share of hard negatives left intact (no finding overlaps
them). detect-secrets reports a line and a value that may stop short of the token (its JWT and
keyword patterns) or name only the BEGIN line of a private key, so its span is taken to the end
of the token, or of the key block. Throughput: the median of `--repeat` passes of
`Redactor.redact` over the text in one process, in MB per CPU second (steadier than wall time on
a shared machine); detect-secrets is not timed (it scans one file per document).
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.redaction_prose_set import FAMILIES as PROSE_FAMILIES  # noqa: E402
from bench.redaction_set import FAMILIES, load_set  # noqa: E402
from stages.safety.redact import Redactor  # noqa: E402

TOKEN_END = re.compile(r"[\s\"'`,;]")
SETS = {"seed 1 (development)": ROOT / "bench/data/redaction_seed1.jsonl.gz",
        "seed 2 (held out)": ROOT / "bench/data/redaction_seed2.jsonl.gz",
        "prose seed 11 (development)": ROOT / "bench/data/redaction_prose_seed11.jsonl.gz",
        "prose seed 12 (held out, then looked at)": ROOT / "bench/data/redaction_prose_seed12.jsonl.gz",
        "prose seed 13 (held out: new values)": ROOT / "bench/data/redaction_prose_seed13.jsonl.gz",
        "prose seed 14 (held out: new values and phrasings)": ROOT / "bench/data/redaction_prose_seed14.jsonl.gz"}


def occurrences(text: str, value: str) -> list[tuple[int, int]]:
    out, at = [], text.find(value)
    while at >= 0:
        out.append((at, at + len(value)))
        at = text.find(value, at + 1)
    return out


def covered(span: tuple[int, int], findings: list[tuple[int, int]]) -> bool:
    start, end = span
    for s, e in sorted(findings):
        if s <= start < e:
            start = e
            if start >= end:
                return True
    return start >= end


def score(rows: list[dict], find) -> dict:
    """`find(row)` -> (start, end) spans of what a tool would remove."""
    planted, found, misses = Counter(), Counter(), []
    negatives = intact = 0
    flagged = []
    for row in rows:
        spans = find(row)
        for x in row["planted"]:
            planted[x["family"]] += 1
            if all(covered(o, spans) for o in occurrences(row["text"], x["value"])):
                found[x["family"]] += 1
            else:
                misses.append((row["id"], x["type"], x["value"][:70]))
        for n in row["negatives"]:
            negatives += 1
            if any(s < e2 and s2 < e for s2, e2 in occurrences(row["text"], n["value"]) for s, e in spans):
                flagged.append((row["id"], n["type"], n["value"][:70]))
            else:
                intact += 1
    return {"per_family": {f: found[f] / planted[f] for f in planted}, "planted": sum(planted.values()),
            "recall": sum(found.values()) / max(1, sum(planted.values())), "negatives": negatives,
            "intact": intact / max(1, negatives), "misses": misses, "flagged": flagged}


def sigma_finder(redactor):
    return lambda row: [(f.start, f.end) for f in redactor.find(row["text"])]


def throughput(redactors: dict, texts: list[str], repeat: int) -> dict[str, float]:
    """MB per CPU second of each redactor, the passes of all of them interleaved so that a change
    in the machine's load falls on each alike."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    times: dict[str, list[float]] = {name: [] for name in redactors}
    for _ in range(repeat):
        for name, redactor in redactors.items():
            t = time.process_time()  # CPU seconds of this process: steadier than wall time on a shared machine
            for text in texts:
                redactor.redact(text)
            times[name].append(time.process_time() - t)
    return {name: mb / statistics.median(ts) for name, ts in times.items()}


def detect_secrets_finder(workdir: Path):
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    def find(row: dict) -> list[tuple[int, int]]:
        text = row["text"]
        path = workdir / row["uri"].rsplit("/", 1)[-1]
        path.write_text(text)
        with default_settings():
            collection = SecretsCollection()
            collection.scan_file(str(path))
        path.unlink()
        lines = text.split("\n")
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        out = []
        for _, secret in collection:
            line, base = lines[secret.line_number - 1], offsets[secret.line_number - 1]
            value = secret.secret_value or ""
            at = line.find(value) if value else -1
            if at < 0:
                out.append((base, base + len(line)))
                continue
            start = base + at
            if "PRIVATE KEY" in value:  # it reports the BEGIN line: the block is what a user would remove
                start = base
                end = text.find("-----END", start)
                end = text.find("\n", end) if end >= 0 else -1
                out.append((start, end if end >= 0 else len(text)))
                continue
            token = TOKEN_END.search(text, start + len(value))  # its JWT and keyword values can stop early
            out.append((start, token.start() if token else len(text)))
        return out

    return find


def redactor_at(rev: str):
    """The redactor of another git revision (today's rules, for the before/after throughput and
    coverage in one run): its `stages/safety` modules, from `git show`, loaded as a package of
    their own, so that none of this revision's modules stands in for one of its own."""
    package = "safety_at_" + re.sub(r"\W", "_", rev)
    folder = Path(tempfile.mkdtemp()) / package
    folder.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:stages/safety"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            source = subprocess.run(["git", "show", f"{rev}:stages/safety/{name}"], cwd=ROOT, check=True,
                                    capture_output=True, text=True).stdout
            (folder / name).write_text(source.replace("from stages.safety.", f"from {package}."))
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(f"{package}.redact").Redactor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", help="also measure the redactor of this git revision (e.g. main)")
    parser.add_argument("--repeat", type=int, default=3, help="timing passes (the median is reported)")
    parser.add_argument("--no-peer", action="store_true", help="skip detect-secrets")
    parser.add_argument("--text", nargs="*", default=[], metavar="PATH",
                        help="real files (globs) for a throughput row: the labelled sets are dense with secrets, "
                             "real text mostly holds none")
    parser.add_argument("--show", type=int, default=5, help="misses and flagged negatives to print per tool and set")
    parser.add_argument("--sets", nargs="*", choices=[name.split(" (")[0] for name in SETS],
                        help="the labelled sets to score (default: all; none: only the real text)")
    args = parser.parse_args()
    tools = {"sigma redact": sigma_finder(Redactor())}
    speed = {"sigma redact": Redactor()}
    if args.baseline_rev:
        baseline = redactor_at(args.baseline_rev)
        tools[f"sigma redact @{args.baseline_rev}"] = sigma_finder(baseline)
        speed[f"sigma redact @{args.baseline_rev}"] = baseline
    tmp = tempfile.TemporaryDirectory()
    if not args.no_peer:
        import importlib.metadata

        tools[f"detect-secrets {importlib.metadata.version('detect-secrets')}"] = detect_secrets_finder(Path(tmp.name))
    for set_name, path in SETS.items():
        if args.sets is not None and set_name.split(" (")[0] not in args.sets:
            continue
        rows = load_set(path)
        mb = sum(len(r["text"].encode()) for r in rows) / 1e6
        print(f"\n{set_name}: {path.relative_to(ROOT)}, {len(rows)} documents, {mb:.2f} MB")
        results = {}
        for tool, find in tools.items():
            results[tool] = score(rows, find)
        families = [f for f in dict.fromkeys(FAMILIES + PROSE_FAMILIES) if f in next(iter(results.values()))["per_family"]]
        header = f"{'tool':26s} " + " ".join(f"{f[:9]:>9s}" for f in families) + \
            f" {'recall':>7s} {'planted':>7s} {'neg.intact':>10s} {'MB/cpu-s':>8s}"
        print(header)
        speeds = throughput(speed, [r["text"] for r in rows], args.repeat)
        for tool, r in results.items():
            mbs = f"{speeds[tool]:8.2f}" if tool in speeds else f"{'':8s}"
            print(f"{tool:26s} " + " ".join(f"{r['per_family'].get(f, 0):9.3f}" for f in families) +
                  f" {r['recall']:7.4f} {r['planted']:7d} {r['intact']:10.4f} {mbs}")
        for tool, r in results.items():
            for m in r["misses"][:args.show]:
                print(f"  {tool} missed: {m}")
            for m in r["flagged"][:args.show]:
                print(f"  {tool} flagged a negative: {m}")
    tmp.cleanup()
    texts = real_texts(args.text)
    if texts:
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(f"\nreal text: {len(texts)} files, {mb:.1f} MB")
        for tool, mbs in throughput(speed, texts, args.repeat).items():
            print(f"{tool:26s} {mbs:6.2f} MB per CPU second")


def real_texts(patterns: list[str], max_bytes: int = 4 << 20) -> list[str]:
    import glob
    import os

    out = []
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        try:
            if os.path.isfile(path) and os.path.getsize(path) <= max_bytes:
                out.append(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return out


if __name__ == "__main__":
    main()
