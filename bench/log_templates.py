"""Log template mining: grouping accuracy on Loghub, beside drain3 (run here) and Drain (published).

    python bench/log_templates.py                          # the 12 systems in ../shared/data/loghub
    python bench/log_templates.py --extra DIR              # more systems, same layout
    python bench/log_templates.py --drain3-python PEER/bin/python   # drain3 from its own venv

Grouping accuracy (GA) as defined by Zhu et al., "Tools and Benchmarks for Automated Log Parsing",
ICSE-SEIP 2019: a message is parsed correctly when the set of messages the parser put in its group
is exactly the set of messages that share its ground-truth event; GA is the share of such messages.

Two inputs per system:
- `content`: the ground truth's own `Content` column (the message without its header), as the
  published benchmark feeds the parsers (they split headers with a per-system format string);
- `raw`: the raw log lines through this project's format detection and header split, as the
  `logs` source reads them. Only this one is possible where a system has no `*_structured.csv`
  but a `*_templates.csv`: its lines are then labelled by matching the ground-truth templates
  (`<*>` as a lazy wildcard, the most specific template that matches wins), as Loghub's own tools do.

Miners: this project's (stages/ingest/log_templates.py, one setting for every system), drain3
(the maintained Drain library, default settings, the same messages), and Drain's published GA
from the paper's table (per-system tuned settings; measured on the templates of that time, which
Loghub has since corrected in places, so compare with the drain3 column for the same labels).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.ingest.log_formats import detect, split_header  # noqa: E402
from stages.ingest.log_templates import TemplateMiner  # noqa: E402

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
# Zhu et al., ICSE-SEIP 2019, Table III (Drain row); the same figures are in logpai/logparser's Drain README.
PUBLISHED_DRAIN = {"HDFS": 0.998, "Hadoop": 0.948, "Spark": 0.920, "Zookeeper": 0.967, "OpenStack": 0.733,
                   "BGL": 0.963, "HPC": 0.887, "Thunderbird": 0.955, "Windows": 0.997, "Linux": 0.690,
                   "Mac": 0.787, "Android": 0.911, "HealthApp": 0.780, "Apache": 1.000, "OpenSSH": 0.788,
                   "Proxifier": 0.527}


def grouping_accuracy(truth: list[str], predicted: list) -> float:
    truth_groups, predicted_groups = defaultdict(set), defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, predicted)):
        truth_groups[t].add(i)
        predicted_groups[p].add(i)
    correct = sum(len(lines) for lines in predicted_groups.values()
                  if truth_groups[truth[next(iter(lines))]] == lines)
    return correct / len(truth)


def _template_regex(template: str) -> re.Pattern:
    parts = [re.escape(p) for p in re.split(r"<\*>", template)]
    return re.compile("^" + "(.*?)".join(parts) + "$", re.S)


def label_by_templates(messages: list[str], templates_csv: Path) -> list[str]:
    rows = list(csv.DictReader(open(templates_csv, newline="", encoding="utf-8")))
    # the most specific first: more constant characters
    patterns = sorted(((r["EventId"], _template_regex(r["EventTemplate"].strip()),
                        len(r["EventTemplate"].replace("<*>", ""))) for r in rows), key=lambda x: -x[2])
    labels = []
    for message in messages:
        labels.append(next((eid for eid, pattern, _ in patterns if pattern.match(message.strip())), "unmatched"))
    return labels


def load_system(directory: Path) -> dict | None:
    name = directory.name
    logs = sorted(directory.glob("*_2k.log"))
    if not logs:
        return None
    lines = logs[0].read_text(encoding="utf-8", errors="replace").splitlines()
    fmt = detect(lines)
    raw = [(split_header(fmt, line) or (None, line))[1] for line in lines]
    structured = sorted(directory.glob("*_2k.log_structured.csv"))
    if structured:
        rows = list(csv.DictReader(open(structured[0], newline="", encoding="utf-8")))
        return {"name": name, "format": fmt.name, "content": [r["Content"] for r in rows], "raw": raw[: len(rows)],
                "truth": [r["EventId"] for r in rows], "labelled": "structured"}
    templates = sorted(directory.glob("*_2k.log_templates.csv"))
    if not templates:
        return None
    return {"name": name, "format": fmt.name, "content": None, "raw": raw,
            "truth": label_by_templates(raw, templates[0]), "labelled": "templates"}


def run_own(messages: list[str]) -> tuple[list, float]:
    miner = TemplateMiner()
    started = time.perf_counter()
    groups = [id(miner.add(m)) for m in messages]
    return groups, time.perf_counter() - started


DRAIN3 = """
import json, sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
config = TemplateMinerConfig()
config.profiling_enabled = False
miner = TemplateMiner(config=config)
messages = json.load(sys.stdin)
started = time.perf_counter()
groups = [miner.add_log_message(m)["cluster_id"] for m in messages]
json.dump({"groups": groups, "seconds": time.perf_counter() - started}, sys.stdout)
"""


def run_drain3(messages: list[str], python: str) -> tuple[list, float]:
    """drain3 in its own interpreter (a peer tool lives in its own environment); only the
    mining loop is timed."""
    out = subprocess.run([python, "-c", DRAIN3], input=json.dumps(messages), capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    return result["groups"], result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loghub", type=Path, default=LOGHUB)
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="folders of more Loghub systems")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per input (median)")
    parser.add_argument("--drain3-python", default=sys.executable,
                        help="a Python with drain3 installed (python -m venv peer && peer/bin/pip install drain3)")
    args = parser.parse_args()
    systems = []
    for root, held_out in [(args.loghub, False)] + [(e, True) for e in args.extra]:
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            system = load_system(directory)
            if system:
                systems.append({**system, "held_out": held_out})
    header = (f"{'system':<12} {'lines':>5} {'format':<12} {'own content':>11} {'drain3 content':>14} "
              f"{'own raw':>8} {'drain3 raw':>10} {'Drain publ.':>11} {'own/drain3 time':>15}")
    print(header)
    totals = defaultdict(list)
    speed = defaultdict(float)
    for s in systems:
        row = {}
        times = []
        for mode in ("content", "raw"):
            messages = s[mode]
            if messages is None:
                row[mode] = (None, None)
                continue
            runs = [(run_own(messages), run_drain3(messages, args.drain3_python)) for _ in range(args.repeat)]
            (own, _), (d3, _) = runs[0]
            own_t = statistics.median(r[0][1] for r in runs)
            d3_t = statistics.median(r[1][1] for r in runs)
            row[mode] = (grouping_accuracy(s["truth"], own), grouping_accuracy(s["truth"], d3))
            times.append((own_t, d3_t))
            speed["messages"] += len(messages)
            speed["own"] += own_t
            speed["drain3"] += d3_t
        published = PUBLISHED_DRAIN.get(s["name"])
        group = "held_out" if s["held_out"] else "shared"
        for key, value in (("own content", row["content"][0]), ("drain3 content", row["content"][1]),
                           ("own raw", row["raw"][0]), ("drain3 raw", row["raw"][1]), ("published", published)):
            if value is not None:
                totals[(group, key)].append(value)

        def cell(v, w):
            return f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"

        ratio = sum(t[0] for t in times) / max(1e-9, sum(t[1] for t in times))
        name = s["name"] + ("*" if s["held_out"] else "")
        print(f"{name:<12} {len(s['truth']):>5} {s['format']:<12} {cell(row['content'][0], 11)} "
              f"{cell(row['content'][1], 14)} {cell(row['raw'][0], 8)} {cell(row['raw'][1], 10)} "
              f"{cell(published, 11)} {ratio:>15.2f}")
    for group in ("shared", "held_out"):
        values = {k: v for (g, k), v in totals.items() if g == group}
        if values:
            mean = {k: sum(v) / len(v) for k, v in values.items()}
            cells = [f"{mean[k]:>{w}.3f}" if k in mean else f"{'-':>{w}}" for k, w in
                     (("own content", 11), ("drain3 content", 14), ("own raw", 8), ("drain3 raw", 10), ("published", 11))]
            print(f"{'mean ' + group:<12} {'':>5} {'':<12} " + " ".join(cells))
    print("* held out: not used when choosing the miner's settings; labelled from templates where marked so")
    print(f"speed over all inputs ({int(speed['messages'])} messages, median of {args.repeat}): own "
          f"{speed['messages'] / speed['own']:,.0f} msg/s, drain3 {speed['messages'] / speed['drain3']:,.0f} msg/s, "
          f"own/drain3 time {speed['own'] / speed['drain3']:.2f}")


if __name__ == "__main__":
    main()
