"""The frozen system-domain eval suite: held-out text scored in bits per byte, and NL -> command
as log-likelihood tasks, the way lm-eval-harness and lighteval judge small models.

    suite = load_suite("configs/eval/suite.yaml")      # the frozen suite, shipped built (no Ray, no sources)
    suite = ensure_suite("configs/eval/local.yaml")    # stages.ingest.eval_suite: one built from this machine
    result = score_suite(load_backend(spec), suite)     # bpb per kind, nl2cmd bpb and margin, MC accuracy

``configs/eval/suite.yaml`` is ``system-v1``, a *frozen* suite: its built documents and items ship
in the package (``configs/eval/system-v1/``, with each source's licence in ``SOURCES.md``), so
every machine scores, and decontaminates against, the same bytes and the same hash. A definition
with parts instead (``configs/eval/local.yaml``) names what to hold out of a machine's own files:
man pages of a fixed list of commands, config files and logs whose id hashes under a fraction
(decided before curation, by where a file is), Loghub systems no training job reads, a seeded
subset of NL2Bash's dev pairs, and general English prose. Building reads those sources once
(``stages.ingest.eval_suite``, through the curation's own sources) into a folder keyed by the
definition's hash; the sha256 of the built files is the suite's hash, carried in every result.

Scores:

- bits per byte per kind: the summed negative log-likelihood of each document, in bits, over its
  UTF-8 bytes, which compares models whatever their tokenizer;
  ``bpb_all`` is over the system kinds; general prose (kind ``prose``) is scored beside them, not
  in it: it measures what a system-domain model forgets;
- ``nl2cmd_bpb``: the gold command's bits per byte given the request (``Task: ...\\nCommand:``);
- multiple choice: the gold command against 3 distractors (other items' commands, picked by a
  seeded hash), ranked by log-likelihood per byte; accuracy with a 95% Wilson interval, chance 0.25,
  and the *margin*: the gold command's log-likelihood per byte minus the best distractor's, in bits
  (continuous, so it moves before accuracy does; positive where the item is right).

Every result also keeps each document's and item's own numbers (``items``), which is what a paired
bootstrap over documents resamples (``sigma.evals.paired``).

``check_uncontaminated`` reads what a Sigma checkpoint was trained on (the data folders its
checkpoints record, through ``init_from`` too) and refuses one whose training shards hold suite
documents, unless they were curated with ``decontaminate: {suite: ...}`` against this very suite.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from configs import locate, read_yaml_mapping

SUITE_FILE = "suite.json"
DATA_FILES = ("documents.jsonl", "mc.jsonl", "held_out.json")  # what the suite's hash covers
CHANCE_CHOICES = 4
HELD_OUT_SALT = "eval-suite"
GENERAL_KINDS = ("prose",)  # scored beside the system kinds, not in `bpb_all`


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManPart(Strict):
    """Man pages of these commands, rendered by the curation's man source (same ids, same text)."""

    roots: list[str] = Field(default_factory=lambda: ["/usr/share/man"])
    sections: list[str] = Field(default_factory=lambda: ["1"])
    commands: list[str] = Field(min_length=1)
    max_chars: int = Field(4000, gt=0)  # of each page scored


class FilesPart(Strict):
    """Files under ``roots`` whose id hashes under ``held_out_fraction`` are held out from training;
    the first ``max_documents`` of them of this kind (in path order) are scored."""

    kind: Literal["config", "log"]
    roots: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)  # path patterns never scored (still held out)
    held_out_fraction: float = Field(gt=0, lt=1)
    max_documents: int = Field(40, gt=0)
    max_chars: int = Field(3000, gt=0)


class LoghubPart(Strict):
    """Loghub systems no training job reads: ``documents`` windows of ``lines`` lines each."""

    root: str
    systems: list[str] = Field(min_length=1)
    documents: int = Field(3, gt=0)
    lines: int = Field(60, gt=0)


class NL2BashPart(Strict):
    """A seeded subset of NL -> bash pairs: ``text_pairs`` scored as text, ``mc_items`` others as
    log-likelihood tasks."""

    path: str
    text_pairs: int = Field(200, ge=0)
    mc_items: int = Field(200, ge=0)
    distractors: int = Field(CHANCE_CHOICES - 1, ge=1)
    seed: int = 0


