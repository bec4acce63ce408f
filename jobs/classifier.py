"""`sigma classifier train`: fit a fastText classifier (system domain, or quality) from seed data,
report held-out precision and recall, save the model with its training manifest; optionally run
the DeepSeekMath recall loop over a candidate pool. `sigma classifier score`: score documents
with a trained model.

Seed specs: a directory or file (read as the `files` source reads it: logs, configs, docs), a
`.jsonl` or `.parquet` file, `man:DIR` (man pages rendered with groff), or `fortune:DIR` (fortune
cookie files: one seed per `%`-separated entry, the entries of one file grouped into passages).

    sigma classifier train --positive man:/usr/share/man /etc ../shared/data/loghub \\
        --negative fortune:/usr/share/games/fortunes --output models/domain
    sigma classifier train ... --pool /usr/share/doc --rounds 3 --accept 0.9 --output models/domain
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from stages.quality.classifier import Classifier, Seed, TrainParams, recall_loop, train

EXAMPLES = """examples:
  sigma classifier train --positive man:/usr/share/man /etc --negative fortune:/usr/share/games/fortunes \\
      --output models/domain
  sigma classifier train --positive man:/usr/share/man --negative /usr/share/doc --pool /usr/share/doc \\
      --rounds 3 --output models/domain
  sigma classifier score models/domain --input corpus.jsonl
