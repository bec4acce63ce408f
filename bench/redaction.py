"""Redaction: recall and precision on the labelled set, against detect-secrets in the same run, and
a held-out set (another seed, not in the repository) through `sigma curate --input x.jsonl`.

    python bench/redaction.py --docs 600 --seed 0 --heldout-seed 4242

Speeds are the median of `--repeat` passes in one process, both tools in the same run.
detect-secrets (Yelp, PyPI `detect-secrets`) finds secrets only, so it is compared on the secrets
part; PII (emails, IPs, MACs) is ours alone. A finding counts as right when it overlaps a planted
value; a planted value counts as found when a finding overlaps it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "data")]

from secrets_corpus import make_corpus, score  # noqa: E402

from stages.safety.redact import Redactor  # noqa: E402


def detect_secrets_finder(workdir: Path):
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    def find(text: str, name: str):
        path = workdir / name
        path.write_text(text)
        with default_settings():
            collection = SecretsCollection()
            collection.scan_file(str(path))
        lines = text.split("\n")
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)
        out = []
        for _, found in collection:
            line = lines[found.line_number - 1]
            value = found.secret_value or ""
            at = line.find(value) if value else -1
            start = offsets[found.line_number - 1] + (at if at >= 0 else 0)
            out.append((start, start + (len(value) if at >= 0 else len(line)), found.type))
        path.unlink()
        return out

    return find


def evaluate(corpus: list[dict], repeat: int) -> list[dict]:
    rows = []
    ours = Redactor()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for row in corpus:
            ours.redact(row["text"])
        times.append(time.perf_counter() - t)
    ours_s = statistics.median(times)
    for part in ("secrets", "pii", "all"):
        r = score(corpus, lambda text: [(f.start, f.end, f.type) for f in ours.find(text)], part)
        rows.append({"tool": "sigma redact", "part": part, **r, "docs_per_s": len(corpus) / ours_s})
    with tempfile.TemporaryDirectory() as tmp:
        find = detect_secrets_finder(Path(tmp))
        by_text, times = {}, []
        for _ in range(repeat):
            t = time.perf_counter()
            for row in corpus:
                by_text[row["text"]] = find(row["text"], row["uri"].rsplit("/", 1)[-1])
            times.append(time.perf_counter() - t)
        ds_s = statistics.median(times)
        r = score(corpus, lambda text: [(s, e, "secret") for s, e, _ in by_text[text]], "secrets")
        rows.append({"tool": "detect-secrets 1.5.0", "part": "secrets", **r, "docs_per_s": len(corpus) / ds_s})
    return rows


def held_out_run(seed: int, docs: int) -> dict:
    """The quick form `sigma curate --input x.jsonl` with redaction first in the default stages."""
    corpus = make_corpus(seed, docs)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "x.jsonl"
        data.write_text("".join(json.dumps({k: r[k] for k in ("id", "text", "kind", "uri")}) + "\n" for r in corpus))
        out = Path(tmp) / "out"
        code = ("import sys, jobs.curate as c; c.DEFAULT_STAGES.insert(0, 'redact'); from jobs.cli import main; "
                f"sys.exit(main(['curate', '--input', {str(data)!r}, '--output', {str(out)!r}, '--quiet', "
                "'--num-cpus', '2']))")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        import pyarrow.parquet as pq

        texts = pq.read_table(out / "shards", columns=["text"])["text"].to_pylist()
        rejects = pq.read_table(out / "rejects")["text"].to_pylist() if (out / "rejects").exists() else []
        manifest = json.loads((out / "manifest.json").read_text())
        blob = "\n".join(texts + [t for t in rejects if t])
        planted = [x for r in corpus for x in r["planted"]]
        survived = [x for x in planted if x["value"] in blob]
        counts = next(s for s in manifest["stages"] if s["name"] == "redact").get("counts", {})
        return {"docs": docs, "planted": len(planted), "survived": len(survived), "kept": manifest["totals"]["kept"],
                "rejects": len(rejects), "redactions": counts.get("redact.total", 0),
                "examples": survived[:5], "stages": manifest["config"]["stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-seed", type=int, default=4242)
    parser.add_argument("--heldout-docs", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per tool (the median is reported)")
    args = parser.parse_args()
    corpus = make_corpus(args.seed, args.docs)
    print(f"labelled set: seed {args.seed}, {len(corpus)} documents")
    print(f"{'tool':22s} {'part':8s} {'planted':>7s} {'recall':>7s} {'findings':>8s} {'precision':>9s} {'docs/s':>8s}")
    results = evaluate(corpus, args.repeat)
    for r in results:
        print(f"{r['tool']:22s} {r['part']:8s} {r['planted']:7d} {r['recall']:7.4f} {r['findings']:8d} "
              f"{r['precision']:9.4f} {r['docs_per_s']:8.0f}")
    ours = next(r for r in results if r["tool"] == "sigma redact" and r["part"] == "secrets")
    theirs = next(r for r in results if r["tool"].startswith("detect-secrets"))
    ratio = ours["docs_per_s"] / theirs["docs_per_s"]
    print(f"speed ratio (sigma / detect-secrets, documents/s, one process): {ratio:.1f}x")
    for r in results:
        for m in r["misses"][:3]:
            print(f"  {r['tool']} missed: {m}")
        for m in r["false_positives"][:3]:
            print(f"  {r['tool']} false positive: {m}")
    h = held_out_run(args.heldout_seed, args.heldout_docs)
    print(f"held-out (seed {args.heldout_seed}, not in the repository) through `sigma curate --input x.jsonl` "
          f"with stages {[s['name'] for s in h['stages']]}: {h['planted']} planted, {h['survived']} survived in shards "
          f"or rejects; {h['kept']} kept, {h['rejects']} rejected rows, {h['redactions']} redactions in the manifest")
    for x in h["examples"]:
        print(f"  survived: {x}")


if __name__ == "__main__":
    main()
