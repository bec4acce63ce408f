"""Peer timing: DataTrove's Gopher, C4 and FineWeb filters over a JSONL corpus, one process.
Runs under a venv with `datatrove[processing]`; prints one JSON line per filter.

    PEER/bin/python bench/peer_datatrove_filters.py corpus.jsonl --repeat 3
"""

import argparse
import json
import statistics
import time

from datatrove.data import Document
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter)

parser = argparse.ArgumentParser()
parser.add_argument("corpus")
parser.add_argument("--repeat", type=int, default=3)
args = parser.parse_args()
rows = [json.loads(line) for line in open(args.corpus)]
for name, make in (("gopher_quality", GopherQualityFilter), ("gopher_repetition", GopherRepetitionFilter),
                   ("c4_filter", lambda: C4QualityFilter(filter_no_terminal_punct=False)),
                   ("fineweb_filter", FineWebQualityFilter)):
    f = make()
    f.filter(Document(text="warm up the tokenizer. " * 20, id="w"))
    times = []
    for _ in range(args.repeat):
        docs = [Document(text=r["text"], id=r["id"]) for r in rows]
        t = time.perf_counter()
        kept = sum(1 for d in docs if f.filter(d) is True)
        times.append(time.perf_counter() - t)
    print(json.dumps({"stage": name, "seconds": statistics.median(times), "docs": len(rows), "kept": kept}))
