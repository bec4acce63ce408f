"""Statistics, the HTML report (checked in headless Chromium), inspect and diff on real runs."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs.curate import curate
from pipeline.config import parse_job
from pipeline.diff import diff_runs
from pipeline.inspect import sample
from pipeline.report import write_html
from pipeline.stats import compute_stats


def _job(loghub: Path, man_root: Path, min_chars: int) -> dict:
    return {"name": f"min{min_chars}",
            "inputs": [{"type": "man", "roots": [str(man_root.parent)], "sections": ["1"],
                        "include": ["ls", "cp", "grep", "tar", "gzip", "sed", "ssh", "df", "du"]},
                       {"type": "files", "roots": [str(loghub)], "include": ["*_2k.log", "*templates.csv"]}],
            "stages": [{"basic_filter": {"min_chars": min_chars}}, "exact_dedupe"]}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, ray_local):
    loghub = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub"
    man_root = Path("/usr/share/man/man1")
    if not loghub.exists() or not man_root.exists():
        pytest.skip("needs ../shared/data/loghub and /usr/share/man")
    base = tmp_path_factory.mktemp("runs")
    lenient, strict = base / "lenient", base / "strict"
    curate(parse_job(_job(loghub, man_root, 20)), str(lenient))
    curate(parse_job(_job(loghub, man_root, 40_000)), str(strict))
    return lenient, strict


@pytest.mark.slow
def test_stats_match_a_full_read(two_runs):
    lenient, _ = two_runs
    stats = compute_stats(lenient)
    df = pd.read_parquet(lenient / "shards")
    assert stats["documents"] == len(df)
    assert stats["text_bytes"] == int(df.text.str.encode("utf-8").str.len().sum())
    assert stats["words"] == int(df.text.str.split().str.len().sum())
    for kind, n in df.kind.value_counts().items():
        assert stats["by_kind"][kind]["documents"] == n
    assert sum(h["documents"] for h in stats["length_histogram"]) == len(df)
    assert stats["balance"]["balanced"]
    printable = stats["scores"]["stats.printable"]
    assert sum(printable["counts"]) == len(df)
    assert printable["thresholds"] == [{"stage": "basic_filter", "column": "stats.printable", "op": "min", "value": 0.95,
                                      "reason": "low_printable"}]


def test_html_report_renders_every_plot_in_chromium(two_runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    _, strict = two_runs
    report = tmp_path / "report.html"
    # a loop's report: the last round's curation and eight scores by round (as flywheel_rounds gives them)
    rounds = [{"round": k, "suite_bpb": 4.0 - k / 10, "mc_accuracy": .2 + k / 100, "nl2cmd_em": 0.0, "nl2cmd_f1": 0.0,
               "synth_acceptance": .5, "eval_loss": 3.0 - k / 10, "loss": 3.5 - k / 5, "ppl": 30.0 - k} for k in (1, 2, 3)]
    write_html(compute_stats(strict), report, rounds=rounds)
    html = report.read_text()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)  # nothing to fetch: it opens offline
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,3000"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    expected = int(dom.split('data-plots-expected="')[1].split('"')[0])
    drawn = int(dom.split('data-plots-drawn="')[1].split('"')[0])
    for plot in ("documents-by-source", "documents-by-kind", "length-distribution", "drop-waterfall",
                 "score-stats.printable", "rounds"):
        assert f'data-plot="{plot}"' in dom
    assert expected >= 8 and drawn == expected
    assert int(dom.split('data-page-width="')[1].split('"')[0]) <= 1400  # nothing runs off a 1,400-pixel page
    body = dom.split("<body", 1)[1].split(">", 1)[1]
    assert body.split("<h1>", 1)[0].strip() == ""  # no stray text above the title
    headings = re.findall(r"<h2>([^<]+)</h2>", dom)
    assert headings[:2] == ["Summary", "Rounds"]  # a loop's scores first
    caption = dom.split('data-plot="rounds"')[1].split("<figcaption>")[1].split("</figcaption>")[0]
    assert "bits per byte first" in caption and "nl2cmd_em 0" in caption and "synth_acceptance 0.5" in caption
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000  # a page of plots, not a blank one


def test_inspect_finds_what_a_threshold_dropped(two_runs):
    _, strict = two_runs
    dropped = sample(strict, reason="too_short", limit=3, seed=1)
    assert len(dropped) == 3 and all(s.doc["reason"] == "too_short" and s.doc["text"] for s in dropped)
    assert [s.doc["id"] for s in sample(strict, reason="too_short", limit=3, seed=1)] == [s.doc["id"] for s in dropped]
    logs = sample(strict, kind="log", where="stats.chars > 100000", limit=2)
    assert logs and all(s.doc["kind"] == "log" and s.doc["stats.chars"] > 100000 for s in logs)


def test_diff_explains_the_threshold_change(two_runs):
    lenient, strict = two_runs
    d = diff_runs(lenient, strict)
    assert d["config"]["stages[0].options.min_chars"] == {"a": 20, "b": 40000}
    removed = d["ids"]["removed"]
    assert removed["count"] == d["dropped_by_reason"]["too_short"]["delta"] > 0
    assert set(removed["by_reason_in_other_run"]) == {"too_short"}
    assert d["ids"]["added"]["count"] == 0
    assert d["totals"]["kept"]["delta"] == -removed["count"]


def test_a_stage_one_run_never_ran_is_not_run_not_zero():
    from pipeline.diff import _delta

    d = _delta({"redact": 10, "near_dedupe": 8}, {"redact": 10, "semantic_dedupe": 7}, absent=None)
    assert d["near_dedupe"] == {"a": 8, "b": None, "delta": None}
    assert d["semantic_dedupe"] == {"a": None, "b": 7, "delta": None} and d["redact"]["delta"] == 0
    assert _delta({"too_short": 3}, {})["too_short"] == {"a": 3, "b": 0, "delta": -3}  # counts: absent is 0


def test_cli_inspect_and_diff(two_runs):
    lenient, strict = two_runs
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "diff", str(lenient), str(strict), "--json"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["ids"]["removed"]["count"] > 0
    out = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "inspect", str(strict), "--reason", "too_short", "-n", "1"],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    assert "too_short" in out
    misspelt = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "inspect", str(strict), "--kind", "lgo"],
                              cwd=root, capture_output=True, text=True)
    assert misspelt.returncode == 2 and "Traceback" not in misspelt.stderr
    assert misspelt.stderr.count("\n") == 1 and "did you mean log? (the kept documents' kinds: doc, log)" in misspelt.stderr


def test_text_measures_match_python():
    import pyarrow as pa

    from pipeline.stats import text_measures

    texts = ["", "one", "  two words ", "héllo wörld\n\tnext", None, "x" * 5, "a\nb\n", "日本語 テキスト"]
    arr = pa.chunked_array([pa.array(texts[:3]), pa.array(texts[3:])])
    nbytes, chars, words = text_measures(arr)
    expect = [t or "" for t in texts]
    assert nbytes.tolist() == [len(t.encode()) for t in expect]
    assert chars.tolist() == [len(t) for t in expect]
    assert words.tolist() == [len(t.split()) for t in expect]
    sliced = pa.array(texts).slice(2, 3)
    assert text_measures(sliced)[2].tolist() == [len((t or "").split()) for t in texts[2:5]]
