"""An ablation's results: mean and spread over seeds per variant and suite metric, the difference
from the baseline, whether it is beyond the seed spread; as a terminal table, results.json,
results.md and report.html (scores by variant with error bars, the loss curve of every arm).

A difference is *beyond the seed spread* when no seed of the variant and no seed of the baseline
overlap: every seed of one scores better than every seed of the other. With two or three seeds
that is the honest test; the standard deviation over seeds is shown beside each mean.
"""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path

LOWER, HIGHER = "lower", "higher"


def arm_metrics(scores: dict) -> dict[str, float]:
    """The suite result of one arm as flat metrics: bits per byte overall and per kind, the gold
    command's bits per byte given the request, multiple-choice accuracy."""
    out = {"bpb_all": scores["bpb_all"]}
    out.update({f"bpb/{kind}": value for kind, value in sorted(scores.get("bpb", {}).items())})
    if scores.get("nl2cmd_bpb") is not None:
        out["nl2cmd_bpb"] = scores["nl2cmd_bpb"]
    if scores.get("mc"):
        out["mc_accuracy"] = scores["mc"]["accuracy"]
    return out


def better(metric: str) -> str:
    return HIGHER if metric.endswith("accuracy") else LOWER


def _stats(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None, "min": min(values), "max": max(values)}


def _versus(m: dict, base: dict, direction: str) -> dict:
    diff = m["mean"] - base["mean"]
    beyond = m["min"] > base["max"] or m["max"] < base["min"]
    improves = (diff < 0) == (direction == LOWER) and diff != 0
    return {"diff": diff, "beyond_spread": beyond, "verdict": ("better" if improves else "worse") if beyond else "within spread"}


def _shares(counts: list[dict[str, int]]) -> dict[str, float]:
    """Each kind's share of the total, averaged over the given counts (arms, or one corpus)."""
    counts = [c for c in counts if sum(c.values())]
    kinds = sorted({k for c in counts for k in c})
    return {k: statistics.fmean(c.get(k, 0) / sum(c.values()) for c in counts) for k in kinds} if counts else {}


def summarise(config, results: list[dict], corpus: dict) -> dict:
    metrics = list(dict.fromkeys(k for r in results for k in arm_metrics(r["scores"])))
    variants = {}
    for name in config.variants:
        arms = [r for r in results if r["variant"] == name]
        per = {k: _stats([arm_metrics(r["scores"])[k] for r in arms if k in arm_metrics(r["scores"])])
               for k in metrics}
        variants[name] = {"documents": corpus[name]["documents"], "corpus_tokens": corpus[name]["tokens"],
                          "epochs": statistics.fmean(r["epochs"] for r in arms), "arms": [r["arm"] for r in arms],
                          "metrics": per, "corpus_share": _shares([corpus[name].get("bytes_by_kind", {})]),
                          "read_share": _shares([r.get("trained_bytes_by_kind", {}) for r in arms])}
    base = variants[config.baseline]["metrics"]
    for name, v in variants.items():
        if name != config.baseline:
            for k, m in v["metrics"].items():
                m.update(_versus(m, base[k], better(k)))
    suite = results[0]["scoring"]["suite"] if results else None
    return {"name": config.name, "baseline": config.baseline, "budget": config.train.tokens, "seeds": config.seeds,
            "suite": suite, "metrics": [{"key": k, "better": better(k)} for k in metrics], "variants": variants,
            "arms": sorted(results, key=lambda r: r["arm"])}


# -- the table ---------------------------------------------------------------------------------

def _mean_sd(m: dict) -> str:
    return f"{m['mean']:.4f}" + (f" ± {m['sd']:.4f}" if m["sd"] is not None else "")


def _diff(m: dict) -> str:
    if "diff" not in m:
        return "baseline"
    mark = {"better": " ✓", "worse": " ✗", "within spread": ""}[m["verdict"]]
    return f"{m['diff']:+.4f}{mark}"


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Heading and rows: a variant per row, for each metric its mean ± sd and the difference."""
    keys = [m["key"] for m in summary["metrics"]]
    headings = ["variant", "docs", "tokens", "epochs"]
    for m in summary["metrics"]:
        arrow = "↓" if m["better"] == LOWER else "↑"
        headings += [f"{m['key']} {arrow}", f"Δ {m['key']}"]
    rows = []
    for name, v in summary["variants"].items():
        row = [name, f"{v['documents']:,}", f"{v['corpus_tokens']:,}", f"{v['epochs']:.2f}"]
        for k in keys:
            m = v["metrics"][k]
            row += [_mean_sd(m), _diff(m)]
        rows.append(row)
    return headings, rows


def caption(summary: dict) -> str:
    suite = summary["suite"] or {}
    return (f"{summary['name']}: {summary['budget']:,} tokens an arm, seeds {summary['seeds']}, suite "
            f"{suite.get('name')} ({str(suite.get('hash'))[:12]}); mean ± sd over seeds; Δ from "
            f"{summary['baseline']}, ✓/✗ beyond the seed spread (no seed of either overlaps)")


def mix_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Per variant, source and kind: its share of the corpus's bytes, and of the bytes the arms read."""
    kinds = sorted({k for v in summary["variants"].values() for k in (*v.get("corpus_share", {}), *v.get("read_share", {}))})
    rows = [[name] + [f"{100 * v.get('corpus_share', {}).get(k, 0):.1f}% / {100 * v.get('read_share', {}).get(k, 0):.1f}%"
                      for k in kinds] for name, v in summary["variants"].items()]
    return ["variant"] + kinds, rows


