"""Filter presets in a real curate run: real system data is kept, planted junk is dropped with
its reason, and every document is accounted for in the ledger."""

from __future__ import annotations

import base64
import json
import random

import pyarrow.parquet as pq
import pytest

from jobs.curate import curate
from pipeline.config import ConfigError, parse_job
from stages.ingest.files import FilesSource
from stages.ingest.man import ManSource
from stages.presets import expand_presets, known_presets

PAGES = ["ls", "cp", "grep", "find", "tar", "chmod", "ps", "kill", "mount", "ssh", "crontab", "systemctl"]


def junk(rng: random.Random) -> dict[str, tuple[str, str]]:
    """id -> (text, expected reason)."""
    nav = "\n".join(["Home", "About", "Products", "Contact", "Login", "Sign up", "Privacy", "Terms"] * 6)
    blob = base64.b64encode(rng.randbytes(4000)).decode()
    german = ("Die Konfiguration des Dienstes wird beim Start aus der Datei gelesen. Wenn der Verwalter die "
              "Datei ändert, muss der Dienst neu gestartet werden, damit die Änderungen wirksam werden. ") * 4
    french = ("Le fichier de configuration est lu au démarrage du service. Quand l'administrateur modifie le "
              "fichier, il faut redémarrer le service pour que les changements prennent effet. ") * 4
    spam = "\n".join(["Buy the best cheap watches online now, free shipping on every order today!"] * 30)
    return {
        "junk-nav": (nav, "gopher_enough_stop_words"),
        "junk-blob": ("Attachment follows.\n" + blob, "encoded_blob"),
        "junk-repeated": (spam, "gopher_dup_lines"),
        "junk-german": (german, "lang_not_en"),
        "junk-french": (french, "lang_not_en"),
        "junk-binary": ("\x00\x07\x1b" * 300 + "end of the page", "low_printable"),
    }


@pytest.fixture
def corpus(tmp_path_factory, man_root, loghub):
    rows = []
    man = ManSource("man", roots=[str(man_root.parent)], sections=["1", "8"], include=PAGES)
    for unit in man.plan():
        for result in man.read(unit):
            rows += result.kept.to_pylist()
    logs = FilesSource("logs", [str(loghub)], include=["*_2k.log"])
    for unit in logs.plan():
        for result in logs.read(unit):
            rows += result.kept.to_pylist()
    planted = junk(random.Random(7))
    rows += [{"id": i, "text": t, "source": "planted", "uri": f"mem://{i}", "kind": "doc", "meta": "{}"}
             for i, (t, _) in planted.items()]
    path = tmp_path_factory.mktemp("presets") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows, planted


def test_presets_are_listed_and_expand():
    assert {"system", "web"} <= set(known_presets())
    job = parse_job({"inputs": [{"type": "jsonl", "paths": ["x"]}], "stages": [{"preset": {"name": "system"}},
                                                                                 "exact_dedupe"]})
    names = [s.name for s in expand_presets(job.stages)]
    assert names[0] == "system_checks" and names[-1] == "exact_dedupe" and "language_filter" in names
    with pytest.raises(ConfigError, match="known: .*system"):
        expand_presets(parse_job({"inputs": [], "stages": [{"preset": {"name": "nope"}}]}).stages)


@pytest.mark.slow
def test_system_preset_keeps_real_data_and_drops_planted_junk(ray_local, corpus, tmp_path):
    path, rows, planted = corpus
    job = parse_job({"name": "presets", "inputs": [{"type": "jsonl", "paths": [str(path)]}],
                     "stages": [{"preset": {"name": "system"}}, "exact_dedupe"]})
    manifest = curate(job, str(tmp_path / "out"))
    assert manifest["totals"]["balanced"]
    ledger = pq.read_table(tmp_path / "out" / "ledger").to_pylist()
    dropped = {r["id"]: r for r in ledger}
    for doc_id, (_, reason) in planted.items():
        assert dropped[doc_id]["reason"] == reason, (doc_id, dropped.get(doc_id))
        assert dropped[doc_id]["detail"]
    real = [r for r in rows if r["source"] != "planted"]
    assert len(real) >= 20
    assert not [dropped[r["id"]] for r in real if r["id"] in dropped]
    shards = pq.read_table(tmp_path / "out" / "shards")
    assert {"quality.gopher.words", "lang", "lang.score", "quality.system.templates"} <= set(shards.column_names)
