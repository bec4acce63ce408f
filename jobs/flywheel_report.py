"""What a loop round did, read from its outputs: synthetic rows through the filters, synthesis
acceptance per task, corpus tokens; the round's report and the table of rounds."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq

SYNTHETIC = "synthetic"


def task_of(uri: str | None) -> str:
    """The task in a synthetic row's uri (`synthetic://TASK/vN/round-K/PARENT`)."""
    if not uri or not uri.startswith(f"{SYNTHETIC}://"):
        return "?"
    return uri.split("/")[2]


def _rows(root: Path, key: str, columns: list[str]) -> list[dict]:
    manifest = json.loads((root / "manifest.json").read_text())
    rows = []
    for f in manifest[key]:
        if f["rows"]:
            rows += pq.read_table(root / f["path"], columns=columns).to_pylist()
    return rows


def synthetic_fate(curate_dir: Path) -> dict:
    """Synthetic rows in a curate output: how many came in, were kept, and were dropped by which
    stage and reason, in all and per task."""
    kept = [r for r in _rows(curate_dir, "files", ["source", "uri"]) if r["source"] == SYNTHETIC]
    dropped = [r for r in _rows(curate_dir, "ledger", ["source", "uri", "stage", "reason"]) if r["source"] == SYNTHETIC]
    by_task: dict[str, dict] = defaultdict(lambda: {"in": 0, "kept": 0, "dropped": Counter()})
    for r in kept:
        by_task[task_of(r["uri"])]["kept"] += 1
    for r in dropped:
        by_task[task_of(r["uri"])]["dropped"][f"{r['stage']}:{r['reason']}"] += 1
    total = Counter()
    for t in by_task.values():
        t["in"] = t["kept"] + sum(t["dropped"].values())
        total.update(t["dropped"])
        t["dropped"] = dict(t["dropped"].most_common())
    return {"in": len(kept) + len(dropped), "kept": len(kept), "dropped": dict(total.most_common()),
            "by_task": dict(sorted(by_task.items()))}


def synth_samples(synth_dir: Path) -> int:
    """Samples the synthesis job drew (requests, and the new draws for answers that failed a check)."""
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    counts = next((s.get("counts", {}) for s in manifest["stages"] if s["name"] == "synthesize"), {})
    return sum(n for key, n in counts.items() if key.startswith("samples:"))


def synth_summary(synth_dir: Path) -> dict:
    """Per task of a synthesis job: requests, children kept, drops by reason, acceptance."""
    kept = _rows(synth_dir, "files", ["uri"])
    dropped = _rows(synth_dir, "ledger", ["uri", "stage", "reason"])
    tasks: dict[str, dict] = defaultdict(lambda: {"requests": 0, "kept": 0, "dropped": Counter()})
    for r in kept:
        tasks[task_of(r["uri"])]["kept"] += 1
    for r in dropped:
        tasks[task_of(r["uri"])]["dropped"][r["reason"]] += 1
    out = {}
    for task, t in sorted(tasks.items()):
        requests = t["kept"] + sum(t["dropped"].values())
        out[task] = {"requests": requests, "kept": t["kept"], "acceptance": t["kept"] / requests if requests else None,
                     "dropped": dict(t["dropped"].most_common())}
    return out


def corpus_tokens(curate_dir: Path, tokenizer, batch: int = 256) -> dict:
    """Documents and tokens of a curated output, by kind and for synthetic rows."""
    by_kind, docs, synthetic = Counter(), 0, 0
    manifest = json.loads((curate_dir / "manifest.json").read_text())
    for f in manifest["files"]:
        for b in pq.ParquetFile(curate_dir / f["path"]).iter_batches(batch_size=batch, columns=["text", "kind", "source"]):
            texts, kinds, sources = (b.column(i).to_pylist() for i in range(3))
            for text, kind, source, enc in zip(texts, kinds, sources, tokenizer.encode_batch([t or "" for t in texts])):
                n = len(enc.ids) + 1  # and the end-of-text token that ends it in the stream
                by_kind[kind or "other"] += n
                synthetic += n if source == SYNTHETIC else 0
                docs += 1
    return {"documents": docs, "tokens": sum(by_kind.values()), "synthetic_tokens": synthetic,
            "tokens_by_kind": dict(sorted(by_kind.items()))}


