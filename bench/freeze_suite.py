"""Freeze the eval suite `system-v1`: build it once from its sources and write the built data into
the package (``configs/eval/system-v1/``), where every machine reads the same bytes and hash.

    python bench/freeze_suite.py                 # build, check, and write configs/eval/system-v1/
    python bench/freeze_suite.py --check-only    # build and print the privacy check; write nothing

Sources: this machine's man pages and ``/etc`` and ``/var/log`` files (the parts of
``configs/eval/local.yaml``), Loghub and NL2Bash (``../shared/data``), and general English prose,
Ambrose Bierce's *The Devil's Dictionary* (public domain) from the Debian package ``dict-devil``
(``apt-get download``, unpacked in a temporary folder). What ships must hold nothing private of the
machine it was built on, so before anything is written:

- an ``/etc`` file is scored only if a Debian package ships it (``dpkg -S``, links followed) and
  it is unchanged from the package's copy (its md5 equals the package's ``md5sums`` or
  ``Conffiles``); a ``/var/log`` file only if it is the package manager's own log (dpkg, apt,
  update-alternatives) and the redactor (``stages.safety.redact``) finds nothing in it; other
  held-out files stay held out but are not scored;
- the redactor runs over every document, and what it finds is listed (Loghub's and NL2Bash's IP
  addresses are theirs, published as they are).

``SOURCES.md`` beside the data gives each source's licence and attribution (a man page's or a
config's package and its copyright file), and ``suite.json`` records the definition with each
source named by where it comes from, not by this machine's paths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
TARGET = ROOT / "configs" / "eval" / "system-v1"
PROSE_PACKAGE = "dict-devil"

DEFINITION = {
    "name": "system-v1",
    "man": {"roots": ["/usr/share/man"], "sections": ["1"], "max_chars": 2500,
            "commands": ["tr", "tee", "touch", "stat", "uname", "split", "paste", "comm", "timeout", "watch", "free", "scp"]},
    "files": [
        {"kind": "config", "roots": ["/etc"], "held_out_fraction": 0.05, "max_documents": 16, "max_chars": 1500,
         "exclude": ["/etc/alternatives/*", "/etc/ssl/*", "*.gz", "*.asc", "*.gpg"]},
        {"kind": "log", "roots": ["/var/log"], "held_out_fraction": 0.3, "max_documents": 4, "max_chars": 2500},
    ],
    "loghub": {"root": str(SHARED / "loghub"), "systems": ["Hadoop", "BGL", "Proxifier"], "documents": 2, "lines": 30},
    "nl2bash": {"path": str(SHARED / "nl2bash" / "dev.jsonl"), "text_pairs": 120, "mc_items": 200, "distractors": 3,
                "seed": 0},
    "prose": {"path": "", "start_at": "PREFACE", "documents": 12, "max_chars": 2000, "seed": 0},
}


def run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def package_of(path: str) -> str | None:
    done = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if done.returncode:
        return None
    return done.stdout.split(":", 1)[0].split(",")[0].strip()


def unchanged(path: str, package: str) -> bool:
    """Whether the file's md5 is the one its package's md5sums records."""
    sums = Path("/var/lib/dpkg/info") / f"{package}.md5sums"
    if not sums.exists():
        sums = next(Path("/var/lib/dpkg/info").glob(f"{package}:*.md5sums"), sums)
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}\n", package)
    recorded = {line.split()[0]: line.split()[1] for line in conffiles.splitlines() if len(line.split()) >= 2}
    if sums.exists():
        for line in sums.read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            recorded.setdefault("/" + name, digest)
    return recorded.get(path) == hashlib.md5(Path(path).read_bytes()).hexdigest()


def prose_file(tmp: Path) -> tuple[Path, str]:
    subprocess.run(["apt-get", "download", PROSE_PACKAGE], cwd=tmp, check=True, capture_output=True)
    deb = next(tmp.glob(f"{PROSE_PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True)
    return tmp / "x" / "usr" / "share" / "dictd" / "devil.dict.dz", deb.name.split("_")[1]


PACKAGE_LOGS = ("/var/log/dpkg.log", "/var/log/alternatives.log", "/var/log/apt/")  # written by dpkg, apt


def shareable(document: dict) -> bool:
    """Whether a held-out file may ship: a config exactly as a Debian package ships it (links
    followed), or a package manager's log the redactor leaves as it is."""
    from sigma.evals.suite import path_of
    from stages.safety.redact import Redactor

    path = path_of(document["uri"])
    if document["kind"] == "config":
        real = str(Path(path).resolve())
        package = package_of(real)
        return package is not None and unchanged(real, package)
    if document["kind"] == "log":
        return path.startswith(PACKAGE_LOGS) and not Redactor().redact(document["text"])[1]
    return True