def _markdown(headings: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headings) + " |", "|---|" + "---:|" * (len(headings) - 1)] + \
        ["| " + " | ".join(row) + " |" for row in rows]


def table_markdown(summary: dict) -> str:
    lines = [caption(summary), "", *_markdown(*table_rows(summary))]
    headings, rows = mix_rows(summary)
    if len(headings) > 1:
        lines += ["", "Each source and kind's share of the variant's bytes / of the bytes its arms read (mean over seeds):", "",
                  *_markdown(headings, rows)]
    return "\n".join(lines) + "\n"


def render_table(summary: dict, console) -> None:
    from rich.table import Table

    headings, rows = table_rows(summary)
    table = Table(title=caption(summary), title_justify="left")
    for i, h in enumerate(headings):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# -- files -------------------------------------------------------------------------------------

def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_results(root: Path, summary: dict) -> None:
    _write(root / "results.json", json.dumps(summary, indent=1) + "\n")  # variants stay in the file's order
    _write(root / "results.md", table_markdown(summary))
    _write(root / "report.html", render_html(root, summary))


def loss_curve(run: Path) -> list[tuple[int, float]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [(m["tokens"], m["loss"]) for m in lines if "loss" in m]


def scores_plot(summary: dict):
    import matplotlib.pyplot as plt

    from pipeline.report import PALETTE

    metrics = [m["key"] for m in summary["metrics"]]
    names = list(summary["variants"])
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols + 0.6, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, metrics):
        for i, name in enumerate(names):
            m = summary["variants"][name]["metrics"][key]
            colour = PALETTE[i % len(PALETTE)]
            ax.bar(i, m["mean"], color=colour, alpha=.55, yerr=m["sd"] or 0, capsize=4)
            ax.plot([i] * len(m["values"]), m["values"], "o", color=colour, markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        values = [x for n in names for x in summary["variants"][n]["metrics"][key]["values"]]
        span = (max(values) - min(values)) or abs(max(values)) * 0.05 or 1.0
        ax.set_ylim(min(values) - span, max(values) + span)  # bars from zero would hide the differences
        ax.set_title(f"{key} ({better(key)} is better)", fontsize=9)
        ax.grid(axis="y", alpha=.3)
    return fig


def loss_plot(root: Path, summary: dict):
    import matplotlib.pyplot as plt

    from pipeline.report import PALETTE

    fig, ax = plt.subplots(figsize=(9, 3.6))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(summary["variants"])}
    styles = ["-", "--", ":", "-."]
    for arm in summary["arms"]:
        curve = loss_curve(root / "arms" / arm["arm"])
        if curve:
            style = styles[summary["seeds"].index(arm["seed"]) % len(styles)] if arm["seed"] in summary["seeds"] else "-"
            ax.plot(*zip(*curve), style, color=colours[arm["variant"]], label=arm["arm"], linewidth=1.2)
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("training loss of every arm (each on its own variant's data)", fontsize=11)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=.3)
    return fig


def render_html(root: Path, summary: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.report import PAGE, _figure, _table

    headings, rows = table_rows(summary)
    arms = _table(["arm", "tokens", "steps", "epochs", "final loss", *[m["key"] for m in summary["metrics"]]],
                  [[html.escape(a["arm"]), f"{a['tokens']:,}", f"{a['steps']:,}", f"{a['epochs']:.2f}",
                    f"{a['final_loss']:.4f}" if a["final_loss"] is not None else "-",
                    *[f"{v:.4f}" for v in arm_metrics(a["scores"]).values()]] for a in summary["arms"]])
    sections = [
        ("Variants", _table(headings, [[html.escape(c) for c in row] for row in rows])),
        ("Scores by variant", _figure("scores-by-variant", "Suite scores by variant: mean over seeds (bar), standard "
                                      "deviation (error bar), each seed (dot).", scores_plot(summary))),
        ("Loss curves", _figure("loss-curves", "Training loss against tokens, every arm; colour: variant, line "
                                "style: seed. Each arm's loss is on its own variant's data, so only the suite "
                                "compares them.", loss_plot(root, summary))),
        ("Arms", arms),
    ]
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{content}" for t, content in sections)
    return PAGE.format(title=f"Sigma ablation: {html.escape(summary['name'])}", meta=html.escape(caption(summary)),
                       body=body)
