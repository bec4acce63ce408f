"""Log template mining on Loghub: grouping, parsing and template accuracy and speed, beside drain3
run here on the same messages (and Drain's published grouping accuracy).

    python bench/log_templates.py --drain3-python PEER/bin/python   # drain3 from its own venv
    python bench/log_templates.py --extra DIR                        # more systems, same layout

Metrics, as Loghub-2.0 reports them (Jiang et al., "A Large-scale Evaluation for Log Parsing
Techniques: How Far are We?", ISSTA 2024):
- GA, grouping accuracy (Zhu et al., ICSE-SEIP 2019): a message is right when the set of messages
  in its group is exactly the set that shares its ground-truth event;
- PA, parsing accuracy: a message is right when its template is the ground truth's;
- FTA, template accuracy (Khan et al., ICSE 2022): the F1 of template precision and recall, a
  template being right when its group is exactly one ground-truth event and its text is that
  event's template.
Templates are compared after the canonical form of Khan et al. (white space, digits, a word
holding a variable, consecutive variables), applied alike to both sides.

Inputs per system: `content`, the ground truth's own `Content` column (the message without its
header), for both miners; `raw`, the raw lines through this project's format detection and header
split (what the `logs` source does); `learned`, the raw lines through a format learned from the
file with the known formats switched off (`stages/ingest/learned_format.py`). Time: CPU seconds
of the process (on a shared machine, wall time mostly measures the other jobs) mining `content`,
median of `--repeat` runs, each miner starting empty; drain3 runs in its own interpreter and only
its mining loop is timed.

Held out: four of the twelve systems were drawn before the miner was changed (seeded with the date
of the draw, 20261204, over the sorted names) and never used to choose its rules or settings:
Android, Hadoop, Linux and Zookeeper. One setting serves every system.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.ingest.learned_format import learn  # noqa: E402
from stages.ingest.log_formats import detect, split_header  # noqa: E402
from stages.ingest.log_templates import TemplateMiner  # noqa: E402

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
LOGHUB_SYSTEMS = ("Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "OpenSSH", "Proxifier",
                  "Windows", "Zookeeper")
HELD_OUT = tuple(sorted(random.Random(20261204).sample(sorted(LOGHUB_SYSTEMS), 4)))
# Zhu et al., ICSE-SEIP 2019, Table III (Drain row, per-system tuned settings, on the templates of that time).
PUBLISHED_DRAIN = {"HDFS": 0.998, "Hadoop": 0.948, "Spark": 0.920, "Zookeeper": 0.967, "OpenStack": 0.733,
                   "BGL": 0.963, "HPC": 0.887, "Thunderbird": 0.955, "Windows": 0.997, "Linux": 0.690,
                   "Mac": 0.787, "Android": 0.911, "HealthApp": 0.780, "Apache": 1.000, "OpenSSH": 0.788,
                   "Proxifier": 0.527}


# -- metrics -----------------------------------------------------------------------------------

_PATH_DELIMITERS = r"""\s,!;:=|"'\[\](){}"""
_PATH_SPLIT = re.compile(f"([{_PATH_DELIMITERS}])")
_TOKEN_SPLIT = re.compile(rf"([{_PATH_DELIMITERS}.\-+@#$%&])")
_PATH = re.compile(r"(/[^/]+)+")
_WITH_VARIABLE = re.compile(r"[^\s/]*<\*>[^\s/]*")


def canonical(template: str) -> str:
    """Khan et al.'s rules: double spaces, path-like strings, digits, a word holding a variable,
    dot-separated and consecutive variables."""
    template = re.sub(r"\s+", " ", template.strip())
    template = "".join("<*>" if _PATH.fullmatch(p) else p for p in _PATH_SPLIT.split(template))
    template = "".join("<*>" if p.isdigit() or (_WITH_VARIABLE.fullmatch(p) and p != "<*>/<*>") else p
                       for p in _TOKEN_SPLIT.split(template))
    for joined in ("<*>.<*>", "<*><*>", "#<*>#", "<*>:<*>"):
        while joined in template:
            template = template.replace(joined, "<*>")
    return template


def _groups(labels: list) -> dict:
    groups = defaultdict(set)
    for i, label in enumerate(labels):
        groups[label].add(i)
    return groups


def grouping_accuracy(truth: list[str], predicted: list) -> float:
    truth_groups = _groups(truth)
    return sum(len(lines) for lines in _groups(predicted).values()
               if truth_groups[truth[next(iter(lines))]] == lines) / len(truth)


def parsing_accuracy(truth_templates: list[str], templates: list[str]) -> float:
    return sum(canonical(a) == canonical(b) for a, b in zip(truth_templates, templates)) / len(truth_templates)


def template_accuracy(truth: list[str], truth_templates: list[str], predicted: list, templates: list[str]) -> float:
    truth_groups, groups = _groups(truth), _groups(predicted)
    right = 0
    for lines in groups.values():
        i = next(iter(lines))
        right += truth_groups[truth[i]] == lines and canonical(templates[i]) == canonical(truth_templates[i])
    if not right:
        return 0.0
    precision, recall = right / len(groups), right / len(truth_groups)
    return 2 * precision * recall / (precision + recall)


# -- systems and miners -------------------------------------------------------------------------