class ProsePart(Strict):
    """General English text that is not system text (kind ``prose``): ``documents`` stretches of at
    most ``max_chars`` characters, cut at paragraph ends, picked by a seeded hash from a text file
    (``.gz``/``.dz``: gzip)."""

    path: str
    start_at: str | None = None  # the text starts at the first line that is this (past a file's header)
    documents: int = Field(12, gt=0)
    max_chars: int = Field(2000, ge=200)
    seed: int = 0


class SuiteDefinition(Strict):
    name: str
    frozen: str | None = None  # a built suite's folder, beside this file: read as it is, never built
    build_dir: str = "out/eval-suite"
    man: ManPart | None = None
    files: list[FilesPart] = Field(default_factory=list)
    loghub: LoghubPart | None = None
    nl2bash: NL2BashPart | None = None
    prose: ProsePart | None = None
    source: str | None = Field(None, exclude=True)  # the file it was read from (where `frozen` is)

    @model_validator(mode="after")
    def _frozen_alone(self) -> "SuiteDefinition":
        parts = [n for n in ("man", "files", "loghub", "nl2bash", "prose") if getattr(self, n)]
        if self.frozen and parts:
            raise ValueError(f"a frozen suite ships built: no parts to build ({', '.join(parts)})")
        return self

    def definition_hash(self) -> str:
        """What the built data depends on (not where it is built)."""
        body = self.model_dump(mode="json", exclude={"build_dir"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> "SuiteDefinition":
        """A definition file (one under configs/, as the default, read from the package when it is
        not there from here)."""
        data = read_yaml_mapping(path, "suite definition", "`name:` and its parts")
        try:
            return cls.model_validate({**data, "source": str(locate(path))})
        except ValidationError as exc:
            lines = [f"{locate(path)}: invalid suite definition"]
            lines += [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise ValueError("\n".join(lines)) from None


class ContaminationError(RuntimeError):
    """A model whose training data holds text of the suite it is to be scored on."""


def held_out_file(file_id: str, fraction: float) -> bool:
    """The stable split of files by id (salted, so it is independent of the trainer's own split)."""
    digest = hashlib.blake2b(f"{HELD_OUT_SALT}\x00{file_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def file_id(path: str) -> str:
    """The id the curation's files source gives a file (``pipeline.schema.doc_id("file", uri)``)."""
    return hashlib.blake2b(f"file\x00file://{path}".encode(), digest_size=12).hexdigest()


def path_of(uri: str | None) -> str | None:
    """The file a document came from: ``file:///var/log/x.log#4096`` -> ``/var/log/x.log``."""
    if not uri or not uri.startswith("file://"):
        return None
    return uri[len("file://"):].split("#", 1)[0]


@dataclass
class Suite:
    name: str
    hash: str
    path: Path
    definition_hash: str
    kinds: list[str]
    documents: list[dict] = field(repr=False)  # id, kind, uri, text (nl2bash: nl, cmd too)
    mc: list[dict] = field(repr=False)  # id, nl, choices, gold
    held_out: dict = field(repr=False)  # ids, paths, names (file names held out anywhere), rules [{roots, fraction}]
    missing: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | Path) -> "Suite":
        """A built suite folder, its files checked against the sha256 it recorded."""
        path = Path(path)
        meta = json.loads((path / SUITE_FILE).read_text())
        for name in DATA_FILES:
            if _sha256(path / name) != meta["files"][name]:
                raise ValueError(f"{path / name}: changed since the suite was built; rebuild it (--rebuild)")
        documents = [json.loads(line) for line in (path / "documents.jsonl").read_text().splitlines() if line]
        mc = [json.loads(line) for line in (path / "mc.jsonl").read_text().splitlines() if line]
        return cls(meta["name"], meta["hash"], path, meta["definition_hash"], meta["kinds"], documents, mc,
                   json.loads((path / "held_out.json").read_text()), meta.get("missing", []))

    @cached_property
    def held_out_ids(self) -> frozenset[str]:
        return frozenset(self.held_out["ids"])

    @cached_property
    def held_out_paths(self) -> frozenset[str]:
        return frozenset(self.held_out["paths"])

    def is_held_out(self, doc_id: str | None, uri: str | None) -> bool:
        """Whether a training document is one the suite holds out: by its id, or by the file it
        came from (whatever source read it: a man page, a log read in windows, a config)."""
        if doc_id in self.held_out_ids:
            return True
        path = path_of(uri)
        if path is None:
            return False
        if path in self.held_out_paths or path.rsplit("/", 1)[-1] in self.held_out.get("names", ()):
            return True
        return any(held_out_file(file_id(path), rule["fraction"]) for rule in self.held_out["rules"]
                   if any(path == root or path.startswith(root.rstrip("/") + "/") for root in rule["roots"]))

    def long_texts(self) -> list[tuple[str, str]]:
        """(label, text) of the documents a training text must not contain much of."""
        return [(f"suite {self.name}:{d['kind']}:{d['id']}", d["text"]) for d in self.documents if d["kind"] != "nl2bash"]

    def short_texts(self) -> list[tuple[str, str]]:
        """(label, text) of every request and command (any n-gram of them in a training text counts)."""
        items = []
        for d in self.documents:
            if d["kind"] == "nl2bash":
                items += [(f"suite {self.name}:nl2bash:{d['id']}:nl", d["nl"]), (f"suite {self.name}:nl2bash:{d['id']}:cmd", d["cmd"])]
        for item in self.mc:
            items += [(f"suite {self.name}:mc:{item['id']}:nl", item["nl"]),
                      (f"suite {self.name}:mc:{item['id']}:cmd", item["choices"][item["gold"]])]
        return items

    def describe(self) -> dict:
        return {"name": self.name, "hash": self.hash}


class SuiteNotBuilt(FileNotFoundError):
    """The suite's data is not in its folder yet."""


def suite_folder(spec: SuiteDefinition, build_dir: str | Path | None = None) -> Path:
    """Where ``spec``'s built data lives: a frozen suite's folder beside its definition, else a
    folder keyed by the definition's hash."""
    if spec.frozen:
        return Path(spec.source).parent / spec.frozen
    return Path(build_dir or spec.build_dir) / f"{spec.name}-{spec.definition_hash()[:12]}"


def load_suite(definition: str | Path = "configs/eval/suite.yaml", *, build_dir: str | Path | None = None) -> Suite:
    """The suite of ``definition``: a frozen one from its shipped folder, else the build in
    ``build_dir`` (default: the definition's ``build_dir``). Building reads the system sources,
    which live beside the curation (``stages.ingest.eval_suite.ensure_suite``), so this side only
    reads a built folder and runs where Ray and the sources are not."""
    spec = SuiteDefinition.load(definition)
    folder = suite_folder(spec, build_dir)
    if not (folder / SUITE_FILE).exists():
        if spec.frozen:
            raise SuiteNotBuilt(f"suite {spec.name}: its shipped data is missing ({folder / SUITE_FILE})")
        raise SuiteNotBuilt(f"suite {spec.name} is not built in {folder}: `sigma eval suite` builds it where its "
                            "sources are (a full install), or copy a built folder there")
    suite = Suite.open(folder)
    if suite.name != spec.name:
        raise ValueError(f"{folder} holds suite {suite.name!r}, not {spec.name!r}")
    return suite


def prompt(nl: str) -> str:
    """The request as the context of its command (the `Task:`/`Command:` form of ``sigma eval nl2cmd``)."""
    return f"Task: {nl}\nCommand:"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """The 95% Wilson score interval of a binomial proportion (Wilson 1927)."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, center - half), min(1.0, center + half)]


def _bits_per_byte(nll: float, nbytes: int) -> float | None:
    return nll / math.log(2) / nbytes if nbytes else None


def score_suite(backend, suite: Suite, *, limit: int | None = None) -> dict:
    """Scores of ``backend`` on ``suite`` (see the module docstring); ``limit``: at most this many
    documents per kind and multiple-choice items, for a quick look (the result says so)."""
    started = time.time()
    by_kind: dict[str, list[dict]] = {}
    for d in suite.documents:
        if limit is None or len(by_kind.setdefault(d["kind"], [])) < limit:
            by_kind.setdefault(d["kind"], []).append(d)
    documents = [d for kind in sorted(by_kind) for d in by_kind[kind]]
    items = suite.mc[:limit] if limit is not None else suite.mc
    pairs = [("", d["text"]) for d in documents]
    pairs += [(prompt(item["nl"]), " " + choice) for item in items for choice in item["choices"]]
    scores = backend.loglikelihood(pairs)
    doc_scores, choice_scores = scores[: len(documents)], scores[len(documents):]
    doc_rows = [[d["id"], d["kind"], s.nll, s.bytes] for d, s in zip(documents, doc_scores)]

    mc_rows, at = [], 0
    for item in items:
        choices = choice_scores[at : at + len(item["choices"])]
        at += len(item["choices"])
        per_byte = [-s.nll / max(1, s.bytes) for s in choices]
        best_other = max(v for i, v in enumerate(per_byte) if i != item["gold"])
        picked = max(range(len(per_byte)), key=lambda i: (per_byte[i], -i))
        gold = choices[item["gold"]]
        mc_rows.append([item["id"], (per_byte[item["gold"]] - best_other) / math.log(2), int(picked == item["gold"]),
                        gold.nll, gold.bytes])
    seconds = time.time() - started
    return {
        "suite": suite.describe(), "model": backend.describe(),
        **suite_metrics(doc_rows, mc_rows),
        "documents": {kind: len(docs) for kind, docs in sorted(by_kind.items())},
        "bytes": {kind: sum(r[3] for r in doc_rows if r[1] == kind) for kind in sorted(by_kind)},
        "system_kinds": [k for k in sorted(by_kind) if k not in GENERAL_KINDS],
        "items": {"documents": doc_rows, "mc": mc_rows},
        "limit": limit,
        "seconds": round(seconds, 2), "seconds_per_item": round(seconds / max(1, len(documents) + len(items)), 4),
    }


def suite_metrics(doc_rows: Sequence[Sequence], mc_rows: Sequence[Sequence]) -> dict:
    """The suite's scores from per-item numbers: ``doc_rows`` [id, kind, nll, bytes], ``mc_rows``
    [id, margin in bits per byte, correct, gold nll, gold bytes]. The one place they are summed, so
    a bootstrap's resample (``sigma.evals.paired``) is scored as the suite is."""
    sums: dict[str, list[float]] = {}
    for _, kind, nll, nbytes in doc_rows:
        entry = sums.setdefault(kind, [0.0, 0])
        entry[0] += nll
        entry[1] += nbytes
    system = [v for kind, v in sums.items() if kind not in GENERAL_KINDS]
    n = len(mc_rows)
    correct = sum(r[2] for r in mc_rows)
    return {
        "bpb": {kind: _bits_per_byte(nll, nbytes) for kind, (nll, nbytes) in sorted(sums.items())},
        "bpb_all": _bits_per_byte(sum(v[0] for v in system), sum(v[1] for v in system)),
        "nl2cmd_bpb": _bits_per_byte(sum(r[3] for r in mc_rows), sum(r[4] for r in mc_rows)),
        "mc": {"accuracy": correct / n if n else None, "ci95": wilson_interval(correct, n), "n": n,
               "chance": 1 / CHANCE_CHOICES, "margin": sum(r[1] for r in mc_rows) / n if n else None},
    }


# -- contamination ---------------------------------------------------------------------------------

def training_folders(model_path: str | Path) -> list[Path] | None:
    """The data folders a Sigma checkpoint was trained on, through its ``init_from`` chain; None
    for a model that is not a Sigma run (nothing recorded to check)."""
    from sigma.checkpoint import find_checkpoint, read_checkpoint

    if find_checkpoint(model_path) is None:
        return None
    folders, seen, todo = [], set(), [model_path]
    while todo:
        state = read_checkpoint(todo.pop()).state
        for d in state.get("data_dirs", []):
            if d not in seen:
                seen.add(d)
                folders.append(Path(d))
        parent = state.get("init_from")
        if parent and str(parent) not in seen:
            seen.add(str(parent))
            todo.append(parent)
    return folders


def decontaminated_against(folder: Path, suite: Suite) -> bool:
    """Whether the folder's manifest shows a ``decontaminate`` stage with a suite, and its shards
    record this suite's hash on every row (``decontam.suite``)."""
    import pyarrow.parquet as pq

    manifest = json.loads((folder / "manifest.json").read_text())
    stages = (manifest.get("config") or {}).get("stages") or []
    if not any(s.get("name") == "decontaminate" and (s.get("options") or {}).get("suite") for s in stages):
        return False
    for f in manifest.get("files", []):
        if not f.get("rows"):
            continue
        path = folder / f["path"]
        if "decontam.suite" not in pq.read_schema(path).names:
            return False
        if set(pq.read_table(path, columns=["decontam.suite"]).column(0).to_pylist()) != {suite.hash}:
            return False
    return True


def overlapping_documents(folder: Path, suite: Suite, index=None, limit: int = 3) -> tuple[int, list[str]]:
    """(documents of a training folder that are suite documents or share text with them, the first
    few described)."""
    from sigma.shards import ShardSet

    index = index or SuiteOverlap(suite)
    count, examples = 0, []
    shard_set = ShardSet.open(folder)
    for group in shard_set.row_groups:
        table = shard_set.read_row_group(group, columns=("id", "text", "uri"))
        for doc_id, text, uri in zip(*(table.column(c).to_pylist() for c in ("id", "text", "uri"))):
            why = index.why(doc_id, uri, text or "")
            if why:
                count += 1
                if len(examples) < limit:
                    examples.append(f"{uri or doc_id}: {why}")
    return count, examples


class SuiteOverlap:
    """A suite's held-out ids and n-gram indexes, and the rule that calls a document contaminated:
    a held-out id or file; any n-gram of a request or command; or at least ``min_overlap`` of the
    document's n-grams in the suite's documents (n-grams that several suite documents share, such
    as a licence footer, are boilerplate and do not count)."""

    def __init__(self, suite: Suite, ngram: int = 13, min_tokens: int = 8, min_overlap: float = 0.2):
        from sigma.evals.overlap import NgramIndex

        self.suite, self.min_overlap = suite, min_overlap
        self.short = NgramIndex(suite.short_texts(), ngram, min_tokens)
        self.long = NgramIndex(suite.long_texts(), ngram, min_tokens, drop_shared=2)

    def signals(self, doc_id: str | None, uri: str | None, text: str) -> tuple[bool, int, str | None, float, str | None]:
        """(held out, short-item matches, first short item, share of n-grams in suite documents, that document)."""
        held = self.suite.is_held_out(doc_id, uri)
        count, _, first, _ = self.short.matches(text)
        long_count, total, long_first, _ = self.long.matches(text)
        return (held, count, None if first is None else self.short.items[first][0],
                long_count / total if long_count else 0.0,
                None if long_first is None else self.long.items[long_first][0])

    def why(self, doc_id: str | None, uri: str | None, text: str) -> str | None:
        held, count, item, share, doc = self.signals(doc_id, uri, text)
        if held:
            return "held out by the suite"
        if count:
            return f"{count} n-grams of {item}"
        if share >= self.min_overlap:
            return f"{share:.0%} of its n-grams in {doc}"
        return None


def check_uncontaminated(model_path: str | Path, suite: Suite) -> None:
    """Raise ``ContaminationError`` when a Sigma checkpoint's training data overlaps ``suite`` and
    was not decontaminated against it. Models that are not Sigma runs record no training data and
    pass."""
    folders = training_folders(model_path)
    if not folders:
        return
    from sigma.token_stream import STREAM_FILE, is_token_stream

    index = None
    for folder in folders:
        if is_token_stream(folder):  # an ablation bundle's variant: prepared from rows decontaminated against a suite
            against = json.loads((folder / STREAM_FILE).read_text()).get("suite", {})
            if against.get("hash") != suite.hash:
                raise ContaminationError(f"{model_path} was trained on {folder}, prepared against suite "
                                         f"{against.get('name')} ({str(against.get('hash'))[:12]}), not {suite.name} "
                                         f"({suite.hash[:12]})")
            continue
        if not (folder / "manifest.json").exists():
            raise ContaminationError(f"{model_path} was trained on {folder}, which has no manifest to check "
                                     f"against suite {suite.name}")
        if decontaminated_against(folder, suite):
            continue
        index = index or SuiteOverlap(suite)
        count, examples = overlapping_documents(folder, suite, index)
        if count:
            raise ContaminationError(
                f"{model_path} was trained on {folder}, which was not decontaminated against suite {suite.name} "
                f"({suite.hash[:12]}) and holds {count} document(s) that overlap it, e.g. " + "; ".join(examples)
                + ". Curate with `decontaminate: {suite: ...}` or pass --allow-contaminated")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_hash(files: Sequence[tuple[str, str]]) -> str:
    """The suite's hash: sha256 over its data files' names and sha256s, in a fixed order."""
    return hashlib.sha256("".join(f"{name}\x00{digest}\n" for name, digest in files).encode()).hexdigest()