def _reasons(counts: dict, limit: int = 3, whole: bool = False) -> str:
    """The most common reasons with their counts; a `stage:reason` key shows its reason (`whole`: as it is)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{reason if whole else reason.split(':', 1)[-1]} {n}" for reason, n in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


def _task_cell(t: dict) -> str:
    """`kept/requests`, and the drop reasons: `3/8: synth_unverified:unknown_option 4, synth_truncated 1`."""
    return f"{t['kept']}/{t['requests']}" + (f": {_reasons(t['dropped'], 3, whole=True)}" if t["dropped"] else "")


def round_row(state: dict, following: dict | None = None) -> dict:
    """One row of the rounds' table (no timings, so a resumed loop's table equals an uninterrupted
    one's). `following`: the next round's state, whose curation decided the fate of this round's
    synthetic rows."""
    steps = state["steps"]
    curate, tok, train = steps.get("curate", {}), steps.get("tokenize", {}), steps.get("train", {})
    ev, synth = steps.get("eval", {}), steps.get("synth", {})
    totals, fate = curate.get("totals", {}), curate.get("synthetic", {})
    nl2cmd = ev.get("nl2cmd") or {}
    suite = ev.get("suite") or {}
    mc = suite.get("mc") or {}
    tasks = synth.get("tasks", {})
    requests = sum(t["requests"] for t in tasks.values())
    kept = sum(t["kept"] for t in tasks.values())
    later = ((following or {}).get("steps", {}).get("curate") or {}).get("synthetic")
    return {
        "round": state["round"],
        "input": totals.get("input", 0), "kept": totals.get("kept", 0), "dropped": totals.get("dropped", 0),
        "drops": _reasons(totals.get("dropped_by_reason", {})),
        "corpus_tokens": tok.get("tokens"), "trained_tokens": train.get("tokens"),
        "loss": _round(train.get("loss")), "eval_loss": _round(train.get("eval_loss")),
        "suite_hash": suite.get("hash", "")[:12] or None, "suite_bpb": _round(suite.get("bpb_all")),
        **{f"suite_bpb_{kind}": _round(v) for kind, v in (suite.get("bpb") or {}).items()},
        "nl2cmd_bpb": _round(suite.get("nl2cmd_bpb")), "mc_accuracy": _round(mc.get("accuracy")),
        "mc_ci95": f"{mc['ci95'][0]:.2f}-{mc['ci95'][1]:.2f}" if mc.get("ci95") and mc.get("n") else None,
        "ppl": _round((ev.get("perplexity") or {}).get("all")),
        "nl2cmd_em": _round(nl2cmd.get("exact_match")), "nl2cmd_name": _round(nl2cmd.get("command_name_accuracy")),
        "nl2cmd_f1": _round(nl2cmd.get("token_f1")),
        "synthetic_in": fate.get("in", 0), "synthetic_kept": fate.get("kept", 0),
        "synthetic_drops": _reasons(fate.get("dropped", {})),
        "synth_requests": requests, "synth_generated": kept,
        "synth_acceptance": _round(kept / requests) if requests else None,
        "synth_samples": synth.get("samples"),
        **{f"synth_task_{task}": _task_cell(t) for task, t in tasks.items()},
        "synth_kept_later": f"{later['kept']}/{later['in']}" if later else None,
    }


def _round(value, digits: int = 4):
    return round(value, digits) if isinstance(value, float) else value


COLUMNS = [  # (key, heading); "suite_bpb_*" rows, one per kind of the suite, follow "suite_bpb"
    ("round", "round"), ("input", "docs in"), ("kept", "kept"), ("dropped", "dropped"), ("drops", "top drops"),
    ("corpus_tokens", "corpus tokens"), ("trained_tokens", "trained tokens"), ("loss", "loss"),
    ("eval_loss", "eval loss (own data)"), ("suite_hash", "suite"), ("suite_bpb", "suite bits/byte"),
    ("nl2cmd_bpb", "suite nl2cmd bits/byte"), ("mc_accuracy", "suite MC accuracy"), ("mc_ci95", "MC 95% CI"),
    ("ppl", "ppl (own data)"), ("nl2cmd_em", "nl2cmd EM"), ("nl2cmd_name", "cmd name"),
    ("nl2cmd_f1", "token F1"), ("synthetic_in", "synthetic in"), ("synthetic_kept", "synthetic kept"),
    ("synthetic_drops", "synthetic drops"), ("synth_requests", "synth requests"),
    ("synth_generated", "synth kept"), ("synth_acceptance", "acceptance"), ("synth_samples", "synth samples"),
    ("synth_kept_later", "synth kept by the next round's filters"),
]


def columns(rows: list[dict]) -> list[tuple[str, str]]:
    """COLUMNS, with a bits-per-byte row for each kind of the suite the rounds were scored on, and
    a row per synthesis task (kept/requests and the drop reasons) after the acceptance."""
    kinds = sorted({key[len("suite_bpb_"):] for r in rows for key in r if key.startswith("suite_bpb_")})
    tasks = sorted({key[len("synth_task_"):] for r in rows for key in r if key.startswith("synth_task_")})
    out = []
    for key, heading in COLUMNS:
        out.append((key, heading))
        if key == "suite_bpb":
            out += [(f"suite_bpb_{kind}", f"  bits/byte: {kind}") for kind in kinds]
        if key == "synth_acceptance":
            out += [(f"synth_task_{task}", f"  {task}") for task in tasks]
    return out


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_markdown(rows: list[dict]) -> str:
    """Rounds as columns, measures as rows: reads on a narrow screen however many rounds there are."""
    lines = ["| | " + " | ".join(f"round {r['round']}" for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    lines += [f"| {heading.strip()} | " + " | ".join(_cell(r.get(key)) for r in rows) + " |"
              for key, heading in columns(rows) if key != "round"]
    return "\n".join(lines) + "\n"


def write_table(root: Path, rows: list[dict]) -> None:
    for name, text in (("rounds.json", json.dumps(rows, indent=1) + "\n"), ("rounds.md", table_markdown(rows))):
        tmp = root / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(root / name)


# The report's plots by round, in this order: the eval suite's bits per byte (the headline) first.
ROUND_METRICS = ("suite_bpb", "mc_accuracy", "nl2cmd_em", "nl2cmd_name", "nl2cmd_f1", "synth_acceptance", "eval_loss",
                 "loss", "ppl")


def flywheel_rounds(root: str | Path) -> tuple[Path, list[dict]] | None:
    """For a loop's folder (it holds `rounds.json`): the newest round's curate output and the loss
    and evaluation scores by round, for `sigma stats`; None for any other folder."""
    root = Path(root)
    if not (root / "rounds.json").exists():
        return None
    rows = json.loads((root / "rounds.json").read_text())
    curated = [root / f"round-{r['round']}" / "curate" for r in rows]
    curated = [d for d in curated if (d / "manifest.json").exists()]
    if not curated:
        return None
    metrics = [{"round": r["round"], **{m: r[m] for m in ROUND_METRICS if isinstance(r.get(m), (int, float))}}
               for r in rows]
    return curated[-1], metrics


def render_table(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="the flywheel, round by round")
    table.add_column("")
    for r in rows:
        table.add_column(f"round {r['round']}", justify="right", overflow="fold")
    for key, heading in columns(rows):
        if key != "round":
            table.add_row(heading, *(_cell(r.get(key)) for r in rows))
    console.print(table)


def write_report(round_dir: Path, state: dict) -> None:
    """`report.json` (the round's manifest and its table row) and `report.md` (the same, to read)."""
    steps = state["steps"]
    row = round_row(state)
    lines = [f"# Round {state['round']} of loop {state['loop']}", "", table_markdown([row])]
    curate = steps.get("curate", {})
    if curate.get("totals"):
        t = curate["totals"]
        lines += ["## Curate", "", f"{t['input']:,} documents in, {t['kept']:,} kept, {t['dropped']:,} dropped "
                  f"(balanced: {t.get('balanced')}).", ""]
        lines += [f"- `{reason}`: {n:,}" for reason, n in t.get("dropped_by_reason", {}).items()] + [""]
    fate = curate.get("synthetic") or {}
    if fate.get("in"):
        lines += ["## Synthetic rows of the previous round through the filters", "",
                  "| task | in | kept | dropped by stage:reason |", "|---|---|---|---|"]
        lines += [f"| {task} | {t['in']} | {t['kept']} | {_reasons(t['dropped'], 10) or '-'} |"
                  for task, t in fate["by_task"].items()] + [""]
    train = steps.get("train", {})
    if train:
        lines += ["## Train", "", f"{train.get('steps')} steps from `{train.get('init_from') or 'scratch'}`, "
                  f"{train.get('tokens') or 0:,} tokens; loss {_cell(train.get('loss'))}, held-out loss "
                  f"{_cell(train.get('eval_loss_start'))} -> {_cell(train.get('eval_loss'))}.", ""]
    ev = steps.get("eval", {})
    if ev.get("suite"):
        suite, mc = ev["suite"], ev["suite"]["mc"]
        lines += ["## Eval suite", "", f"Suite `{suite['name']}` ({suite['hash'][:12]}), the same every round.", "",
                  "| kind | bits per byte |", "|---|---|"]
        lines += [f"| {kind} | {_cell(v)} |" for kind, v in suite["bpb"].items()]
        lines += [f"| all | {_cell(suite['bpb_all'])} |", f"| nl2cmd (gold command given the request) | "
                  f"{_cell(suite['nl2cmd_bpb'])} |", "", f"Multiple choice: accuracy {_cell(mc['accuracy'])} "
                  f"(95% CI {mc['ci95'][0]:.3f}-{mc['ci95'][1]:.3f}, n={mc['n']}, chance {mc['chance']:.2f}).", ""]
    if ev.get("perplexity"):
        lines += ["## Eval on the round's own data", "", "| kind | held-out perplexity |", "|---|---|"]
        lines += [f"| {kind} | {_cell(v)} |" for kind, v in ev["perplexity"].items()] + [""]
    if ev.get("nl2cmd"):
        lines += ["NL -> command: " + ", ".join(f"{k} {_cell(v)}" for k, v in ev["nl2cmd"].items()), ""]
    synth = steps.get("synth", {})
    if synth.get("tasks"):
        lines += ["## Synthesis", "", f"Engine: `{synth.get('engine')}`.", "",
                  "| task | requests | kept | acceptance | dropped by reason |", "|---|---|---|---|---|"]
        lines += [f"| {task} | {t['requests']} | {t['kept']} | {_cell(t['acceptance'])} | {_reasons(t['dropped'], 10) or '-'} |"
                  for task, t in synth["tasks"].items()] + [""]
    (round_dir / ".report.md.tmp").write_text("\n".join(lines))
    (round_dir / ".report.md.tmp").replace(round_dir / "report.md")
    (round_dir / ".report.json.tmp").write_text(json.dumps({"row": row, **state}, indent=1, sort_keys=True) + "\n")
    (round_dir / ".report.json.tmp").replace(round_dir / "report.json")