def load_system(directory: Path) -> dict | None:
    logs = sorted(directory.glob("*_2k.log"))
    structured = sorted(directory.glob("*_2k.log_structured.csv"))
    if not logs or not structured:
        return None
    lines = logs[0].read_text(encoding="utf-8", errors="replace").splitlines()
    rows = list(csv.DictReader(open(structured[0], newline="", encoding="utf-8")))
    fmt = detect(lines)
    learned = learn(lines)
    return {"name": directory.name, "format": fmt.name, "content": [r["Content"] for r in rows],
            "raw": [(split_header(fmt, line) or (None, line))[1] for line in lines][: len(rows)],
            "learned": None if learned is None else
            [(split_header(learned, line) or (None, line))[1] for line in lines][: len(rows)],
            "truth": [r["EventId"] for r in rows], "templates": [r["EventTemplate"] for r in rows]}


def run_own(messages: list[str]) -> tuple[list, list[str], float]:
    started = time.process_time()
    groups = TemplateMiner().parse(messages)
    seconds = time.process_time() - started
    return [id(g) for g in groups], [g.template for g in groups], seconds


DRAIN3 = """
import json, sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
config = TemplateMinerConfig()
config.profiling_enabled = False
miner = TemplateMiner(config=config)
messages = json.load(sys.stdin)
started = time.process_time()
groups = [miner.add_log_message(m)["cluster_id"] for m in messages]
seconds = time.process_time() - started
clusters = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
json.dump({"groups": groups, "templates": [clusters[g] for g in groups], "seconds": seconds}, sys.stdout)
"""


def run_drain3(messages: list[str], python: str) -> tuple[list, list[str], float]:
    """drain3 in its own interpreter (a peer tool lives in its own environment); only the mining
    loop is timed; templates are read when all messages are in."""
    out = subprocess.run([python, "-c", DRAIN3], input=json.dumps(messages), capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    return result["groups"], result["templates"], result["seconds"]


def scores(system: dict, groups: list, templates: list[str]) -> tuple[float, float, float]:
    truth, truth_templates = system["truth"], system["templates"]
    return (grouping_accuracy(truth, groups), parsing_accuracy(truth_templates, templates),
            template_accuracy(truth, truth_templates, groups, templates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loghub", type=Path, default=LOGHUB)
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="folders of more Loghub systems (held out)")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per system (median)")
    parser.add_argument("--drain3-python", default=sys.executable,
                        help="a Python with drain3 installed (python -m venv peer && peer/bin/pip install drain3)")
    args = parser.parse_args()
    systems = []
    for root, extra in [(args.loghub, False)] + [(e, True) for e in args.extra]:
        if not root.is_dir():
            print(f"error: {root} is not a folder of Loghub systems; give one with --loghub", file=sys.stderr)
            sys.exit(2)
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            system = load_system(directory)
            if system:
                systems.append({**system, "held_out": extra or directory.name in HELD_OUT})
    if subprocess.run([args.drain3_python, "-c", "import drain3"], capture_output=True).returncode:
        print(f"error: {args.drain3_python} cannot import drain3; make a peer environment "
              "(python -m venv peer && peer/bin/pip install drain3==0.9.11) and pass --drain3-python peer/bin/python",
              file=sys.stderr)
        sys.exit(2)
    print(f"load average {os.getloadavg()[0]:.1f}; held out: {', '.join(HELD_OUT)} (*)")
    columns = ("GA", "GA d3", "PA", "PA d3", "FTA", "FTA d3", "GA raw", "GA learned", "Drain publ.", "time/d3")
    print(f"{'system':<11} {'format':<12} " + " ".join(f"{c:>10}" for c in columns))
    totals, speed = defaultdict(list), defaultdict(float)
    for s in systems:
        runs = [(run_own(s["content"]), run_drain3(s["content"], args.drain3_python)) for _ in range(args.repeat)]
        (own_groups, own_templates, _), (d3_groups, d3_templates, _) = runs[0]
        own_t, d3_t = statistics.median(r[0][2] for r in runs), statistics.median(r[1][2] for r in runs)
        speed["messages"] += len(s["content"])
        speed["own"] += own_t
        speed["drain3"] += d3_t
        own, d3 = scores(s, own_groups, own_templates), scores(s, d3_groups, d3_templates)
        raw = grouping_accuracy(s["truth"], run_own(s["raw"])[0])
        learned = None if s["learned"] is None else grouping_accuracy(s["truth"], run_own(s["learned"])[0])
        row = [own[0], d3[0], own[1], d3[1], own[2], d3[2], raw, learned, PUBLISHED_DRAIN.get(s["name"]),
               own_t / d3_t]
        group = "held out" if s["held_out"] else "tuned on"
        for column, value in zip(columns, row):
            if value is not None:
                totals[(group, column)].append(value)
        cells = " ".join(f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in row)
        print(f"{s['name'] + ('*' if s['held_out'] else ''):<11} {s['format']:<12} {cells}")
    for group in ("held out", "tuned on"):
        if (group, "GA") in totals:
            cells = " ".join(f"{statistics.mean(totals[(group, c)]):>10.3f}" if totals.get((group, c)) else f"{'-':>10}"
                             for c in columns[:-1])
            print(f"{'mean ' + group:<24} {cells}")
    print(f"speed over all inputs ({int(speed['messages'])} messages, median of {args.repeat}): own "
          f"{speed['messages'] / speed['own']:,.0f} msg/s, drain3 {speed['messages'] / speed['drain3']:,.0f} msg/s, "
          f"own/drain3 time {speed['own'] / speed['drain3']:.2f}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
