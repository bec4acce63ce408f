"""Building the eval suite's data from its definition (``sigma.evals.suite``), once.

System sources are read through the curation's own sources (the man source's groff rendering, the
files source's decoding and classification), so a held-out document has the id and the text that
a curation run gives it. That is why building lives here and not in ``sigma``: a built suite is
plain JSON that ``sigma.evals.suite.load_suite`` scores anywhere, without Ray or the sources.

Everything is ordered by path or by a seeded hash, so the same sources give the same bytes. A
source that is not on this machine is left out and listed under ``missing`` (the hash says which
suite a result was scored on).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from sigma.evals.suite import (DATA_FILES, SUITE_FILE, FilesPart, LoghubPart, ManPart, NL2BashPart, ProsePart, Suite,
                               SuiteDefinition, data_hash, file_id, held_out_file, load_suite, path_of, suite_folder)


def _cut(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters, ended at a line break where there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    return head[: head.rfind("\n") + 1] if "\n" in head else head


def _digest(*parts) -> bytes:
    return hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()


def man_documents(part: ManPart, missing: list[str]) -> tuple[list[dict], list[str]]:
    from stages.ingest.man import ManSource

    source = ManSource("eval-suite-man", roots=part.roots, sections=part.sections, include=part.commands)
    docs, _ = source.read_all()
    found = {json.loads(d["meta"])["name"] for d in docs}
    missing += [f"man:{c}" for c in part.commands if c not in found]
    order = {c: i for i, c in enumerate(part.commands)}
    docs.sort(key=lambda d: (order.get(json.loads(d["meta"])["name"], len(order)), d["uri"]))
    out = [{"id": d["id"], "kind": "man", "uri": d["uri"], "text": _cut(d["text"], part.max_chars)} for d in docs]
    return out, [d["uri"] for d in docs]


def file_documents(part: FilesPart, missing: list[str], keep=None) -> tuple[list[dict], list[str], dict]:
    """The part's held-out files of its kind (those ``keep`` accepts, where given), the uris of
    every held-out file under its roots, and the rule that holds them out."""
    from stages.ingest.files import FilesSource

    roots = [os.path.abspath(r) for r in part.roots]
    missing += [f"files:{r}" for r in roots if not os.path.isdir(r)]
    source = FilesSource(f"eval-suite-{part.kind}", [r for r in roots if os.path.isdir(r)])
    scored = FilesSource(f"eval-suite-{part.kind}", [], exclude=part.exclude)
    items = [item for unit in source.plan() for item in unit
             if "error" not in item and held_out_file(file_id(item["path"]), part.held_out_fraction)]
    wanted = [item for item in items if scored._wanted(item["path"])]
    docs, _ = source.read_all([wanted]) if wanted else ([], [])
    chosen = [d for d in sorted(docs, key=lambda d: d["uri"])
              if d["kind"] == part.kind and d["text"].strip() and (keep is None or keep(d))]
    out = [{"id": d["id"], "kind": part.kind, "uri": d["uri"], "text": _cut(d["text"], part.max_chars)}
           for d in chosen[: part.max_documents]]
    return out, [f"file://{item['path']}" for item in items], {"roots": roots, "fraction": part.held_out_fraction}


def loghub_documents(part: LoghubPart, missing: list[str]) -> tuple[list[dict], list[str]]:
    """Windows of each system's log, and the log files' names (held out wherever a curation finds
    them). Ids and uris name the system, not where this machine keeps Loghub."""
    from stages.ingest.files import FilesSource

    out, names = [], []
    for system in part.systems:
        name = f"{system}_2k.log"
        path = os.path.abspath(os.path.join(part.root, system, name))
        if not os.path.isfile(path):
            missing.append(f"loghub:{system}")
            continue
        docs, _ = FilesSource(f"eval-suite-loghub-{system}", [path]).read_all()
        if not docs:
            missing.append(f"loghub:{system}")
            continue
        lines = docs[0]["text"].splitlines(keepends=True)
        names.append(name)
        for i in range(part.documents):
            window = lines[i * part.lines : (i + 1) * part.lines]
            if window:
                out.append({"id": _digest("loghub", system, i).hex(), "kind": "loghub",
                            "uri": f"loghub://{system}/{name}#{i * part.lines}", "text": "".join(window)})
    return out, names


def nl2bash_items(part: NL2BashPart, missing: list[str]) -> tuple[list[dict], list[dict]]:
    """(pairs scored as text, multiple-choice items): disjoint, in seeded hash order."""
    from sigma.evals.nl2cmd import load_pairs

    if not os.path.isfile(part.path):
        missing.append(f"nl2bash:{part.path}")
        return [], []
    pairs = sorted({(p.nl, p.cmd) for p in load_pairs(part.path)}, key=lambda p: (_digest(part.seed, *p), p))
    texts = [{"id": _digest("nl2bash", nl, cmd).hex(), "kind": "nl2bash", "uri": f"nl2bash:{_digest(nl, cmd).hex()}",
              "text": f"Task: {nl}\nCommand: {cmd}\n", "nl": nl, "cmd": cmd} for nl, cmd in pairs[: part.text_pairs]]
    chosen, commands = [], set()
    for nl, cmd in pairs[part.text_pairs:]:
        if len(chosen) == part.mc_items:
            break
        if cmd not in commands:
            chosen.append((nl, cmd))
            commands.add(cmd)
    items = []
    for nl, cmd in chosen:
        others = sorted((c for _, c in chosen if c != cmd), key=lambda c: (_digest(part.seed, "distractor", nl, c), c))
        distractors = others[: part.distractors]
        gold = int.from_bytes(_digest(part.seed, "gold", nl, cmd), "little") % (len(distractors) + 1)
        items.append({"id": _digest("mc", nl, cmd).hex(), "nl": nl, "choices": distractors[:gold] + [cmd] + distractors[gold:],
                      "gold": gold})
    return texts, items


def prose_documents(part: ProsePart, missing: list[str]) -> list[dict]:
    """Stretches of whole paragraphs of at most ``max_chars`` characters, ``documents`` of them in
    seeded hash order."""
    import gzip

    path = Path(part.path)
    if not path.is_file():
        missing.append(f"prose:{part.path}")
        return []
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", errors="replace")
    if part.start_at is not None:
        lines = text.splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if line.strip() == part.start_at), None)
        if at is None:
            raise ValueError(f"prose {part.path}: no line {part.start_at!r} to start at")
        text = "".join(lines[at:])
    stretches, current = [], ""
    for paragraph in (p.strip("\n") for p in text.split("\n\n")):
        if not paragraph.strip():
            continue
        if current and len(current) + 2 + len(paragraph) > part.max_chars:
            stretches.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        stretches.append(current)
    stretches = [_cut(t, part.max_chars) + "\n" for t in stretches]
    chosen = sorted(range(len(stretches)), key=lambda i: (_digest(part.seed, "prose", stretches[i]), i))[: part.documents]
    return [{"id": _digest("prose", path.name, i).hex(), "kind": "prose", "uri": f"prose:{path.name}#{i}",
             "text": stretches[i]} for i in sorted(chosen)]


def build_suite(spec: SuiteDefinition, folder: Path, progress: bool = False, keep=None) -> Path:
    """Write the suite's data to ``folder`` (replacing an earlier build there). ``keep``: a test
    a held-out file must pass to be scored (it stays held out either way)."""
    started = time.time()

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    missing: list[str] = []
    documents, held_uris, held_names, rules, mc = [], [], [], [], []
    if spec.man:
        say(f"suite {spec.name}: rendering {len(spec.man.commands)} man pages")
        docs, uris = man_documents(spec.man, missing)
        documents += docs
        held_uris += uris
    for part in spec.files:
        say(f"suite {spec.name}: held-out {part.kind} files under {', '.join(part.roots)}")
        docs, uris, rule = file_documents(part, missing, keep)
        documents += docs
        held_uris += uris
        rules.append(rule)
    if spec.loghub:
        docs, names = loghub_documents(spec.loghub, missing)
        documents += docs
        held_names += names
    if spec.nl2bash:
        docs, mc = nl2bash_items(spec.nl2bash, missing)
        documents += docs
    if spec.prose:
        documents += prose_documents(spec.prose, missing)
    if not documents and not mc:
        raise ValueError(f"suite {spec.name}: none of its sources is on this machine ({', '.join(missing)})")

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "documents.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in documents))
    (tmp / "mc.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False, sort_keys=True) + "\n" for i in mc))
    held_out = {"ids": sorted({d["id"] for d in documents if d["kind"] != "nl2bash"}),
                "paths": sorted({path_of(uri) for uri in held_uris}), "names": sorted(held_names), "rules": rules}
    (tmp / "held_out.json").write_text(json.dumps(held_out, indent=1, sort_keys=True) + "\n")
    files = {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in DATA_FILES}
    kinds = sorted({d["kind"] for d in documents})
    meta = {
        "name": spec.name, "hash": data_hash([(name, files[name]) for name in DATA_FILES]),
        "definition_hash": spec.definition_hash(), "definition": spec.model_dump(mode="json"),
        "kinds": kinds, "files": files, "missing": missing,
        "counts": {"documents": {k: sum(d["kind"] == k for d in documents) for k in kinds},
                   "bytes": {k: sum(len(d["text"].encode()) for d in documents if d["kind"] == k) for k in kinds},
                   "mc_items": len(mc), "held_out_files": len(held_out["paths"])},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / SUITE_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    say(f"suite {spec.name}: {len(documents)} documents, {len(mc)} multiple-choice items, hash {meta['hash'][:12]} "
        f"({time.time() - started:.1f}s)" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return folder


def ensure_suite(definition: str | Path = "configs/eval/suite.yaml", *, build_dir: str | Path | None = None,
                 rebuild: bool = False, progress: bool = False) -> Suite:
    """The suite of ``definition``, built into ``build_dir`` (default: the definition's
    ``build_dir``) the first time, read from there afterwards."""
    spec = SuiteDefinition.load(definition)
    if spec.frozen:
        if rebuild:
            raise ValueError(f"suite {spec.name} is frozen: it ships built and is never rebuilt "
                             "(configs/eval/local.yaml builds a suite from this machine's own files)")
        return load_suite(definition)
    folder = suite_folder(spec, build_dir)
    if rebuild or not (folder / SUITE_FILE).exists():
        build_suite(spec, folder, progress=progress)
    return Suite.open(folder)