"""


def _source(spec: str, unit: int):
    from jobs.curate import input_for_path
    from pipeline.config import InputConfig
    from stages.registry import build_source

    if spec.startswith("man:"):
        config = {"type": "man", "roots": [spec[4:]], "exclude": ["gcloud*"], "unit_pages": unit}
    else:
        config = input_for_path(spec)
        if config["type"] == "files":
            config["unit_files"] = unit
    return build_source(InputConfig(**config), 0)


FORTUNES_PER_SEED = 20


def _fortunes(root: str) -> list[Seed]:
    """Fortune files: entries separated by `%` lines, `FORTUNES_PER_SEED` entries joined with blank
    lines to a seed document. `.dat` index files and `.u8` duplicates are skipped."""
    seeds = []
    paths = [root] if os.path.isfile(root) else sorted(
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.endswith((".dat", ".u8")))
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        entries = [e.strip() for e in text.split("\n%\n") if e.strip()]
        for k in range(0, len(entries), FORTUNES_PER_SEED):
            seeds.append(Seed("\n\n".join(entries[k:k + FORTUNES_PER_SEED]), f"file://{path}#{k}", f"fortune:{root}"))
    return seeds


def read_seeds(specs: list[str], max_docs: int | None, seed: int = 0) -> list[Seed]:
    """Documents from each spec, at most `max_docs` per spec, sampled by work unit in a seeded order."""
    out: list[Seed] = []
    for spec in specs:
        if spec.startswith("fortune:"):
            docs = _fortunes(spec[len("fortune:"):])
            out += docs[:max_docs] if max_docs else docs
            continue
        source = _source(spec, unit=40)
        units = source.plan()
        random.Random(seed).shuffle(units)
        taken = []
        for unit in units:
            for result in source.read(unit):
                rows = result.kept.select(["text", "uri"]).to_pylist()
                taken += [Seed(r["text"], r["uri"], spec) for r in rows if r["text"]]
            if max_docs and len(taken) >= max_docs:
                break
        out += taken[:max_docs] if max_docs else taken
    return out


def _train(args) -> int:
    params = TrainParams(epoch=args.epoch, lr=args.lr, dim=args.dim, word_ngrams=args.word_ngrams,
                         passage_chars=args.passage_chars, holdout=args.holdout, threshold=args.threshold,
                         seed=args.seed)
    positives = read_seeds(args.positive, args.max_docs, args.seed)
    negatives = read_seeds(args.negative, args.max_docs, args.seed)
    print(f"seeds: {len(positives)} positive, {len(negatives)} negative documents", file=sys.stderr)
    if args.pool:
        pool = read_seeds(args.pool, args.max_pool_docs, args.seed)
        labels = {s.uri: True for s in read_seeds(args.pool_positive or [], args.max_pool_docs, args.seed)}
        labels.update({s.uri: False for s in read_seeds(args.pool_negative or [], args.max_pool_docs, args.seed)})
        pool_uris = {s.uri for s in pool}
        pool += [s for s in read_seeds((args.pool_positive or []) + (args.pool_negative or []), args.max_pool_docs,
                                       args.seed) if s.uri not in pool_uris]
        manifest = recall_loop(positives, negatives, pool, args.output, rounds=args.rounds, accept=args.accept,
                               max_new=args.max_new, params=params, pool_labels=labels or None, name=args.name)
        for r in manifest["recall_loop"]["history"]:
            h = r["held_out"]
            extra = f"  pool P/R {r['pool_labelled']['precision']:.3f}/{r['pool_labelled']['recall']:.3f}" \
                if "pool_labelled" in r else ""
            print(f"round {r['round']}: seeds {r['positive_seeds']:5d}  held-out P {h['precision']:.3f} "
                  f"R {h['recall']:.3f}  pool accepted {r['pool_accepted']}/{r['pool']}  added {r['added']}{extra}")
    else:
        manifest = train(positives, negatives, args.output, params, name=args.name)
    h = manifest["held_out"]
    print(f"held-out: precision {h['precision']:.3f} recall {h['recall']:.3f} f1 {h['f1']:.3f} "
          f"({h['positives']} positive, {h['negatives']} negative passages); model in {args.output}")
    return 0


def _score(args) -> int:
    model = Classifier.load(args.model)
    docs = read_seeds(args.input, args.max_docs)
    for doc, score in zip(docs, model.score([d.text for d in docs])):
        print(json.dumps({"uri": doc.uri, "score": round(float(score), 4)}))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("classifier", help="train and apply fastText domain and quality classifiers",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="classifier_command", metavar="ACTION", required=True)
    p = sub.add_parser("train", help="train a classifier from seed data", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positive", nargs="+", required=True, metavar="SPEC", help="seed specs of the positive class")
    p.add_argument("--negative", nargs="+", required=True, metavar="SPEC", help="seed specs of the negative class")
    p.add_argument("--output", "-o", required=True, help="folder for the model (model.bin) and manifest.json")
    p.add_argument("--name", default="domain", help="the model's name in its manifest")
    p.add_argument("--max-docs", type=int, default=2000, help="at most this many documents per seed spec")
    p.add_argument("--pool", nargs="+", metavar="SPEC", help="candidate pool: run the recall loop over it")
    p.add_argument("--pool-positive", nargs="+", metavar="SPEC", help="pool documents known to be positive (scored)")
    p.add_argument("--pool-negative", nargs="+", metavar="SPEC", help="pool documents known to be negative (scored)")
    p.add_argument("--max-pool-docs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3, help="recall-loop rounds after the first model")
    p.add_argument("--accept", type=float, default=0.9, help="pool score at which a document becomes a seed")
    p.add_argument("--max-new", type=int, help="at most this many new seeds per round")
    for name, typ, default in (("epoch", int, 10), ("lr", float, 0.5), ("dim", int, 32), ("word-ngrams", int, 2),
                               ("passage-chars", int, 800), ("holdout", float, 0.2), ("threshold", float, 0.5),
                               ("seed", int, 0)):
        p.add_argument(f"--{name}", type=typ, default=default)
    p.set_defaults(func=_train)
    p = sub.add_parser("score", help="score documents with a trained classifier (JSON lines: uri, score)")
    p.add_argument("model", help="a model folder (holding model.ftz or model.bin)")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="SPEC")
    p.add_argument("--max-docs", type=int)
    p.set_defaults(func=_score)