def attribution(documents: list[dict]) -> dict[str, str]:
    """The Debian package of every man page and config, by path; logs by the tool that wrote them."""
    from sigma.evals.suite import path_of

    owners = {}
    for d in documents:
        path = path_of(d["uri"])
        if d["kind"] in ("man", "config") and path:
            owners[path] = package_of(str(Path(path).resolve())) or package_of(path)
            if owners[path] is None:
                raise SystemExit(f"{path}: no Debian package owns it")
        elif d["kind"] == "log":
            owners[path] = "dpkg" if "dpkg" in path or "alternatives" in path else "apt"
    return owners


def sources_md(meta: dict, owners: dict[str, dict], prose_version: str) -> str:
    packages = Counter(owners.values())
    lines = [
        "# system-v1: sources, licences and attribution", "",
        f"Suite hash `{meta['hash']}`. Built once (`bench/freeze_suite.py`) and shipped as it is.", "",
        "| kind | documents | source | licence |", "|---|---:|---|---|",
    ]
    counts = meta["counts"]["documents"]
    rows = {
        "man": "rendered section-1 man pages (groff), each from the Debian package named below",
        "config": "configuration files as Debian packages ship them (unchanged from the package)",
        "log": "logs of the package manager (dpkg, apt, update-alternatives) installing the build machine's "
               "Debian packages",
        "loghub": "Loghub (He et al., *Loghub: A Large Collection of System Log Datasets for AI-driven Log "
                  "Analytics*, ISSRE 2023), https://github.com/logpai/loghub: Hadoop, BGL, Proxifier",
        "nl2bash": "NL2Bash (Lin et al., LREC 2018), https://github.com/TellinaTool/nl2bash, dev pairs",
        "prose": f"Ambrose Bierce, *The Devil's Dictionary* (1911), Debian package `{PROSE_PACKAGE}` {prose_version}",
    }
    licences = {"man": "each package's own (its `/usr/share/doc/PACKAGE/copyright`)",
                "config": "each package's own (its `/usr/share/doc/PACKAGE/copyright`)",
                "log": "each package's own (its `/usr/share/doc/PACKAGE/copyright`)",
                "loghub": "free for research and academic work; cite the paper and refer to the repository URL",
                "nl2bash": "MIT (below)", "prose": "public domain (copyright expired)"}
    for kind in meta["kinds"]:
        lines.append(f"| {kind} | {counts[kind]} | {rows.get(kind, kind)} | {licences.get(kind, '')} |")
    lines += ["", f"The multiple-choice items ({meta['counts']['mc_items']}) are NL2Bash pairs too.", "",
              "Packages of the man pages, configs and logs: " + ", ".join(f"`{p}` ({n})" for p, n in sorted(packages.items())),
              "", "## NL2Bash licence", "", "```", (SHARED / "nl2bash" / "LICENSE").read_text().strip(), "```", ""]
    return "\n".join(lines)


def main() -> int:
    from sigma.evals.suite import SuiteDefinition
    from stages.ingest.eval_suite import build_suite

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-only", action="store_true", help="build and check; write nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prose, prose_version = prose_file(tmp)
        definition = json.loads(json.dumps(DEFINITION))
        definition["prose"]["path"] = str(prose)
        spec = SuiteDefinition.model_validate(definition)
        folder = build_suite(spec, tmp / "built", progress=True, keep=shareable)
        meta = json.loads((folder / "suite.json").read_text())
        if meta["missing"]:
            raise SystemExit(f"sources missing: {meta['missing']}")
        documents = [json.loads(line) for line in (folder / "documents.jsonl").read_text().splitlines()]
        from stages.safety.redact import Redactor

        redactor = Redactor()
        for d in documents:  # what the redactor would replace: listed, for the record
            found = dict(redactor.redact(d["text"])[1])
            if found:
                print(f"  redactor finds in {d['kind']} {d['uri']}: {found}")
        owners = attribution(documents)
        print(f"suite {meta['name']}: hash {meta['hash']}, {meta['counts']}")
        if args.check_only:
            return 0
        # where each source came from, not this machine's paths
        meta["definition"]["loghub"]["root"] = "loghub (https://github.com/logpai/loghub)"
        meta["definition"]["nl2bash"]["path"] = "nl2bash/dev.jsonl (https://github.com/TellinaTool/nl2bash)"
        meta["definition"]["prose"]["path"] = f"Debian {PROSE_PACKAGE} {prose_version}: usr/share/dictd/devil.dict.dz"
        meta["built_by"] = "bench/freeze_suite.py"
        (folder / "suite.json").write_text(json.dumps(meta, indent=1) + "\n")
        (folder / "SOURCES.md").write_text(sources_md(meta, owners, prose_version))
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(folder, TARGET)
    print(f"written: {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
